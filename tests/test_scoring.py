"""Weak alignment (paper Eq. 4), retrieval accuracy, chance probability and PairScore, on synthetic tensors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy.stats import binom

from neuronxa_callback.alignment.scoring import (
    PairScore,
    ScoringError,
    chance_probability,
    cosine_matrices,
    retrieval_accuracy,
    score_matrices,
    score_pair,
    select_layers,
    weak_alignment,
    weak_alignment_counts,
)


def _literal_weak_alignment(C: list[list[float]]) -> float:
    """Eq. 4 written out: count i with C[i][i] > C[i][j] and C[i][i] > C[j][i] for every j != i."""
    n = len(C)
    aligned = 0
    for i in range(n):
        if all(C[i][i] > C[i][j] and C[i][i] > C[j][i] for j in range(n) if j != i):
            aligned += 1
    return aligned / n


def _literal_retrieval(C: list[list[float]]) -> tuple[float, float]:
    n = len(C)
    rows = sum(all(C[i][i] > C[i][j] for j in range(n) if j != i) for i in range(n))
    cols = sum(all(C[i][i] > C[j][i] for j in range(n) if j != i) for i in range(n))
    return rows / n, cols / n


def _random_reps(layers=3, n=20, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(layers, n, dim, generator=generator)


# --- cosine ---


def test_cosine_matches_torch_and_is_float64():
    a, b = _random_reps(seed=1), _random_reps(seed=2)
    C = cosine_matrices(a, b)
    assert C.dtype == torch.float64 and C.shape == (3, 20, 20)
    expected = torch.nn.functional.cosine_similarity(a[1, 4].double(), b[1, 7].double(), dim=0)
    assert C[1, 4, 7].item() == pytest.approx(expected.item(), abs=1e-12)


def test_cosine_of_zero_vector_is_zero_not_nan():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    C = cosine_matrices(a, b)
    assert not torch.isnan(C).any()
    assert C[1].tolist() == [0.0, 0.0]
    assert C[0, 0].item() == pytest.approx(1 / math.sqrt(2))


def test_cosine_rejects_mismatched_shapes():
    with pytest.raises(ScoringError, match="equal shapes"):
        cosine_matrices(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4))


# --- weak alignment: golden cases ---


def test_identity_representations_give_one_on_every_layer():
    reps = _random_reps(layers=4, n=30)
    assert weak_alignment(cosine_matrices(reps, reps)).tolist() == [1.0] * 4


def test_shuffled_pairing_is_near_zero():
    reps = _random_reps(layers=4, n=50, dim=64, seed=3)
    shuffled = reps[:, torch.randperm(50, generator=torch.Generator().manual_seed(4))]
    # Source i sits at another position in the target: the diagonal pairs unrelated random vectors.
    assert weak_alignment(cosine_matrices(reps, shuffled)).max().item() <= 0.04


def test_ties_in_row_fail():
    # Row 0: C[0,0] = 0.9 ties C[0,1] -> sentence 0 fails. Sentence 1 fails too: column 1 holds 0.9 > 0.8 at row 0.
    C = torch.tensor([[0.9, 0.9, 0.1], [0.2, 0.8, 0.3], [0.1, 0.2, 0.7]], dtype=torch.float64)
    assert weak_alignment_counts(C).item() == 1  # only sentence 2
    assert weak_alignment(C).item() == pytest.approx(1 / 3)


def test_ties_in_column_fail():
    # Column 0: C[2,0] = 0.9 ties C[0,0]; row 0 alone would pass.
    C = torch.tensor([[0.9, 0.1, 0.1], [0.2, 0.8, 0.3], [0.9, 0.2, 0.95]], dtype=torch.float64)
    assert weak_alignment_counts(C).item() == 2  # sentences 1 and 2
    src2tgt, tgt2src, _ = retrieval_accuracy(C)
    assert src2tgt.item() == pytest.approx(1.0)  # every row's strict maximum is its diagonal
    assert tgt2src.item() == pytest.approx(2 / 3)  # column 0 is a tie


def test_row_maximum_but_not_column_maximum_fails():
    # Sentence 0 wins its row (0.5 > 0.4, 0.3, 0.2) but target 0 is closer to source 3 (0.6): not aligned.
    C = torch.tensor(
        [
            [0.5, 0.4, 0.3, 0.2],
            [0.1, 0.9, 0.2, 0.1],
            [0.0, 0.1, 0.8, 0.2],
            [0.6, 0.1, 0.1, 0.9],
        ],
        dtype=torch.float64,
    )
    assert weak_alignment(C).item() == pytest.approx(0.75)
    assert _literal_weak_alignment(C.tolist()) == pytest.approx(0.75)


def test_nan_entries_never_count_as_aligned():
    C = torch.tensor([[1.0, float("nan")], [0.0, 1.0]], dtype=torch.float64)
    # Sentence 0's row and sentence 1's column contain the NaN.
    assert weak_alignment_counts(C).item() == 0


def test_single_sentence_is_trivially_aligned():
    assert weak_alignment(torch.tensor([[0.3]])).item() == 1.0


@pytest.mark.parametrize("seed", range(25))
def test_vectorised_matches_literal_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    n = 2 + seed % 9
    # Coarse values (multiples of 0.1) make ties frequent, so strictness is exercised too.
    C = torch.randint(0, 6, (3, n, n), generator=generator).to(torch.float64) / 10
    C = C + torch.eye(n, dtype=torch.float64) * torch.randint(0, 3, (3, 1, 1), generator=generator) / 10
    got = weak_alignment(C).tolist()
    src2tgt, tgt2src, both = retrieval_accuracy(C)
    for layer in range(3):
        matrix = C[layer].tolist()
        assert got[layer] == pytest.approx(_literal_weak_alignment(matrix))
        rows, cols = _literal_retrieval(matrix)
        assert src2tgt[layer].item() == pytest.approx(rows)
        assert tgt2src[layer].item() == pytest.approx(cols)
        assert both[layer].item() == pytest.approx((rows + cols) / 2)


def test_weak_alignment_rejects_non_square():
    with pytest.raises(ScoringError, match="weak_alignment"):
        weak_alignment(torch.zeros(2, 3, 4))


# --- retrieval ---


def test_retrieval_golden_case():
    # Rows: 0 ok, 1 ok, 2 -> retrieves 1. Columns: 0 ok, 1 -> retrieved by row 2 (0.95 > 0.8), 2 ok.
    C = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.1, 0.95, 0.7]], dtype=torch.float64)
    src2tgt, tgt2src, both = retrieval_accuracy(C)
    assert src2tgt.item() == pytest.approx(2 / 3)
    assert tgt2src.item() == pytest.approx(2 / 3)
    assert both.item() == pytest.approx(2 / 3)
    # Asymmetric: transposing swaps the directions.
    C2 = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.1, 0.3, 0.7]], dtype=torch.float64)
    C2[0, 1] = 0.85  # row 0 still ok (0.9 > 0.85); column 1 fails: target 1 now retrieves source 0 (0.85 > 0.8)
    s, t, b = retrieval_accuracy(C2)
    assert (s.item(), t.item()) == (pytest.approx(1.0), pytest.approx(2 / 3))
    s_t, t_t, _ = retrieval_accuracy(C2.T)
    assert (s_t.item(), t_t.item()) == (t.item(), s.item())


def test_max_pooled_retrieval_is_best_selected_layer():
    reps = _random_reps(layers=3, n=12, seed=5)
    target = reps.clone()
    target[0] = torch.randn(12, 16, generator=torch.Generator().manual_seed(9))  # layer 0: unrelated
    target[2] = reps[2] + 2.0 * torch.randn(12, 16, generator=torch.Generator().manual_seed(10))  # noisy
    score = score_pair(reps, target, metric="nasca", pair="a-b")
    pooled = score.retrieval["max_pooled"]
    assert pooled["best_layer"] == 1 and pooled["both"] == 1.0
    only_first = score_pair(reps, target, metric="nasca", pair="a-b", layers=[0])
    assert only_first.retrieval["max_pooled"]["best_layer"] == 0
    assert only_first.retrieval["max_pooled"]["both"] == only_first.retrieval["both"][0] < 1.0


# --- chance probability ---


def test_chance_probability_paper_example():
    assert chance_probability(5, 100) == pytest.approx(0.00016, abs=5e-6)


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (3, 10), (1, 100), (2, 100), (50, 100), (100, 100), (1, 1)])
def test_chance_probability_matches_binomial_tail(k, n):
    p = 1 / (2 * n - 1)
    tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert chance_probability(k, n) == pytest.approx(tail, rel=1e-9, abs=1e-300)
    assert chance_probability(k, n) == pytest.approx(float(binom.sf(k - 1, n, p)))


def test_chance_probability_rejects_bad_counts():
    for k, n in [(-1, 10), (11, 10), (1, 0), (1.5, 10)]:
        with pytest.raises(ScoringError):
            chance_probability(k, n)


# --- layer selection ---


def test_select_layers():
    assert select_layers(6) == [0, 1, 2, 3, 4, 5]
    assert select_layers(6, "all") == [0, 1, 2, 3, 4, 5]
    assert select_layers(6, (2, 4)) == [2, 3]
    assert select_layers(6, (2, -1)) == [2, 3, 4]
    assert select_layers(6, range(1, 3)) == [1, 2]
    assert select_layers(6, [5, 0, -1]) == [0, 5]
    for bad in [[6], (1, 1), (1, 2, 3), "some", 3]:
        with pytest.raises(ScoringError):
            select_layers(6, bad)


def test_layer_range_changes_the_mean_only():
    reps = _random_reps(layers=4, n=10, seed=6)
    target = reps.clone()
    target[2:] = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(7))
    full = score_pair(reps, target, metric="nasca", pair="a-b")
    first_two = score_pair(reps, target, metric="nasca", pair="a-b", layers=(0, 2))
    assert first_two.per_layer == full.per_layer  # every layer is still reported
    assert first_two.layers == [0, 1] and first_two.mean == 1.0
    assert full.mean == pytest.approx(sum(full.per_layer) / 4) and full.mean < 1.0
    assert first_two.settings["layers"] == "0-2" and "layers:0-2" in first_two.signature()


# --- centering ---


def test_centering_is_off_by_default_and_changes_scores():
    generator = torch.Generator().manual_seed(8)
    meaning = torch.randn(1, 40, 32, generator=generator)

    # Each language adds its own large offset plus noise: raw cosines are dominated by the offset.
    def language(offset_scale=6.0, noise_scale=0.8):
        offset = offset_scale * torch.randn(1, 1, 32, generator=generator)
        return meaning + offset + noise_scale * torch.randn(1, 40, 32, generator=generator)

    source, target = language(), language()
    default = score_pair(source, target, metric="nasca", pair="a-b")
    centered = score_pair(source, target, metric="nasca", pair="a-b", center=True)
    assert default.settings["center"] is False and "center:no" in default.signature()
    assert centered.settings["center"] is True and "center:yes" in centered.signature()
    assert default.mean == weak_alignment(cosine_matrices(source, target)).item()
    assert centered.mean == weak_alignment(cosine_matrices(source, target, center=True)).item()
    assert centered.mean != default.mean


# --- PairScore ---


def test_pair_score_fields_pvalues_and_json_round_trip():
    reps = _random_reps(layers=3, n=20, seed=11)
    target = reps + 3.0 * torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(12))
    score = score_pair(
        reps,
        target,
        metric="nasca",
        pair="eng_Latn-deu_Latn",
        settings={"model": "tiny", "pooling": "weighted", "data_origin": "synthetic"},
    )
    counts = weak_alignment_counts(cosine_matrices(reps, target)).tolist()
    assert score.per_layer == [k / 20 for k in counts]
    assert score.layer_pvalues == [chance_probability(k, 20) for k in counts]
    assert score.mean_pvalue == chance_probability(round(score.mean * 20), 20)
    assert score.n == 20 and score.num_layers == 3
    restored = PairScore.from_dict(json.loads(json.dumps(score.to_dict())))
    assert restored == score
    assert restored.signature() == score.signature()


def test_signature_content():
    reps = _random_reps(layers=2, n=5)
    score = score_pair(
        reps,
        reps,
        metric="navca",
        pair="eng_Latn-deu_Latn",
        layers=[1],
        settings={"pooling": "weighted", "model": "gemma-3-270m"},
    )
    signature = score.signature()
    fields = signature.split("|")
    assert fields[0] == "navca"
    for expected in ["model:gemma-3-270m", "pair:eng_Latn-deu_Latn", "n:5", "pool:weighted", "layers:1", "center:no"]:
        assert expected in fields
    assert fields[-1].startswith("v:") and fields[-1] != "v:unknown"
    assert score.settings["representation"] == "nav"
    assert set(score.settings["versions"]) >= {"neuronxa_callback", "torch", "transformers"}


def test_from_dict_reports_missing_keys():
    with pytest.raises(ScoringError, match="missing keys"):
        PairScore.from_dict({"metric": "nasca"})


def test_score_matrices_accepts_a_single_matrix():
    C = torch.eye(3, dtype=torch.float64)
    score = score_matrices(C, metric="nasca", pair="a-b")
    assert score.per_layer == [1.0] and score.layers == [0]
