"""Cost of the NeuronXA activation capture on Gemma 3 270M: time vs a plain forward, and its own memory.

Usage::

    flock /tmp/neuronxa-heavy.lock .venv/bin/python bench/bench_capture.py [--sentences 100] [--rounds 2]
    .venv/bin/python bench/bench_capture.py --quick        # tiny random model, bundled sample: seconds

Prints `name: value` lines, the headline (interleaved time ratio) last.
- Time, headline: per batch, plain and hooked forward back to back (order alternating per batch), over `rounds`
  passes of all sentences; capture_time_ratio_interleaved = summed hooked / summed plain seconds. Pairing batch with
  batch makes it steadier on a busy machine than whole-run rounds. Target ratio <= 1.10.
- Time, whole runs: encode() (hooks, pooling, copies) against a plain forward over the same batches in the same
  length-sorted order with the same inputs (logits_to_keep=1), alternating the two `rounds` times, after a warm-up
  of both; printed with its spread (min/median/max) for comparison.
- Memory: peak bytes of the tensors the capture itself creates and keeps alive (slices converted to float32,
  accumulators, per-layer sums), tracked with a TorchDispatchMode inside the hooks, for batches of 32- and
  256-token sentences. Target ratio (256 / 32) <= 1.2: the capture must not grow with sentence length.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (  # noqa: E402
    REPO_ROOT as REPO,
)
from _benchlib import (
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

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from neuronxa_callback.instrument import activations  # noqa: E402
from neuronxa_callback.instrument.activations import encode, plan_batches  # noqa: E402

QUICK = dict(sentences=16, rounds=2, batch_size=4)


def bundled_english(count: int) -> list[str]:
    from neuronxa_callback.data.loaders import load_parallel

    return list(load_parallel("bundled", languages=("isl_Latn",), num_pairs=count).sentences("eng_Latn"))


def ntrex_english(count: int) -> list[str]:
    shared = Path(os.environ.get("NEURONXA_SHARED", REPO.parent / "shared"))
    path = shared / "data" / "ntrex128" / "NTREX-128" / "newstest2019-src.eng.txt"
    # The file has CRLF line endings: splitlines() drops both characters.
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line][:count]


def padded_batches(tokenizer, sentences: list[str], batch_size: int, max_length: int):
    """The batches encode() builds: (input_ids, attention_mask, pooled_mask), length-sorted, same padding side."""
    tokenized = tokenizer(sentences, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    ids, special = tokenized["input_ids"], tokenized["special_tokens_mask"]
    left = tokenizer.padding_side == "left"
    return [
        activations._pad_batch([ids[i] for i in batch], [special[i] for i in batch], tokenizer.pad_token_id, left)
        for batch in plan_batches([len(x) for x in ids], batch_size)
    ]


def _forward(model, input_ids, attention) -> None:
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=False, logits_to_keep=1)


def plain_forward_seconds(model, tokenizer, sentences: list[str], batch_size: int, max_length: int) -> float:
    """The forward passes encode() makes (same tokens, batches, order, padding, kwargs), without any hook."""
    batches = padded_batches(tokenizer, sentences, batch_size, max_length)
    start = time.perf_counter()
    with torch.no_grad():
        for input_ids, attention, _ in batches:
            _forward(model, input_ids, attention)
    return time.perf_counter() - start


def interleaved_seconds(
    model, tokenizer, sentences: list[str], batch_size: int, max_length: int
) -> tuple[float, float]:
    """(plain, captured) seconds summed over batches, each batch run both ways back to back (order alternating).

    On a shared machine whose load changes by the minute this pairs like with like, unlike whole-run rounds.
    """
    plain = captured = 0.0
    capture = activations.ActivationCapture(model, ("nas", "nav"))
    with torch.no_grad():
        for number, (input_ids, attention, pooled) in enumerate(
            padded_batches(tokenizer, sentences, batch_size, max_length)
        ):
            weights = activations.pooling_weights(pooled)
            for hooked in (False, True) if number % 2 == 0 else (True, False):
                start = time.perf_counter()
                if hooked:
                    with capture:  # registering 36 hooks per batch costs microseconds
                        capture.begin_batch(weights)
                        _forward(model, input_ids, attention)
                        capture.end_batch()
                    captured += time.perf_counter() - start
                else:
                    _forward(model, input_ids, attention)
                    plain += time.perf_counter() - start
    return plain, captured


class _LiveBytes(TorchDispatchMode):
    """Counts bytes of tensors created under this mode (not views of inputs) while they are alive; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for tensor in tree_flatten(result)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in inputs:
                nbytes = tensor.untyped_storage().nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._release, nbytes)
        return result


