"""Measure how far each precision / wrapper moves pooled representations and scores from the float32 model.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tests._precision_measure --seeds 0,1,2,3,4

Prints one line per cell and seed, then the maximum over architectures and seeds per (wrapper, dtype,
representation): the numbers behind the tolerances in tests/test_precision_matrix.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict

from neuronxa_callback.testing.tiny import TINY_MODEL_TYPES, tiny_tokenizer
from tests._precision import DTYPES, REPRESENTATIONS, WRAPPERS, build_cell, compare, encode_cell, sentence_pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--archs", default=",".join(TINY_MODEL_TYPES))
    parser.add_argument("--wrappers", default=",".join(WRAPPERS))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    args = parser.parse_args(argv)
    tokenizer = tiny_tokenizer()
    pairs = sentence_pairs()
    worst: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    failures = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for arch in args.archs.split(","):
                for wrapper in args.wrappers.split(","):
                    for dtype in args.dtypes.split(","):
                        started = time.perf_counter()
                        try:
                            model, reference = build_cell(arch, dtype, wrapper, seed=seed, workdir=workdir)
                            for rep in REPRESENTATIONS:
                                numbers = compare(
                                    encode_cell(model, tokenizer, rep, pairs),
                                    encode_cell(reference, tokenizer, rep, pairs),
                                )
                                key = (wrapper, dtype, rep)
                                for name, value in numbers.items():
                                    if value > worst[key][name]:
                                        worst[key][name] = value
                                        worst[key][name + "_at"] = f"{arch}/s{seed}"
                                print(
                                    f"cell {arch} {wrapper} {dtype} {rep} seed={seed} "
                                    + " ".join(f"{k}={v:.3g}" for k, v in numbers.items()),
                                    flush=True,
                                )
                        except Exception as error:  # noqa: BLE001 - a measurement script reports every failure
                            failures.append((arch, wrapper, dtype, repr(error)[:200]))
                            print(f"FAIL {arch} {wrapper} {dtype}: {error!r}"[:300], flush=True)
                        print(
                            f"time {arch} {wrapper} {dtype} seed={seed}: {time.perf_counter() - started:.2f}s",
                            flush=True,
                        )
    print("== worst over architectures and seeds")
    for key in sorted(worst):
        w = worst[key]
        print(
            " ".join(key),
            " ".join(f"{k}={w[k]:.3g}({w[k + '_at']})" for k in ("rel_error", "max_abs", "score_diff", "mean_diff")),
        )
    print(f"failures: {len(failures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
