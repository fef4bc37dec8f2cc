"""Batched translate() vs plain one-at-a-time model.generate on the same prompts (Gemma 3 270M, NTREX deu->eng).

    NEURONXA_SHARED=../shared .venv/bin/python bench/bench_generation.py [--sentences 32] [--max-new-tokens 48]

Prints `name: value` lines, the headline (speed-up) last. Tokens are counted the same way for both paths: the tokens
of the returned one-line translations, so neither side gains from text generated past the newline.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def ntrex_lines(name: str) -> list[str]:
    shared = Path(os.environ.get("NEURONXA_SHARED", REPO_ROOT.parent / "shared"))
    path = shared / "data" / "ntrex128" / "NTREX-128" / name
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]


def one_at_a_time(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """What one would write without translate(): generate per prompt, stop at a newline via stop_strings."""
    import torch

    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt")
            generated = model.generate(**encoded, do_sample=False, max_new_tokens=max_new_tokens,
                                       stop_strings=["\n"], tokenizer=tokenizer)
            text = tokenizer.decode(generated[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs.append(text.split("\n", 1)[0].strip())
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import sacrebleu
    import torch

    from neuronxa_callback.generation import build_prompt, translate
    from neuronxa_callback.models import load_model_and_tokenizer

    german, english = ntrex_lines("newstest2019-ref.deu.txt"), ntrex_lines("newstest2019-src.eng.txt")
    sources, references = german[: args.sentences], english[: args.sentences]
    # Same 3 examples as tests/test_generation.py: short lines from 1000 on, never among the translated ones.
    picked = [i for i in range(1000, len(german)) if 8 <= len(german[i].split()) <= 14][:3]
    examples = [(german[i], english[i]) for i in picked]
    settings = dict(source_lang="deu_Latn", target_lang="eng_Latn", prompt="fewshot", examples=examples)

    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
    print(f"load_seconds: {time.perf_counter() - start:.1f}", flush=True)
    print(f"torch_threads: {torch.get_num_threads()}")
    print(f"sentences: {len(sources)}")
    print(f"max_new_tokens: {args.max_new_tokens}")
    print(f"batch_size: {args.batch_size}")

    def count_tokens(texts: list[str]) -> int:
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    start = time.perf_counter()
    batched = translate(model, tokenizer, sources, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                        **settings)
    batched_seconds = time.perf_counter() - start
    print(f"batched_seconds: {batched_seconds:.1f}", flush=True)

    prompts = [build_prompt(s, **settings) for s in sources]
    start = time.perf_counter()
    single = one_at_a_time(model, tokenizer, prompts, args.max_new_tokens)
    single_seconds = time.perf_counter() - start
    print(f"one_at_a_time_seconds: {single_seconds:.1f}", flush=True)

    chrf = sacrebleu.CHRF(word_order=2)
    batched_tps = count_tokens(batched) / batched_seconds
    single_tps = count_tokens(single) / single_seconds
    print(f"batched_output_tokens: {count_tokens(batched)}")
    print(f"one_at_a_time_output_tokens: {count_tokens(single)}")
    print(f"identical_outputs: {sum(a == b for a, b in zip(batched, single))}/{len(sources)}")
    print(f"batched_chrf2: {chrf.corpus_score(batched, [references]).score:.1f}")
    print(f"one_at_a_time_chrf2: {chrf.corpus_score(single, [references]).score:.1f}")
    print(f"batched_tokens_per_second: {batched_tps:.1f}")
    print(f"one_at_a_time_tokens_per_second: {single_tps:.1f}")
    print(f"speedup: {batched_tps / single_tps:.2f}")


if __name__ == "__main__":
    main()