def capture_peak_bytes(model, tokenizer, sentences: list[str], tokens: int, batch_size: int) -> int:
    """Peak live bytes created by the capture's hooks while encoding `sentences` cut to `tokens` tokens."""
    counter = _LiveBytes()
    original = activations.ActivationCapture._pooled

    # Only the hook's own work runs under the counter; results it keeps (per-layer sums) stay counted until freed.
    def counted(self, tensor, transforms):
        with counter:
            return original(self, tensor, transforms)

    activations.ActivationCapture._pooled = counted
    try:
        encode(model, tokenizer, sentences, batch_size=batch_size, max_length=tokens)
    finally:
        activations.ActivationCapture._pooled = original
    return counter.peak


def parse_args(argv=None):
    parser = bench_parser(__doc__, quick_help="tiny random model, bundled sample: a smoke test")
    # Defaults fit an 8-minute hold of the project's shared 2-core machine (a 100-sentence pass took ~35 s there).
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    options = parse_with_quick(parser, argv, QUICK)
    return options


def main(argv=None) -> None:
    with only_name_value_lines():
        _main(argv)


def _main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    model, tokenizer, model_name = bench_model(args)
    emit("model", model_name)
    sentences = bundled_english(args.sentences) if args.quick else ntrex_english(args.sentences)
    emit("load_seconds", time.perf_counter() - start, 1)
    emit("torch_threads", torch.get_num_threads())
    emit("sentences", len(sentences))
    emit("rounds", args.rounds)

    # Warm-up of both sides (allocator, kernels) so neither pays it in the timed rounds.
    encode(model, tokenizer, sentences[: args.batch_size], batch_size=args.batch_size)
    plain_forward_seconds(model, tokenizer, sentences[: args.batch_size], args.batch_size, 256)

    def encoded_seconds() -> float:
        started = time.perf_counter()
        encode(model, tokenizer, sentences, batch_size=args.batch_size)
        return time.perf_counter() - started

    rounds = alternating(
        {
            "plain": lambda: plain_forward_seconds(model, tokenizer, sentences, args.batch_size, 256),
            "encode": encoded_seconds,
        },
        args.rounds,
    )
    # Each side's own clock (plain times its forward passes only, not the padding done before them).
    plain_runs = [r["plain"][1] for r in rounds]
    encode_runs = [r["encode"][1] for r in rounds]
    ratios = [e / p for e, p in zip(encode_runs, plain_runs)]
    for number, (p, e) in enumerate(zip(plain_runs, encode_runs)):
        emit(f"round_{number}_plain_forward_seconds", p, 2)
        emit(f"round_{number}_encode_seconds", e, 2)
        emit(f"round_{number}_ratio", e / p, 3)
    emit_spread("plain_forward_seconds", plain_runs, 2)
    emit_spread("encode_seconds", encode_runs, 2)
    emit_spread("capture_time_ratio_rounds", ratios, 3)

    passes = [interleaved_seconds(model, tokenizer, sentences, args.batch_size, 256) for _ in range(args.rounds)]
    for number, (plain, captured) in enumerate(passes):
        emit(f"interleaved_pass_{number}_ratio", captured / plain, 3)
    emit_spread("interleaved_plain_forward_seconds", [p for p, _ in passes], 2)
    emit_spread("interleaved_capture_forward_seconds", [c for _, c in passes], 2)
    emit_spread("interleaved_pass_ratio", [c / p for p, c in passes], 3)

    # Long texts (several lines joined) truncated to exactly 32 or 256 tokens, one batch of them.
    joined = " ".join(sentences)
    words = joined.split()
    long_texts = [" ".join(words[i * 7 : i * 7 + 400]) for i in range(args.batch_size)]
    peak_32 = capture_peak_bytes(model, tokenizer, long_texts, 32, args.batch_size)
    peak_256 = capture_peak_bytes(model, tokenizer, long_texts, 256, args.batch_size)
    emit("capture_peak_bytes_32_tokens", peak_32)
    emit("capture_peak_bytes_256_tokens", peak_256)
    emit("activation_bytes_256_tokens_per_layer", args.batch_size * 256 * model.config.intermediate_size * 4)
    emit("capture_memory_ratio_256_vs_32", peak_256 / peak_32, 3)
    # Headline: all passes' hooked seconds over all passes' plain seconds.
    emit("capture_time_ratio_interleaved", sum(c for _, c in passes) / sum(p for p, _ in passes), 3)


if __name__ == "__main__":
    main()
