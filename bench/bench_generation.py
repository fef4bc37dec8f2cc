"""Batched translate() vs one sentence at a time, side by side (Gemma 3 270M, NTREX-128 deu->eng, CPU).

    flock /tmp/neuronxa-heavy.lock .venv/bin/python bench/bench_generation.py [--sentences 16] [--rounds 3]
    .venv/bin/python bench/bench_generation.py --quick        # tiny random model, bundled sample: seconds

Both sides call translate() with the same prompts (3-shot, examples from NTREX lines >= 1000, never among the
translated ones), greedy decoding and the same stopping rule (first newline or EOS, else --max-new-tokens), on the
same sentences; only the batch size differs (--batch-size vs 1). Each side translates a few other sentences first
(warm-up), then the two alternate for --rounds rounds, the order reversed every other round. Tokens are counted the
same way on both sides: the tokens of the returned one-line translations.

Prints `name: value` lines: seconds and tokens/s per side (min/median/max over rounds), identical outputs, chrF, and
last the headline: the median over rounds of the per-round throughput ratio (batched / one at a time).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (  # noqa: E402
    REPO_ROOT,
    alternating,
    bench_model,
    bench_parser,
    emit,
    emit_spread,
    only_name_value_lines,
    parse_with_quick,
    setup_environment,
)

setup_environment()

QUICK = dict(sentences=6, max_new_tokens=6, batch_size=4, rounds=2)


def ntrex_lines(name: str) -> list[str]:
    shared = Path(os.environ.get("NEURONXA_SHARED", REPO_ROOT.parent / "shared"))
    path = shared / "data" / "ntrex128" / "NTREX-128" / name
    if not path.is_file():
        raise FileNotFoundError(f"bench_generation: NTREX-128 file {path} not found (set NEURONXA_SHARED)")
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]


def sentences_and_examples(count: int, quick: bool):
    """(sources, references, warm-up sources, few-shot examples, source_lang) for deu -> eng."""
    if quick:
        from neuronxa_callback.data.loaders import load_parallel
        from neuronxa_callback.quality.fewshot import load_fewshot_examples

        data = load_parallel("bundled", pivot="eng_Latn", languages=("deu_Latn",), num_pairs=count + 2)
        german, english = list(data.sentences("deu_Latn")), list(data.sentences("eng_Latn"))
        examples = load_fewshot_examples("deu_Latn", "eng_Latn", k=3)
        return german[:count], english[:count], german[count:], examples
    german, english = ntrex_lines("newstest2019-ref.deu.txt"), ntrex_lines("newstest2019-src.eng.txt")
    # Same 3 examples as tests/test_generation.py: short lines from 1000 on, never among the translated ones.
    picked = [i for i in range(1000, len(german)) if 8 <= len(german[i].split()) <= 14][:3]
    examples = [(german[i], english[i]) for i in picked]
    return german[:count], english[:count], german[500:504], examples


def parse_args(argv=None):
    parser = bench_parser(__doc__, quick_help="tiny random model, bundled sample: a smoke test")
    # 16 sentences = one batch; with 3 rounds this fits an 8-minute hold of the project's shared 2-core machine.
    parser.add_argument("--sentences", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    options = parse_with_quick(parser, argv, QUICK)
    return options


def main(argv=None) -> None:
    with only_name_value_lines():
        _main(argv)


def _main(argv=None) -> None:
    options = parse_args(argv)
    import sacrebleu
    import torch

    from neuronxa_callback.quality.generation import translate

    sources, references, warmup, examples = sentences_and_examples(options.sentences, options.quick)
    start = time.perf_counter()
    model, tokenizer, model_name = bench_model(options)
    load_seconds = time.perf_counter() - start
    settings = dict(
        source_lang="deu_Latn",
        target_lang="eng_Latn",
        prompt="fewshot",
        examples=examples,
        max_new_tokens=options.max_new_tokens,
    )

    def side(batch_size: int, texts: list[str]) -> list[str]:
        return translate(model, tokenizer, texts, batch_size=batch_size, **settings)

    def count_tokens(texts: list[str]) -> int:
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    start = time.perf_counter()
    side(options.batch_size, warmup)
    side(1, warmup)
    warmup_seconds = time.perf_counter() - start

    rounds = alternating(
        {"batched": lambda: side(options.batch_size, sources), "one_at_a_time": lambda: side(1, sources)},
        options.rounds,
    )
    seconds = {name: [r[name][0] for r in rounds] for name in ("batched", "one_at_a_time")}
    outputs = {name: [r[name][1] for r in rounds] for name in ("batched", "one_at_a_time")}
    tokens = {name: [count_tokens(texts) for texts in outputs[name]] for name in outputs}
    throughput = {name: [n / s for n, s in zip(tokens[name], seconds[name])] for name in outputs}
    ratios = [b / o for b, o in zip(throughput["batched"], throughput["one_at_a_time"])]
    batched, single = outputs["batched"][0], outputs["one_at_a_time"][0]
    # Greedy decoding on a fixed input must give the same text every round; a difference would be a bug.
    repeatable = all(texts == outputs[name][0] for name in outputs for texts in outputs[name])
    chrf = sacrebleu.CHRF(word_order=2)

    emit("model", model_name)
    emit("torch_threads", torch.get_num_threads())
    emit("load_seconds", load_seconds, 1)
    emit("warmup_seconds", warmup_seconds, 1)
    emit("sentences", len(sources))
    emit("max_new_tokens", options.max_new_tokens)
    emit("batch_size", options.batch_size)
    emit("stopping_rule", "first newline or EOS, else max_new_tokens (both sides)")
    emit("rounds", options.rounds)
    for number in range(options.rounds):
        emit(f"round_{number}_batched_seconds", seconds["batched"][number], 2)
        emit(f"round_{number}_one_at_a_time_seconds", seconds["one_at_a_time"][number], 2)
        emit(f"round_{number}_throughput_ratio", ratios[number], 3)
    emit_spread("batched_seconds", seconds["batched"], 2)
    emit_spread("one_at_a_time_seconds", seconds["one_at_a_time"], 2)
    emit("batched_output_tokens", tokens["batched"][0])
    emit("one_at_a_time_output_tokens", tokens["one_at_a_time"][0])
    emit("identical_outputs", f"{sum(a == b for a, b in zip(batched, single))}/{len(sources)}")
    emit("outputs_repeat_across_rounds", "yes" if repeatable else "no")
    emit("batched_chrf2", chrf.corpus_score(batched, [references]).score, 1)
    emit("one_at_a_time_chrf2", chrf.corpus_score(single, [references]).score, 1)
    emit_spread("batched_tokens_per_second", throughput["batched"], 1)
    emit_spread("one_at_a_time_tokens_per_second", throughput["one_at_a_time"], 1)
    emit("speedup_min", min(ratios), 2)
    emit("speedup_max", max(ratios), 2)
    emit("speedup", statistics.median(ratios), 2)  # headline: median over rounds of batched / one-at-a-time tokens/s


if __name__ == "__main__":
    main()
