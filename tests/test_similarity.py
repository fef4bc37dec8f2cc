"""Golden tests of the similarity baselines (debiased CKA, SVCCA, ANC): invariances, null and identity levels, and
agreement with naive d x d reference implementations (numpy, feature space) on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuronxa_callback.alignment.similarity import (
    SimilarityError,
    anc,
    cka,
    hsic_unbiased,
    measure_names,
    parse_measure,
    similarity_per_layer,
    svcca,
)


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----- naive references in feature space (d x d), written from the papers, independent of the module -----------------
def _reference_debiased_cka(x, y):
    """Kornblith et al.'s feature_space_linear_cka(debiased=True), via d x d cross-covariances."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    n = x.shape[0]

    def debiased(xty, rows_x, rows_y, norm_x, norm_y):
        return xty - n / (n - 2.0) * rows_x.dot(rows_y) + norm_x * norm_y / ((n - 1) * (n - 2))

    rows_x, rows_y = (x * x).sum(1), (y * y).sum(1)
    sq_x, sq_y = rows_x.sum(), rows_y.sum()
    xy = np.linalg.norm(x.T @ y) ** 2
    xx = np.linalg.norm(x.T @ x) ** 2
    yy = np.linalg.norm(y.T @ y) ** 2
    return debiased(xy, rows_x, rows_y, sq_x, sq_y) / math.sqrt(
        debiased(xx, rows_x, rows_x, sq_x, sq_x) * debiased(yy, rows_y, rows_y, sq_y, sq_y)
    )


def _reference_svcca(x, y, k):
    """PCA through the d x d covariance, then CCA through Sxx^-1/2 Sxy Syy^-1/2 (Raghu et al. 2017)."""

    def pca(a):
        a = a - a.mean(0, keepdims=True)
        values, vectors = np.linalg.eigh(a.T @ a)
        top = vectors[:, np.argsort(values)[::-1][:k]]
        return a @ top

    a, b = pca(x), pca(y)

    def inv_sqrt(m):
        values, vectors = np.linalg.eigh(m)
        return vectors @ np.diag(values**-0.5) @ vectors.T

    m = inv_sqrt(a.T @ a) @ (a.T @ b) @ inv_sqrt(b.T @ b)
    return float(np.clip(np.linalg.svd(m, compute_uv=False), 0, 1).mean())


def _reference_anc(x, y):
    values = []
    for j in range(x.shape[1]):
        if np.ptp(x[:, j]) == 0 or np.ptp(y[:, j]) == 0:  # exactly constant (np.std of 0.7s is ~1e-16, not 0)
            continue
        values.append(np.corrcoef(x[:, j], y[:, j])[0, 1])
    return float(np.mean(values))


# ----- agreement with the references ------------------------------------------------------------------------------------
@pytest.mark.parametrize("d1,d2", [(12, 12), (40, 7), (5, 60)])
def test_cka_matches_feature_space_reference(d1, d2):
    rng = _rng(1)
    x = rng.normal(size=(30, d1))
    y = x[:, :1] * rng.normal(size=(1, d2)) + rng.normal(size=(30, d2))
    assert cka(x, y) == pytest.approx(_reference_debiased_cka(x, y), abs=1e-10)


def test_svcca_matches_covariance_reference():
    rng = _rng(2)
    x = rng.normal(size=(40, 25)) * np.linspace(3, 0.5, 25)  # a decaying spectrum: the top directions are defined
    y = x @ rng.normal(size=(25, 30)) + 0.5 * rng.normal(size=(40, 30))
    for k in (1, 4, 10):
        assert svcca(x, y, directions=k) == pytest.approx(_reference_svcca(x, y, k), abs=1e-8)


def test_anc_matches_loop_reference_and_masks_constant_neurons():
    rng = _rng(3)
    x = rng.normal(size=(20, 9))
    y = x + rng.normal(size=(20, 9))
    x[:, 2] = 0.0  # a NAS neuron that never fires in one language
    y[:, 5] = 0.7  # a neuron constant in the other
    assert anc(x, y) == pytest.approx(_reference_anc(x, y), abs=1e-12)
    assert anc(np.zeros((10, 3)), rng.normal(size=(10, 3))) is None


# ----- invariances ----------------------------------------------------------------------------------------------------------
def _orthogonal(d, seed):
    q, _ = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q


def test_cka_invariant_to_rotation_isotropic_scaling_and_translation_not_to_anisotropic_scaling():
    rng = _rng(4)
    x = rng.normal(size=(50, 64))
    y = 0.3 * x[:, ::-1] + rng.normal(size=(50, 64))
    base = cka(x, y)
    assert cka(x @ _orthogonal(64, 5), y) == pytest.approx(base, abs=1e-10)
    assert cka(x, 7.5 * y @ _orthogonal(64, 6)) == pytest.approx(base, abs=1e-10)
    assert cka(x + 3.0, y - 1.0) == pytest.approx(base, abs=1e-10)
    assert cka(x * np.linspace(0.1, 10, 64), y) != pytest.approx(base, abs=1e-3)  # CKA is not per-feature invariant


