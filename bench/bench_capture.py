"""Cost of the NeuronXA activation capture on Gemma 3 270M: time vs a plain forward, and its own memory.

Usage::

    NEURONXA_SHARED=../shared .venv/bin/python bench/bench_capture.py [--sentences 200] [--rounds 3]

Prints `name: value` lines, the headline (median time ratio) last.
- Time: encode() (hooks, pooling, copies) against a plain forward over the same batches in the same length-sorted
  order with the same inputs (logits_to_keep=1), alternating the two `rounds` times. Target ratio <= 1.10.
  Also per batch, plain and hooked forward back to back (capture_time_ratio_interleaved): steadier on a busy machine.
- Memory: peak bytes of the tensors the capture itself creates and keeps alive (slices converted to float32,
  accumulators, per-layer sums), tracked with a TorchDispatchMode inside the hooks, for batches of 32- and
  256-token sentences. Target ratio (256 / 32) <= 1.2: the capture must not grow with sentence length.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neuronxa_callback import activations  # noqa: E402
from neuronxa_callback.activations import encode, plan_batches  # noqa: E402
from neuronxa_callback.models import load_model_and_tokenizer  # noqa: E402


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


def interleaved_seconds(model, tokenizer, sentences: list[str], batch_size: int, max_length: int) -> tuple[float, float]:
    """(plain, captured) seconds summed over batches, each batch run both ways back to back (order alternating).

    On a shared machine whose load changes by the minute this pairs like with like, unlike whole-run rounds.
    """
    plain = captured = 0.0
    capture = activations.ActivationCapture(model, ("nas", "nav"))
    with torch.no_grad():
        for number, (input_ids, attention, pooled) in enumerate(padded_batches(tokenizer, sentences, batch_size, max_length)):
            weights = activations.pooling_weights(pooled)
            for hooked in ((False, True) if number % 2 == 0 else (True, False)):
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
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
    print(f"load_seconds: {time.perf_counter() - start:.1f}")
    print(f"torch_threads: {torch.get_num_threads()}")
    sentences = ntrex_english(args.sentences)
    print(f"sentences: {len(sentences)}")

    # Warm-up (allocator, kernels) so neither side pays it in the timed rounds.
    encode(model, tokenizer, sentences[: args.batch_size], batch_size=args.batch_size)
    ratios = []
    for round_index in range(args.rounds):
        plain = plain_forward_seconds(model, tokenizer, sentences, args.batch_size, 256)
        started = time.perf_counter()
        encode(model, tokenizer, sentences, batch_size=args.batch_size)
        captured = time.perf_counter() - started
        ratios.append(captured / plain)
        print(f"round_{round_index}_plain_forward_seconds: {plain:.2f}")
        print(f"round_{round_index}_encode_seconds: {captured:.2f}")
        print(f"round_{round_index}_ratio: {captured / plain:.3f}")

    plain, captured = interleaved_seconds(model, tokenizer, sentences, args.batch_size, 256)
    print(f"interleaved_plain_forward_seconds: {plain:.2f}")
    print(f"interleaved_capture_forward_seconds: {captured:.2f}")
    print(f"capture_time_ratio_interleaved: {captured / plain:.3f}")

    # Long texts (several NTREX lines joined) truncated to exactly 32 or 256 tokens, one batch of them.
    joined = " ".join(sentences)
    words = joined.split()
    long_texts = [" ".join(words[i * 7 : i * 7 + 400]) for i in range(args.batch_size)]
    peak_32 = capture_peak_bytes(model, tokenizer, long_texts, 32, args.batch_size)
    peak_256 = capture_peak_bytes(model, tokenizer, long_texts, 256, args.batch_size)
    print(f"capture_peak_bytes_32_tokens: {peak_32}")
    print(f"capture_peak_bytes_256_tokens: {peak_256}")
    print(f"activation_bytes_256_tokens_per_layer: {args.batch_size * 256 * model.config.intermediate_size * 4}")
    print(f"capture_memory_ratio_256_vs_32: {peak_256 / peak_32:.3f}")
    print(f"capture_time_ratio_median: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
