"""measure_alignment / score_encoded / AlignmentReport with a tiny random model (no hub, a few seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from neuronxa_callback.alignment.report import (
    AlignmentError,
    AlignmentReport,
    measure_alignment,
    parallel_sentences,
    score_encoded,
)
from neuronxa_callback.alignment.scoring import chance_probability, cosine_matrices, weak_alignment
from neuronxa_callback.instrument.activations import encode
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

N = 8


def _parallel_set(texts: dict[str, list[str]], origin: str = "tiny test sentences"):
    from neuronxa_callback.data.loaders import ParallelSet

    languages = tuple(texts)
    return ParallelSet(
        languages=languages,
        texts={language: tuple(lines) for language, lines in texts.items()},
        ids=tuple(f"t{i:03d}" for i in range(len(texts[languages[0]]))),
        origin=origin,
    )


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("llama", tokenizer=tokenizer, num_layers=3)


@pytest.fixture(scope="module")
def sentences():
    lines = corpus_sentences()
    # English-like lines as the pivot, other lines as two "translations": unrelated text, but distinct sentences.
    return {"eng_Latn": lines[:N], "deu_Latn": lines[N : 2 * N], "isl_Latn": lines[2 * N : 3 * N]}


def test_identical_languages_score_one_on_every_layer(model, tokenizer, sentences):
    data = _parallel_set({"eng_Latn": sentences["eng_Latn"], "deu_Latn": list(sentences["eng_Latn"])})
    report = measure_alignment(model, tokenizer, data, representations="all", batch_size=3)
    pair = "eng_Latn-deu_Latn"
    assert report.pairs == [pair]
    for metric in ("nasca", "navca", "mexa"):
        score = report.score(metric, pair)
        assert score.per_layer == [1.0, 1.0, 1.0], metric
        assert score.mean == 1.0
        assert score.retrieval["max_pooled"]["both"] == 1.0
        assert score.mean_pvalue == chance_probability(N, N)


def test_pivot_is_encoded_once_in_one_call(model, tokenizer, sentences):
    data = _parallel_set(sentences)
    rows_seen = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        report = measure_alignment(model, tokenizer, data, batch_size=4)
    finally:
        handle.remove()
    # 3 languages x 8 sentences = 24 rows, in ceil(24 / 4) = 6 batches: batches span languages and the pivot is not
    # re-encoded for the second target (which would make 32 rows).
    assert sum(rows_seen) == 3 * N
    assert len(rows_seen) == 6
    assert report.pairs == ["eng_Latn-deu_Latn", "eng_Latn-isl_Latn"]


def test_report_matches_scores_of_the_encoded_rows(model, tokenizer, sentences):
    data = _parallel_set(sentences)
    report = measure_alignment(model, tokenizer, data, representations=("nas",), batch_size=4)
    encoded = encode(model, tokenizer, parallel_sentences(data), representations=("nas",), batch_size=4)
    nas = encoded.representations["nas"]
    expected = weak_alignment(cosine_matrices(nas[:, :N], nas[:, 2 * N :])).tolist()
    assert report.score("nasca", "eng_Latn-isl_Latn").per_layer == expected


def test_report_dict_structure_and_round_trip(model, tokenizer, sentences):
    data = _parallel_set(sentences)
    report = measure_alignment(model, tokenizer, data, batch_size=4, model_name="tiny-llama", layers=(1, 3))
    payload = json.loads(json.dumps(report.to_dict()))
    assert set(payload) == {"model", "data", "settings", "timing", "pairs"}
    assert payload["model"] == "tiny-llama"
    assert payload["data"] == {"origin": "tiny test sentences", "ids": [f"t{i:03d}" for i in range(N)]}
    assert payload["timing"]["load_seconds"] is None
    assert payload["timing"]["forward_seconds"] > 0 and payload["timing"]["scoring_seconds"] >= 0
    settings = payload["settings"]
    assert settings["representations"] == ["nas", "nav"] and settings["pooling"] == "weighted"
    assert settings["layers"] == "1-3" and settings["layers_used"] == [1, 2] and settings["center"] is False
    assert settings["languages"] == ["eng_Latn", "deu_Latn", "isl_Latn"] and settings["n"] == N
    entry = payload["pairs"]["eng_Latn-isl_Latn"]
    assert entry["num_layers"] == 3
    for metric in ("nasca", "navca"):
        assert len(entry[metric]) == 3 and len(entry[f"{metric}_layer_pvalues"]) == 3
        assert entry[f"{metric}_mean"] == pytest.approx(sum(entry[metric][1:]) / 2)
        assert entry[f"{metric}_pvalue"] == chance_probability(round(entry[f"{metric}_mean"] * N), N)
        retrieval = entry["retrieval"][metric]
        assert set(retrieval) == {"src2tgt", "tgt2src", "both", "max_pooled"}
        assert retrieval["max_pooled"]["best_layer"] in (1, 2)
        assert entry["signature"][metric].startswith(f"{metric}|model:tiny-llama|pair:eng_Latn-isl_Latn|n:{N}|")
        assert "|layers:1-3|" in entry["signature"][metric]
    assert "mexa" not in entry
    restored = AlignmentReport.from_dict(payload)
    assert restored.to_dict() == payload
    assert restored.mean("nav", "eng_Latn-deu_Latn") == report.mean("navca", "eng_Latn-deu_Latn")


def test_flat_metrics_names(model, tokenizer, sentences):
    data = _parallel_set({"eng_Latn": sentences["eng_Latn"], "isl_Latn": sentences["isl_Latn"]})
    report = measure_alignment(model, tokenizer, data, representations=("nas",), batch_size=8)
    flat = report.flat_metrics()
    assert flat["neuronxa/eng_Latn-isl_Latn/nasca_mean"] == report.mean("nasca")
    assert flat["neuronxa/eng_Latn-isl_Latn/nasca/layer_02"] == report.score("nasca").per_layer[2]
    assert len(flat) == 1 + 3
    assert set(report.flat_metrics(prefix="x")) == {key.replace("neuronxa/", "x/", 1) for key in flat}


def test_score_encoded_accepts_rows_in_any_order_and_rejects_missing_rows(model, tokenizer, sentences):
    data = _parallel_set(sentences)
    encoded = encode(model, tokenizer, parallel_sentences(data), representations=("nav",), batch_size=4)
    in_order = score_encoded(encoded, data)
    permutation = torch.randperm(3 * N, generator=torch.Generator().manual_seed(0))
    shuffled = type(encoded)(
        representations={"nav": encoded.representations["nav"][:, permutation]},
        indices=[encoded.indices[i] for i in permutation.tolist()],
        num_layers=encoded.num_layers,
        forward_seconds=encoded.forward_seconds,
    )
    assert score_encoded(shuffled, data).scores == in_order.scores
    partial = type(encoded)(
        representations={"nav": encoded.representations["nav"][:, : 2 * N]},
        indices=list(range(2 * N)),
        num_layers=encoded.num_layers,
        forward_seconds=0.0,
    )
    with pytest.raises(AlignmentError, match="cover all 24 sentences"):
        score_encoded(partial, data)


def test_center_is_recorded_and_off_by_default(model, tokenizer, sentences):
    data = _parallel_set(sentences)
    encoded = encode(model, tokenizer, parallel_sentences(data), representations=("nav",), batch_size=4)
    plain = score_encoded(encoded, data)
    centered = score_encoded(encoded, data, center=True)
    assert plain.settings["center"] is False and centered.settings["center"] is True
    assert "center:yes" in centered.score("navca", "eng_Latn-deu_Latn").signature()
    nav = encoded.representations["nav"]
    expected = weak_alignment(cosine_matrices(nav[:, :N], nav[:, N : 2 * N], center=True)).tolist()
    assert centered.score("navca", "eng_Latn-deu_Latn").per_layer == expected


def test_unknown_representation_is_rejected(model, tokenizer, sentences):
    data = _parallel_set(sentences)
    with pytest.raises(AlignmentError, match="unknown representation"):
        measure_alignment(model, tokenizer, data, representations=("neurons",))