def test_anc_invariant_to_per_neuron_positive_affine_maps_and_flips_with_negative_ones():
    rng = _rng(7)
    x = rng.normal(size=(40, 30))
    y = x + 2 * rng.normal(size=(40, 30))
    scale, shift = rng.uniform(0.01, 100, size=30), rng.normal(size=30) * 50
    assert anc(x * scale + shift, y) == pytest.approx(anc(x, y), abs=1e-12)
    assert anc(-x, y) == pytest.approx(-anc(x, y), abs=1e-12)


def test_svcca_invariances():
    rng = _rng(8)
    x = rng.normal(size=(60, 40)) * np.linspace(4, 0.2, 40)
    y = x @ rng.normal(size=(40, 40)) + rng.normal(size=(60, 40))
    base = svcca(x, y, directions=8)
    assert svcca(x @ _orthogonal(40, 9) * 3.0 + 1.0, y, directions=8) == pytest.approx(base, abs=1e-9)
    # Any invertible linear map when the kept directions span the whole feature space (plain CCA): k = d = 6.
    small_x, small_y = rng.normal(size=(60, 6)), rng.normal(size=(60, 6))
    small_y[:, :3] += small_x[:, :3]
    mixed = small_x @ (rng.normal(size=(6, 6)) + 3 * np.eye(6))
    assert svcca(mixed, small_y, directions=6) == pytest.approx(svcca(small_x, small_y, directions=6), abs=1e-9)
    # ... and not when k < d: the SVD step picks directions by variance, which a non-orthogonal map changes.
    assert svcca(x * np.linspace(0.05, 20, 40), y, directions=8) != pytest.approx(base, abs=1e-3)


# ----- levels: unrelated data, identical data ---------------------------------------------------------------------------
def test_unrelated_data_near_zero_identical_data_one_at_n100_d2000():
    g = torch.Generator().manual_seed(0)
    ckas, anc_values, svccas = [], [], []
    for _ in range(3):
        x = torch.randn(100, 2000, generator=g, dtype=torch.float64)
        y = torch.randn(100, 2000, generator=g, dtype=torch.float64)
        ckas.append(cka(x, y))
        anc_values.append(anc(x, y))
        svccas.append(svcca(x, y, directions=10))
    assert max(abs(v) for v in ckas) < 0.05
    assert max(abs(v) for v in anc_values) < 0.01
    # Two random 10-dimensional subspaces of the 99-dimensional centred sample space: E[r^2] = 10/99 (documented null).
    assert all(0.15 < v < 0.4 for v in svccas)
    x = torch.randn(100, 2000, generator=g, dtype=torch.float64)
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert svcca(x, x, directions=10) == pytest.approx(1.0, abs=1e-9)
    assert anc(x, x) == pytest.approx(1.0, abs=1e-12)
    # Why the debiased estimator: the plain (biased) linear CKA of the same unrelated data is far from 0 at n << d.
    xc, yc = x - x.mean(0), torch.randn(100, 2000, generator=g, dtype=torch.float64)
    yc = yc - yc.mean(0)
    K, L = xc @ xc.T, yc @ yc.T
    biased = float((K * L).sum() / torch.sqrt((K * K).sum() * (L * L).sum()))
    assert biased > 0.5 and abs(cka(x, yc)) < 0.05


def test_related_data_scores_above_unrelated():
    rng = _rng(10)
    x = rng.normal(size=(100, 500))
    related = x + rng.normal(size=(100, 500))
    unrelated = rng.normal(size=(100, 500))
    for function in (cka, anc):
        assert function(x, related) > function(x, unrelated) + 0.3
    assert svcca(x, related) > svcca(x, unrelated) + 0.1


def test_float32_input_is_computed_in_float64():
    rng = _rng(11)
    x = rng.normal(size=(30, 200)).astype(np.float32)
    y = (x + rng.normal(size=(30, 200))).astype(np.float32)
    assert cka(x, y) == pytest.approx(_reference_debiased_cka(x.astype(np.float64), y.astype(np.float64)), abs=1e-10)


# ----- layers and errors -------------------------------------------------------------------------------------------------
def test_similarity_per_layer_means_selected_layers_like_nasca():
    rng = _rng(12)
    source = rng.normal(size=(3, 20, 16))
    target = source.copy()
    target[0] = rng.normal(size=(20, 16))
    result = similarity_per_layer(source, target, measure="cka")
    assert result["per_layer"][1:] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert result["mean"] == pytest.approx(sum(result["per_layer"]) / 3)
    assert similarity_per_layer(source, target, measure="anc", layers=(1, 3))["mean"] == pytest.approx(1.0)
    assert similarity_per_layer(source, target, measure="svcca", directions=3)["directions"] == 3
    constant = np.zeros((2, 20, 16))
    assert similarity_per_layer(constant, constant, measure="anc")["mean"] is None


