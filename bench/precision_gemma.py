"""Gemma 3 270M in bf16 vs float32 on the CPU: NASCA / NAVCA / MEXA per layer on NTREX-128 eng-deu (100 pairs).

Usage::

    flock /tmp/neuronxa-heavy.lock .venv/bin/python bench/precision_gemma.py --output runs/precision_gemma.json
    .venv/bin/python bench/precision_gemma.py --quick          # tiny random model, bundled sample: seconds

Encodes the same sentences with the same batch plan twice: the model as loaded (float32), then cast to bf16. Prints
`name: value` lines: per metric the per-layer scores of both, the layer means, the largest per-layer |difference|,
the pooled representations' relative error (max over layers of ||bf16 - fp32||_F / ||fp32||_F) and, for NAS, the
largest |difference| of one pooled entry (gate values near 0 flip sign); the headline (largest layer-mean
difference) last. Not a timing benchmark (the Makefile's `make bench` runs bench_*.py only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import REPO_ROOT, emit, only_name_value_lines, setup_environment, tiny_model_and_tokenizer  # noqa: E402

setup_environment()

METRICS = {"nas": "nasca", "nav": "navca", "embedding": "mexa"}


def compare_precisions(model, tokenizer, data, *, batch_size: int = 16, max_length: int = 256) -> dict:
    """Scores and pooled-representation differences of a float32 `model` and of a bf16 copy of it.

    Returns {"fp32": {metric: [per layer]}, "bf16": {...}, "fp32_mean": {...}, "bf16_mean": {...},
    "max_layer_diff": {...}, "mean_diff": {...}, "rel_error": {...}, "nas_max_abs": float}. `model` itself is not
    changed (casting it to bf16 and back would round its weights: a shared test fixture must stay float32).
    """
    import copy

    import torch

    from neuronxa_callback.alignment.report import parallel_sentences, score_encoded
    from neuronxa_callback.instrument.activations import encode

    if next(model.parameters()).dtype != torch.float32:
        raise ValueError("compare_precisions: pass the model in float32 (it is the reference)")
    sentences = parallel_sentences(data)
    pair = data.pair_name(data.targets[0])
    out: dict = {"pair": pair, "n": len(data)}
    encoded = {}
    for name in ("fp32", "bf16"):
        subject = model if name == "fp32" else copy.deepcopy(model).to(torch.bfloat16)
        encoded[name] = encode(
            subject, tokenizer, sentences, representations=tuple(METRICS), batch_size=batch_size, max_length=max_length
        )
        del subject
        report = score_encoded(encoded[name], data, batch_size=batch_size, max_length=max_length)
        out[name] = {metric: [float(v) for v in report.score(metric, pair).per_layer] for metric in METRICS.values()}
        out[f"{name}_mean"] = {metric: float(report.mean(metric, pair)) for metric in METRICS.values()}
    out["max_layer_diff"] = {
        m: max(abs(a - b) for a, b in zip(out["fp32"][m], out["bf16"][m])) for m in METRICS.values()
    }
    out["mean_diff"] = {m: abs(out["fp32_mean"][m] - out["bf16_mean"][m]) for m in METRICS.values()}
    out["rel_error"] = {}
    for representation, metric in METRICS.items():
        a = encoded["bf16"].representations[representation].double()
        b = encoded["fp32"].representations[representation].double()
        out["rel_error"][metric] = float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())
    nas = encoded["bf16"].representations["nas"].double() - encoded["fp32"].representations["nas"].double()
    out["nas_max_abs"] = float(nas.abs().max())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny random model and the bundled sample")
    parser.add_argument("--num-pairs", type=int, default=100)
    parser.add_argument("--output", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    from neuronxa_callback.data.loaders import load_parallel

    with only_name_value_lines():
        if args.quick:
            model, tokenizer = tiny_model_and_tokenizer("llama")
            data = load_parallel("bundled", languages=["deu_Latn"], num_pairs=min(args.num_pairs, 32))
        else:
            from neuronxa_callback.instrument.models import load_model_and_tokenizer

            shared = Path(os.environ.get("NEURONXA_SHARED", REPO_ROOT.parent / "shared"))
            model, tokenizer = load_model_and_tokenizer("gemma-3-270m", dtype="float32")
            data = load_parallel(shared / "data" / "ntrex128", languages=["deu_Latn"], num_pairs=args.num_pairs)
        result = compare_precisions(model, tokenizer, data)
        emit("pair", result["pair"])
        emit("num_pairs", result["n"])
        for metric in METRICS.values():
            for name in ("fp32", "bf16"):
                emit(f"{metric}_{name}_per_layer", " ".join(f"{v:.2f}" for v in result[name][metric]))
                emit(f"{metric}_{name}_mean", result[f"{name}_mean"][metric])
            emit(f"{metric}_max_layer_diff", result["max_layer_diff"][metric])
            emit(f"{metric}_mean_diff", result["mean_diff"][metric])
            emit(f"{metric}_pooled_rel_error", result["rel_error"][metric], 5)
        emit("nas_pooled_max_abs_diff", result["nas_max_abs"])
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=1))
        emit("max_layer_mean_diff", max(result["mean_diff"].values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
