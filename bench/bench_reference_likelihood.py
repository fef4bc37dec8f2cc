"""What the reference likelihood costs next to the alignment measurement and next to translating (Gemma 3 270M, CPU).

    flock /tmp/neuronxa-heavy.lock .venv/bin/python bench/bench_reference_likelihood.py [--sentences 100]
    .venv/bin/python bench/bench_reference_likelihood.py --quick      # tiny random model, bundled sample: seconds

One direction (Icelandic -> English) on the packaged NTREX-128 lines 1..--sentences, with the callback's own prompt
(3-shot, examples from the NTREX lines after the scored ones) and batch size. The three parts of a measurement, each
once, in this order: the alignment measurement (encode both languages and score, measure_alignment), the reference
likelihood (one forward per sentence after one of the prompt's shared prefix; timed --rounds times each with and
without sharing that prefix, alternating, the best of each kept), translating (once without, once with the shared
prefix) (greedy, stop at a newline, --max-new-tokens). Then the likelihood
of the first --check sentences again at batch size 1: the largest per-sentence difference from the batched values
(the value must not depend on the batch).

--dtype bfloat16 runs the model in bf16. There a result depends on the shapes its matrix products run in, so the run
also measures that noise floor: the likelihood and the translations with every prompt run whole at half the batch
size, against the same at the full batch size; the shared prefix's differences are to be read against it.

Prints `name: value` lines; the headline, last: likelihood seconds as a fraction of the alignment measurement's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (  # noqa: E402
    bench_model,
    bench_parser,
    emit,
    only_name_value_lines,
    parse_with_quick,
    setup_environment,
)

setup_environment()

QUICK = dict(sentences=6, max_new_tokens=6, batch_size=4, check=3, rounds=1)
SOURCE, TARGET = "isl_Latn", "eng_Latn"


def parse_args(argv=None):
    parser = bench_parser(__doc__, quick_help="tiny random model, bundled sample: a smoke test")
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--check", type=int, default=8, help="sentences re-scored at batch size 1")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="the model's weights")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="likelihood timed this many times each with and without the shared prefix, alternating (the best kept)",
    )
    return parse_with_quick(parser, argv, QUICK)


def main(argv=None) -> None:
    with only_name_value_lines():
        _main(argv)


def _main(argv=None) -> None:
    options = parse_args(argv)
    import sacrebleu
    import torch

    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.quality.fewshot import select_fewshot_examples
    from neuronxa_callback.quality.generation import translate, translation_prompts
    from neuronxa_callback.quality.likelihood import likelihood_plan, reference_likelihood, summarize_likelihood

    source = "bundled" if options.quick else "ntrex"
    data = load_parallel(source, pivot=TARGET, languages=(SOURCE,), num_pairs=options.sentences)
    sources, references = list(data.sentences(SOURCE)), list(data.sentences(TARGET))
    examples = list(select_fewshot_examples(source, SOURCE, TARGET, k=3, scored=data).pairs)
    start = time.perf_counter()
    model, tokenizer, model_name = bench_model(options)
    model = model.to(getattr(torch, options.dtype))
    load_seconds = time.perf_counter() - start
    prompts, add_special_tokens = translation_prompts(
        tokenizer, sources, source_lang=SOURCE, target_lang=TARGET, prompt="auto", examples=examples
    )

    pair = data.pair_name(SOURCE)
    # Each line as soon as it is known: a run killed during the long translation keeps the likelihood's numbers.
    emit("model", model_name)
    emit("dtype", options.dtype)
    emit("torch_threads", torch.get_num_threads())
    emit("sentences", len(sources))
    emit("batch_size", options.batch_size)
    emit("load_seconds", load_seconds, 1)
    emit("prompt_tokens_mean", sum(len(tokenizer(p)["input_ids"]) for p in prompts) / len(prompts), 1)

    start = time.perf_counter()
    report = measure_alignment(model, tokenizer, data, batch_size=options.batch_size)
    alignment_seconds = time.perf_counter() - start
    emit("nasca_mean", report.to_dict()["pairs"][pair]["nasca_mean"])
    emit("alignment_seconds", alignment_seconds, 2)

    plan = likelihood_plan(
        tokenizer, prompts, references, batch_size=options.batch_size, add_special_tokens=add_special_tokens
    )
    emit("shared_prefix_tokens", plan.shared)
    # Alternating rounds with and without the shared prefix (the first round of each warms it up); the best of each.
    timings: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    for _ in range(max(options.rounds, 1)):
        for share_prefix in (False, True):
            start = time.perf_counter()
            results[share_prefix] = reference_likelihood(
                model,
                tokenizer,
                prompts,
                references,
                batch_size=options.batch_size,
                add_special_tokens=add_special_tokens,
                share_prefix=share_prefix,
            )
            timings[share_prefix].append(time.perf_counter() - start)
    rows = results[True]
    likelihood_seconds = min(timings[True])
    emit("likelihood_unshared_seconds", min(timings[False]), 2)
    emit(
        "shared_vs_unshared_max_abs_diff_nats",
        max(abs(a.logprob - b.logprob) for a, b in zip(results[True], results[False])),
        6,
    )
    emit("prefix_sharing_speedup", min(timings[False]) / likelihood_seconds, 2)
    half_batch = max(options.batch_size // 2, 1)
    if options.dtype != "float32":
        unshared_half_batch = reference_likelihood(
            model,
            tokenizer,
            prompts,
            references,
            batch_size=half_batch,
            add_special_tokens=add_special_tokens,
            share_prefix=False,
        )
        emit(
            "unshared_batch_vs_half_batch_max_abs_diff_nats",
            max(abs(a.logprob - b.logprob) for a, b in zip(results[False], unshared_half_batch)),
            6,
        )
    summary = summarize_likelihood(rows)
    emit("reference_tokens_total", summary["tokens"])
    emit("reference_bytes_total", summary["bytes"])
    emit("ref_logprob_nats_per_byte", summary["ref_logprob"])
    emit("ref_logprob_nats_per_char", summary["ref_logprob_per_char"])
    emit("ref_logprob_nats_per_token", summary["ref_logprob_per_token"])
    emit("likelihood_seconds", likelihood_seconds, 2)

    check = min(options.check, len(prompts))
    one_at_a_time = reference_likelihood(
        model, tokenizer, prompts[:check], references[:check], batch_size=1, add_special_tokens=add_special_tokens
    )
    largest_difference = max(abs(a.logprob - b.logprob) for a, b in zip(rows[:check], one_at_a_time))
    emit("batch1_vs_batched_max_abs_diff_nats", largest_difference, 6)

    # Translating, once without and once with the shared prefix (the same translations are expected).
    translate_timings, outputs = {}, {}
    translate_options = dict(
        source_lang=SOURCE,
        target_lang=TARGET,
        prompt="auto",
        examples=examples,
        max_new_tokens=options.max_new_tokens,
    )
    for share_prefix in (False, True):
        start = time.perf_counter()
        outputs[share_prefix] = translate(
            model, tokenizer, sources, batch_size=options.batch_size, share_prefix=share_prefix, **translate_options
        )
        translate_timings[share_prefix] = time.perf_counter() - start
    hypotheses = outputs[True]
    translate_seconds = translate_timings[True]
    emit("chrf", sacrebleu.CHRF(word_order=2).corpus_score(hypotheses, [references]).score, 2)
    emit("translations_differing_shared_vs_unshared", sum(a != b for a, b in zip(outputs[True], outputs[False])))
    if options.dtype != "float32":
        half = translate(model, tokenizer, sources, batch_size=half_batch, share_prefix=False, **translate_options)
        emit("translations_differing_unshared_batch_vs_half_batch", sum(a != b for a, b in zip(outputs[False], half)))
        emit("chrf_unshared", sacrebleu.CHRF(word_order=2).corpus_score(outputs[False], [references]).score, 2)
    emit("translate_unshared_seconds", translate_timings[False], 2)
    emit("translate_prefix_sharing_speedup", translate_timings[False] / translate_seconds, 2)
    emit("translate_seconds", translate_seconds, 2)
    emit("likelihood_vs_translate", likelihood_seconds / translate_seconds, 3)
    emit("likelihood_vs_alignment", likelihood_seconds / alignment_seconds, 3)


if __name__ == "__main__":
    main()