def test_bad_input_raises_value_errors_naming_the_problem():
    rng = _rng(13)
    with pytest.raises(SimilarityError, match="same number of sentences"):
        cka(rng.normal(size=(10, 4)), rng.normal(size=(9, 4)))
    with pytest.raises(SimilarityError, match="n >= 4"):
        hsic_unbiased(np.eye(3), np.eye(3))
    with pytest.raises(SimilarityError, match="same neurons"):
        anc(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))
    with pytest.raises(SimilarityError, match="directions"):
        svcca(rng.normal(size=(10, 40)), rng.normal(size=(10, 40)), directions=9)
    with pytest.raises(SimilarityError, match="unknown measure"):
        parse_measure("cca")
    with pytest.raises(SimilarityError, match="unknown representation"):
        parse_measure("cka:hidden")
    assert issubclass(SimilarityError, ValueError)


def test_measure_names():
    assert measure_names(["cka", "anc:nas", "svcca:embedding", "cka"]) == [
        ("cka", "cka", "embedding"),
        ("anc:nas", "anc", "nas"),
        ("svcca", "svcca", "embedding"),
    ]
    assert parse_measure("ANC:nasca") == ("anc", "nas")


# ----- wiring: measure_alignment / AlignmentReport / CLI ---------------------------------------------------------------
def test_measure_alignment_similarity_is_opt_in_and_round_trips(model_dir):
    from neuronxa_callback.alignment.report import AlignmentReport, measure_alignment
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    data = load_parallel("bundled", languages=("isl_Latn", "deu_Latn"), num_pairs=12)
    plain = measure_alignment(model, tokenizer, data, representations=("nas",))
    extra = measure_alignment(
        model,
        tokenizer,
        data,
        representations=("nas",),
        similarity=("cka", "svcca", "anc", "anc:nas"),
        svcca_directions=3,
    )
    plain_dict, extra_dict = plain.to_dict(), extra.to_dict()
    pair = "eng_Latn-isl_Latn"
    # Default output unchanged: no similarity block, no extra settings, and no MEXA although embeddings were encoded.
    assert "similarity" not in plain_dict["pairs"][pair] and "similarity" not in plain_dict["settings"]
    assert "mexa" not in extra_dict["pairs"][pair]
    assert extra_dict["pairs"][pair]["nasca"] == plain_dict["pairs"][pair]["nasca"]
    block = extra_dict["pairs"][pair]["similarity"]
    assert set(block) == {"cka", "svcca", "anc", "anc:nas"}
    assert block["cka"]["representation"] == "embedding" and block["anc:nas"]["representation"] == "nas"
    assert len(block["cka"]["per_layer"]) == 2 and block["svcca"]["directions"] == 3
    assert extra.mean("cka", pair) == block["cka"]["mean"]
    assert extra_dict["settings"]["similarity"] == ["cka", "svcca", "anc", "anc:nas"]
    # Same numbers as similarity_per_layer on the encoded representations themselves.
    from neuronxa_callback.alignment.report import parallel_sentences
    from neuronxa_callback.instrument.activations import encode

    reps = encode(model, tokenizer, parallel_sentences(data), representations=("embedding",)).representations[
        "embedding"
    ]
    direct = similarity_per_layer(reps[:, :12], reps[:, 12:24], measure="cka")
    assert block["cka"]["per_layer"] == pytest.approx(direct["per_layer"], abs=1e-12)
    again = AlignmentReport.from_dict(json_round_trip(extra_dict))
    assert again.to_dict()["pairs"] == extra_dict["pairs"]


def json_round_trip(payload):
    import json

    return json.loads(json.dumps(payload))


def test_cli_measures_flag(model_dir, tmp_path, capsys):
    import json

    from neuronxa_callback.cli import main

    out = tmp_path / "m.json"
    code = main(
        [
            "--quiet",
            "score",
            "--model",
            str(model_dir),
            "--data",
            "bundled",
            "--num-pairs",
            "10",
            "--measures",
            "nasca,mexa,cka,svcca,anc",
            "--svcca-directions",
            "2",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    entry = json.loads(out.read_text())["pairs"]["eng_Latn-isl_Latn"]
    assert "nasca" in entry and "mexa" in entry and "navca" not in entry
    assert set(entry["similarity"]) == {"cka", "svcca", "anc"}
    with pytest.raises(SystemExit):
        main(["--quiet", "score", "--model", str(model_dir), "--data", "bundled", "--measures", "nasca,cca"])
    assert "cca" in capsys.readouterr().err
