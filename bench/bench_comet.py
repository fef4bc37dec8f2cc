"""COMET scoring time on a tiny random COMET model: neuronxa_callback's loop vs comet's own predict(gpus=0).

    .venv/bin/python bench/bench_comet.py [--segments 100] [--repeats 3] [--batch-size 16]
    .venv/bin/python bench/bench_comet.py --quick        # 10 segments, 1 repeat: a smoke test

Prints `name: value` lines, the headline (seconds per 100 segments with our loop) last. Needs unbabel-comet and
NTREX-128 under $NEURONXA_SHARED/data/ntrex128 (default ../shared). Timings on a shared CPU are noisy: the
two paths run alternately, after one warm-up call each, and the median of --repeats runs is reported. torch
runs on --threads threads (default 1): on a loaded 2-core machine two threads of tiny matmuls were up to 10x
slower than one, which swamps any difference between the two paths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import emit, only_name_value_lines  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def emit_line(line: str) -> None:
    """A preformatted `name: value` line, through emit() (stdout stays `name: value` lines only)."""
    name, value = line.split(": ", 1)
    emit(name, value)


def _alternating_medians(functions, repeats: int) -> list[float]:
    for function in functions:
        function()  # warm-up
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for function, function_times in zip(functions, times):
            start = time.perf_counter()
            function()
            function_times.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        with only_name_value_lines():
            _main(argv)
    finally:
        torch.set_num_threads(threads)  # --threads is for this run only (matters when main() is called in-process)


def _main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 segments, 1 repeat: a smoke test in seconds")
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.segments, args.repeats = 10, 1

    import torch

    torch.set_num_threads(args.threads)

    from neuronxa_callback.quality._comet_compat import import_comet
    from neuronxa_callback.quality.metrics import CometScorer
    from neuronxa_callback.testing.comet import build_tiny_comet

    start = time.perf_counter()
    import_comet()
    import_seconds = time.perf_counter() - start
    shared = Path(os.environ.get("NEURONXA_SHARED", REPO_ROOT.parent / "shared"))
    folder = shared / "data" / "ntrex128" / "NTREX-128"
    eng = (folder / "newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines()
    deu = (folder / "newstest2019-ref.deu.txt").read_text(encoding="utf-8").splitlines()
    n = args.segments
    sources, references = deu[:n], eng[:n]
    hypotheses = [" ".join(r.split()[: max(1, len(r.split()) // 2)]) for r in references]

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_comet(Path(tmp) / "tiny", eng[1000:1300] + deu[1000:1300], kind="regression")
        scorer = CometScorer(model=str(model_dir), batch_size=args.batch_size)
        start = time.perf_counter()
        model = scorer.model
        load_seconds = time.perf_counter() - start
        samples = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references)]
        ours, theirs = _alternating_medians(
            [
                lambda: scorer.score(sources, hypotheses, references),
                lambda: model.predict(samples, batch_size=args.batch_size, gpus=0, progress_bar=False),
            ],
            args.repeats,
        )
        difference = max(
            abs(a - b)
            for a, b in zip(
                scorer.score(sources, hypotheses, references).segments,
                model.predict(samples, batch_size=args.batch_size, gpus=0, progress_bar=False).scores,
            )
        )
    per_100 = 100.0 / n
    emit_line(f"load_average_1min: {os.getloadavg()[0]:.1f}")
    emit_line(f"torch_threads: {torch.get_num_threads()}")
    emit_line(f"segments: {n}")
    emit_line(f"batch_size: {args.batch_size}")
    emit_line(f"comet_import_seconds: {import_seconds:.2f}")
    emit_line(f"tiny_model_load_seconds: {load_seconds:.3f}")
    emit_line(f"predict_seconds_per_100_segments: {theirs * per_100:.3f}")
    emit_line(f"max_abs_score_difference_vs_predict: {difference:.2e}")
    emit_line(f"predict_over_loop_time_ratio: {theirs / ours:.2f}")
    emit_line(f"comet_loop_seconds_per_100_segments: {ours * per_100:.3f}")


if __name__ == "__main__":
    main()
