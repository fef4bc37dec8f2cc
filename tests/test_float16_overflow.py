"""Float16 overflow: a model whose activations or hidden states leave the float16 range (Gemma 3 does) must never get
silently wrong scores. encode() recomputes such batches under bfloat16 autocast; layers it cannot rescue are flagged,
reported with a reason and left out of the layer means. Tiny models with weights scaled (or poisoned) to overflow."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch

from neuronxa_callback.alignment.report import AlignmentReport, measure_alignment
from neuronxa_callback.alignment.scoring import PairScore, score_matrices
from neuronxa_callback.alignment.similarity import similarity_per_layer
from neuronxa_callback.instrument.activations import ActivationCapture, encode, pooling_weights
from neuronxa_callback.instrument.architectures import activation_modules, decoder_layers
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

SENTENCES = corpus_sentences()[:12]
BATCH = 4
ALL = ("nas", "nav", "embedding")
PAIR = "eng_Latn-deu_Latn"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def overflowing(tokenizer):
    """(float32 model, its float16 copy): layer 1's gate weights scaled to ~2e4, so the gate's outputs exceed 65504
    in float16 (inf in layer 1's activation and output, NaN in layer 2) and stay finite in float32 and bfloat16."""
    reference = tiny_model("llama", tokenizer=tokenizer, num_layers=3)
    gate = reference.model.layers[1].mlp.gate_proj.weight
    with torch.no_grad():
        gate.mul_(2e4 / gate.abs().max())
    return reference, copy.deepcopy(reference).to(torch.float16)


def _poisoned(tokenizer):
    """A float16 model that no precision rescues: one inf weight in layer 1's gate (NaN from there on)."""
    model = tiny_model("llama", tokenizer=tokenizer, num_layers=3).to(torch.float16)
    with torch.no_grad():
        model.model.layers[1].mlp.gate_proj.weight[0, 0] = float("inf")
    return model


def _parallel(sentences):
    from neuronxa_callback.data.loaders import ParallelSet

    half = len(sentences) // 2
    return ParallelSet(
        languages=("eng_Latn", "deu_Latn"),
        texts={"eng_Latn": tuple(sentences[:half]), "deu_Latn": tuple(sentences[half:])},
        ids=tuple(f"t{i}" for i in range(half)),
        origin="tiny overflow test",
    )


def _relative_error(a, b):
    return ((a.double() - b.double()).flatten(1).norm(dim=1) / b.double().flatten(1).norm(dim=1)).max().item()


# ----- recomputed: the scores are right -----------------------------------------------------------------------------
def test_float16_overflow_is_recomputed_under_bfloat16_and_reported(overflowing, tokenizer, caplog):
    reference, model = overflowing
    expected = encode(reference, tokenizer, SENTENCES, representations=ALL, batch_size=BATCH)
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback"):
        encoded = encode(model, tokenizer, SENTENCES, representations=ALL, batch_size=BATCH)
    assert sorted(encoded.overflow) == [1, 2]
    assert encoded.overflow[1].startswith("overflow in the MLP activation (float16)")
    assert encoded.upcast_batches == len(SENTENCES) // BATCH and encoded.invalid_layers == {}
    for name in ALL:  # bfloat16-level agreement with float32 (measured: <= 0.02), not float16 garbage
        assert torch.isfinite(encoded.representations[name]).all(), name
        assert _relative_error(encoded.representations[name], expected.representations[name]) < 0.06, name
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "float16 overflow" in warning and "[1, 2]" in warning and "bfloat16 autocast" in warning
    assert next(model.parameters()).dtype == torch.float16  # recomputed under autocast: the weights are untouched


def test_a_recomputed_measurement_says_so_in_the_report(overflowing, tokenizer):
    reference, model = overflowing
    data = _parallel(SENTENCES)
    report = measure_alignment(model, tokenizer, data, representations=ALL, batch_size=BATCH)
    expected = measure_alignment(reference, tokenizer, data, representations=ALL, batch_size=BATCH)
    assert report.numerics["upcast"] == "bfloat16 autocast" and report.numerics["upcast_batches"] == 3
    assert [item["layer"] for item in report.numerics["overflow"]] == [1, 2]
    assert "invalid_layers" not in report.numerics
    entry = report.to_dict()["pairs"][PAIR]
    assert entry["numerics"] == report.numerics and "invalid_layers" not in entry
    for metric in ("nasca", "navca", "mexa"):  # six sentences: at most one may cross the line
        assert report.score(metric).per_layer == pytest.approx(expected.score(metric).per_layer, abs=1 / 6 + 1e-9)
    assert "numerics" not in expected.to_dict()["pairs"][PAIR]  # float32: the output is what it always was


# ----- not recoverable: flagged, never scored -----------------------------------------------------------------------
def test_layers_that_stay_non_finite_are_flagged_and_left_out_of_the_mean(tokenizer, caplog):
    model = _poisoned(tokenizer)
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback"):
        report = measure_alignment(model, tokenizer, _parallel(SENTENCES), representations=ALL, batch_size=BATCH)
    assert [item["layer"] for item in report.numerics["invalid_layers"]] == [1, 2]
    assert report.numerics["invalid_layers"][0]["reason"].endswith("under bfloat16 autocast")
    for metric in ("nasca", "navca", "mexa"):
        score = report.score(metric)
        assert score.invalid_layers == [1, 2] and math.isfinite(score.per_layer[0])
        assert math.isnan(score.per_layer[1]) and math.isnan(score.per_layer[2])
        assert score.mean == score.per_layer[0]  # the valid layer alone, not a mean with two fake zeros
        assert score.retrieval["max_pooled"]["best_layer"] == 0
    payload = report.to_dict()
    json.dumps(payload, allow_nan=False)  # what the JSONL writer demands
    entry = payload["pairs"][PAIR]
    assert entry["nasca"][1:] == [None, None] and entry["nasca_layer_pvalues"][1:] == [None, None]
    assert entry["invalid_layers"] == {"nasca": [1, 2], "navca": [1, 2], "mexa": [1, 2]}
    assert entry["numerics"]["invalid_layers"][1]["layer"] == 2
    assert AlignmentReport.from_dict(json.loads(json.dumps(payload))).to_dict() == payload
    flat = report.flat_metrics()
    assert f"neuronxa/{PAIR}/nasca/layer_00" in flat and f"neuronxa/{PAIR}/nasca/layer_01" not in flat
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "layers [1, 2] of this float16 model" in warning


def test_a_sharded_encode_flags_overflow_instead_of_running_extra_forwards(overflowing, tokenizer):
    # The ranks of a sharded encode run the same number of forwards in lockstep: a rank may not add one.
    _, model = overflowing
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        encoded = encode(model, tokenizer, SENTENCES, representations=("nas",), batch_size=BATCH, shard=(0, 1))
    finally:
        handle.remove()
    assert len(calls) == len(SENTENCES) // BATCH and encoded.upcast_batches == 0
    assert sorted(encoded.invalid_layers) == [1, 2] and "sharded" in encoded.invalid_layers[1]
    assert torch.isnan(encoded.representations["nas"][1:]).all()
    assert torch.isfinite(encoded.representations["nas"][0]).all()


# ----- the check itself ---------------------------------------------------------------------------------------------
def _capture_with_first_activation(model, tokenizer, value: float) -> dict[int, str]:
    """capture.overflow after one forward whose layer-0 activation has one entry replaced by `value`."""

    def poke(module, inputs, output):
        output = output.clone()
        output[0, -1, 0] = value
        return output

    handle = activation_modules(model)[0].register_forward_hook(poke)  # runs before the capture's hook
    batch = tokenizer(SENTENCES[:2], return_tensors="pt", padding=True)
    try:
        with torch.no_grad(), ActivationCapture(model, ("nas",)) as capture:
            capture.begin_batch(pooling_weights(batch["attention_mask"]))
            model(**batch)
            capture.end_batch()
            return capture.overflow
    finally:
        handle.remove()


def test_a_value_saturated_at_the_float16_limit_counts_as_overflow(tokenizer):
    model = tiny_model("llama", tokenizer=tokenizer).to(torch.float16)
    assert _capture_with_first_activation(model, tokenizer, 65000.0) == {}
    assert _capture_with_first_activation(model, tokenizer, 65504.0) == {0: "overflow in the MLP activation (float16)"}
    # NaN spreads from there (through the layer's output into the next layer): flagged where it starts, and after.
    flagged = _capture_with_first_activation(model, tokenizer, float("nan"))
    assert flagged[0].startswith("overflow in the MLP activation (float16)") and 1 in flagged


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_float32_and_bfloat16_models_get_no_extra_hooks_or_flags(tokenizer, dtype):
    model = tiny_model("llama", tokenizer=tokenizer).to(dtype)
    with ActivationCapture(model, ("nas", "nav")):
        assert not any(layer._forward_hooks for layer in decoder_layers(model))
    encoded = encode(model, tokenizer, SENTENCES, representations=("nas", "nav"), batch_size=BATCH)
    assert encoded.overflow == {} and encoded.upcast_batches == 0 and encoded.invalid_layers == {}


# ----- scoring and similarity of a non-finite layer -----------------------------------------------------------------
def test_score_matrices_leaves_a_non_finite_layer_unscored():
    C = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    C[1, 0, 2] = float("nan")
    score = score_matrices(C, metric="nasca", pair="a-b")
    assert score.invalid_layers == [1] and math.isnan(score.per_layer[1]) and math.isnan(score.layer_pvalues[1])
    assert score.mean == 1.0 and score.retrieval["max_pooled"]["best_layer"] == 0
    data = json.loads(json.dumps(score.to_dict(), allow_nan=False))
    assert data["per_layer"] == [1.0, None, 1.0] and data["invalid_layers"] == [1]
    restored = PairScore.from_dict(data)
    assert restored.invalid_layers == [1] and math.isnan(restored.per_layer[1]) and restored.mean == 1.0
    only_invalid = score_matrices(C, metric="nasca", pair="a-b", layers=[1])
    assert math.isnan(only_invalid.mean) and only_invalid.retrieval["max_pooled"]["best_layer"] is None
    assert "invalid_layers" not in score_matrices(torch.eye(3), metric="nasca", pair="a-b").to_dict()


def test_similarity_of_a_non_finite_layer_is_undefined():
    generator = torch.Generator().manual_seed(0)
    source, target = torch.randn(2, 8, 5, generator=generator), torch.randn(2, 8, 5, generator=generator)
    source[1, 3] = float("nan")
    result = similarity_per_layer(source, target, measure="cka")
    assert result["per_layer"][1] is None and result["mean"] == result["per_layer"][0]


# ----- the real model -----------------------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_gemma_in_float16_scores_like_float32(gemma, ntrex_dir):
    """Gemma 3 270M's residual stream passes 65504 at layer 7 (inf, then NaN in every later layer): float16 used to
    score eng-jpn 0.146 instead of 0.367, without a word. Now the overflow is recomputed and reported."""
    from neuronxa_callback.data.loaders import load_parallel

    model, tokenizer = gemma
    data = load_parallel(ntrex_dir, languages=["jpn_Jpan"], num_pairs=16)
    float32 = measure_alignment(model, tokenizer, data, representations=("nas", "nav"), batch_size=8)
    float16 = measure_alignment(
        copy.deepcopy(model).to(torch.float16), tokenizer, data, representations=("nas", "nav"), batch_size=8
    )
    assert float16.numerics["upcast_batches"] == 4 and 7 in [item["layer"] for item in float16.numerics["overflow"]]
    assert "invalid_layers" not in float16.numerics
    for metric in ("nasca", "navca"):
        means = (float16.mean(metric), float32.mean(metric))
        assert abs(means[0] - means[1]) <= 0.03, (metric, means)
        # 16 sentences: a layer may differ by a few sentences (bfloat16 flips gate signs near 0), not by 0.59.
        assert max(abs(a - b) for a, b in zip(float16.score(metric).per_layer, float32.score(metric).per_layer)) <= 0.2


def test_a_run_with_an_unscorable_layer_is_recorded_correlated_and_reported(tokenizer, tmp_path):
    # The whole path after the measurement: JSONL (no NaN allowed), running correlations, report and figures,
    # and the shards of a DDP encode merged with their reasons.
    from neuronxa_callback import AlignmentMonitor
    from neuronxa_callback.offline.report import write_report
    from neuronxa_callback.parallel.collectives import merge_encoded
    from neuronxa_callback.sinks.jsonl import read_jsonl

    model = _poisoned(tokenizer)
    monitor = AlignmentMonitor(
        eval_steps=1,
        quality_every=1,
        quality_num_pairs=2,
        num_pairs=8,
        batch_size=8,
        max_length=48,
        max_new_tokens=4,
        num_fewshot=1,
    )
    monitor.begin(model, tokenizer, output_dir=tmp_path)
    for step in range(4):
        assert monitor.measure(model, tokenizer, step=step, trigger="train_begin" if step == 0 else "step")
    monitor.end(model, tokenizer, step=3)
    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    pair = "eng_Latn-isl_Latn"
    assert [r["pairs"][pair]["invalid_layers"]["nasca"] for r in records] == [[1, 2]] * 4
    assert all(r["pairs"][pair]["nasca"][1:] == [None, None] for r in records)
    per_layer_r = records[-1]["correlation"][pair]["chrf"]["per_layer_pearson"]
    assert per_layer_r[1:] == [None, None]
    written = write_report(tmp_path / "neuronxa" / "metrics.jsonl")
    assert written["summary"].read_text().count("| 0 (") >= 1  # the best layer is the one that could be scored

    shards = [
        encode(model, tokenizer, SENTENCES, representations=("nas",), batch_size=BATCH, shard=(r, 2)) for r in range(2)
    ]
    merged = merge_encoded(shards, len(SENTENCES))
    assert sorted(merged.invalid_layers) == [1, 2]
