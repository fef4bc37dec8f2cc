"""Helpers the bench/bench_*.py scripts share: `name: value` output, spread of timings, side-by-side rounds.

Not a benchmark itself (the Makefile runs bench/bench_*.py only). Each script adds bench/ to sys.path, so this
imports the same way whether a script runs as `python bench/bench_x.py` or is loaded by tests/test_bench_smoke.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
_OUT = None  # where emit() writes while only_name_value_lines() is active


def bench_parser(doc: str, *, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark shares: --quick (tiny sizes, a smoke test) and --model."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--model", default="gemma-3-270m")
    return parser


def parse_with_quick(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: dict[str, Any]
) -> argparse.Namespace:
    """parser.parse_args(argv); with --quick, the `quick` sizes replace whatever was given."""
    options = parser.parse_args(argv)
    if options.quick:
        for name, value in quick.items():
            setattr(options, name, value)
    return options


@contextlib.contextmanager
def only_name_value_lines():
    """Inside: emit() writes to stdout, everything else printed to stdout goes to stderr.

    Libraries print to stdout on their own (transformers at import under WANDB_MODE=offline, DeepSpeed's
    accelerator notice, the Trainer's log dicts); the benchmark's stdout stays `name: value` lines only.
    """
    global _OUT
    previous, _OUT = _OUT, sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _OUT = previous


def setup_environment() -> None:
    """Offline flags and the repository on sys.path; called before transformers is imported."""
    for name, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
        ("WANDB_MODE", "disabled"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(name, value)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def emit(name: str, value: Any, digits: int = 4) -> None:
    """Print one `name: value` line (floats rounded to `digits` places), flushed so a killed run keeps its lines."""
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text}", file=_OUT or sys.stdout, flush=True)


def emit_spread(name: str, values: Sequence[float], digits: int = 4) -> None:
    """`name_min`, `name_median`, `name_max`: the spread of timings on a machine others share."""
    emit(f"{name}_min", float(min(values)), digits)
    emit(f"{name}_median", float(statistics.median(values)), digits)
    emit(f"{name}_max", float(max(values)), digits)


def alternating(sides: dict[str, Callable[[], Any]], rounds: int) -> list[dict[str, tuple[float, Any]]]:
    """Run every side once per round, the order reversed every other round (A B, B A, A B, ...).

    Returns one {side: (seconds, result)} per round. Reversing the order cancels a steady drift in machine load
    (and any cost of running second) over each pair of rounds, which a fixed A B A B order would not.
    """
    names = list(sides)
    out = []
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        timings = {}
        for name in order:
            start = time.perf_counter()
            result = sides[name]()
            timings[name] = (time.perf_counter() - start, result)
        out.append(timings)
    return out


def tiny_model_and_tokenizer(model_type: str = "llama", num_layers: int = 2):
    """The tests' tiny random model and tokenizer (for --quick runs: no download, seconds instead of minutes)."""
    setup_environment()
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    return tiny_model(model_type, tokenizer=tokenizer, num_layers=num_layers), tokenizer


def bench_model(options: Any) -> tuple[Any, Any, str]:
    """(model, tokenizer, name) for a benchmark's options: the tiny random model with --quick, else --model."""
    if options.quick:
        model, tokenizer = tiny_model_and_tokenizer("llama")
        return model, tokenizer, "tiny-llama (random, --quick)"
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(options.model)
    return model, tokenizer, options.model
