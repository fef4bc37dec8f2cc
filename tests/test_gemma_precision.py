"""Gemma 3 270M in bf16 vs float32 on the CPU, NTREX-128 eng-deu, 100 pairs: NASCA / NAVCA / MEXA per layer.

The bounds come from one run of bench/precision_gemma.py (MEASURED_RUN below, also the README's "Mixed precision"
table); each is that run's number with a margin for a different CPU / thread count / library version.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "precision_gemma.py"

# MEASURED_RUN: bench/precision_gemma.py, 2026-12-02, this project's 2-core CPU (torch 2.13.0+cpu, transformers
# 5.24), 100 pairs, batch 16. Layer means fp32 -> bf16: NASCA 0.4939 -> 0.4944, NAVCA 0.3194 -> 0.3178,
# MEXA 0.3372 -> 0.3383. Largest per-layer difference 0.02 (two sentences of 100) for each metric; layer-mean
# differences 0.0006 / 0.0017 / 0.0011; pooled relative error (max over layers) NAS 0.033, NAV 0.0047, embedding
# 0.0034; the largest change of one pooled NAS entry 0.46 (gate values near 0 flipping sign in bf16).
# Bounds: per-layer 0.05 (five sentences, 2.5x), layer mean 0.005 (~3x the largest), relative error ~2x.
BOUNDS: dict[str, float] = {
    "nasca_max_layer_diff": 0.05,
    "navca_max_layer_diff": 0.05,
    "mexa_max_layer_diff": 0.05,
    "nasca_mean_diff": 0.005,
    "navca_mean_diff": 0.005,
    "mexa_mean_diff": 0.005,
    "nasca_rel_error": 0.07,
    "navca_rel_error": 0.01,
    "mexa_rel_error": 0.007,
}


def _script():
    spec = importlib.util.spec_from_file_location("precision_gemma", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bf16_gemma_scores_agree_with_float32(gemma, ntrex_dir):
    import torch

    from neuronxa_callback.data.loaders import load_parallel

    model, tokenizer = gemma
    before = {name: p.detach().clone() for name, p in list(model.named_parameters())[:3]}
    data = load_parallel(ntrex_dir, languages=["deu_Latn"], num_pairs=100)
    result = _script().compare_precisions(model, tokenizer, data)
    for metric in ("nasca", "navca", "mexa"):
        assert len(result["bf16"][metric]) == len(result["fp32"][metric]) == 18
        assert result["max_layer_diff"][metric] <= BOUNDS[f"{metric}_max_layer_diff"], result
        assert result["mean_diff"][metric] <= BOUNDS[f"{metric}_mean_diff"], result
        assert result["rel_error"][metric] <= BOUNDS[f"{metric}_rel_error"], result
    # The float32 side is the figure the rest of the suite knows (NOTES: NASCA layer mean 0.494 eng-deu).
    assert result["fp32_mean"]["nasca"] == pytest.approx(0.494, abs=0.01)
    # The shared fixture is still the float32 model it was (the bf16 side ran on a copy).
    assert next(model.parameters()).dtype == torch.float32
    assert all(torch.equal(before[name], p) for name, p in list(model.named_parameters())[:3])
