"""Paired statistics over sentences (alignment/statistics.py) and where they are used: the record's per-sentence
verdicts, the history's "change" block and first-difference correlations, the plateau detector's paired criterion,
the end-of-run verdict and the tracker names. Checked against direct enumeration and hand-computed cases."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy import stats

from neuronxa_callback.alignment import statistics
from neuronxa_callback.alignment.scoring import score_pair, weak_alignment_indicators
from neuronxa_callback.measure.history import MeasurementHistory, PlateauDetector
from neuronxa_callback.measure.record import rebuild_from_records
from neuronxa_callback.offline.run_summary import alignment_change
from neuronxa_callback.settings import CallbackSettings
from neuronxa_callback.sinks import names

PAIR = "eng_Latn-isl_Latn"


def enumerated_sign_flip_p(differences) -> float:
    """Two-sided p by listing every sign pattern of the non-zero differences (the definition, written plainly)."""
    nonzero = [d for d in differences if d != 0]
    observed = abs(sum(nonzero))
    patterns = list(itertools.product((1, -1), repeat=len(nonzero)))
    extreme = sum(abs(sum(s * d for s, d in zip(signs, nonzero))) >= observed - 1e-12 for signs in patterns)
    return extreme / len(patterns)


def aligned_entry(verdicts: list[list[bool]], layers: list[int] | None = None) -> dict:
    """A record's pairs[pair]["aligned"][metric] from per-layer verdict rows."""
    return {
        "n": len(verdicts[0]),
        "layers": list(range(len(verdicts))) if layers is None else layers,
        "masks": statistics.aligned_masks(verdicts),
    }


def record(step: int, verdicts: list[list[bool]], chrf: float | None = None) -> dict:
    """A measurement record with per-layer NASCA scores that agree with the verdicts."""
    per_layer = [sum(row) / len(row) for row in verdicts]
    entry = {
        "nasca": per_layer,
        "nasca_mean": sum(per_layer) / len(per_layer),
        "aligned": {"nasca": aligned_entry(verdicts)},
    }
    result = {"step": step, "data": {"ids": [str(i) for i in range(len(verdicts[0]))]}, "pairs": {PAIR: entry}}
    if chrf is not None:
        result["quality"] = {PAIR: {"chrf": chrf}}
    return result


# ----- the sign-flip test ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [1, 5, 12])
def test_all_differences_positive_gives_two_over_two_to_the_m(m):
    differences = [0.0] * 7 + [0.05 * (k + 1) for k in range(m)]  # zeros carry no sign: left out
    pvalue, method = statistics.sign_flip_pvalue(differences)
    assert method == "exact" and pvalue == pytest.approx(min(1.0, 2 / 2**m))


def test_exact_sign_flip_p_equals_direct_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(5):
        differences = list(rng.integers(-3, 4, size=11) / 18)  # per-sentence layer means move in 1/18 steps
        assert statistics.sign_flip_pvalue(differences)[0] == pytest.approx(enumerated_sign_flip_p(differences))


def test_many_nonzero_differences_use_seeded_monte_carlo_with_the_plus_one_correction():
    differences = [0.1] * 30
    pvalue, method = statistics.sign_flip_pvalue(differences)
    assert method == "monte_carlo"
    assert pvalue == pytest.approx(1 / 10_001)  # no random pattern reaches all-positive; the +1 keeps p above 0
    mixed = list(np.random.default_rng(0).normal(0, 1, 40))
    assert statistics.sign_flip_pvalue(mixed) == statistics.sign_flip_pvalue(mixed)  # the same seed, the same p
    p_mixed = statistics.sign_flip_pvalue(mixed)[0]
    assert abs(p_mixed - stats.ttest_1samp(mixed, 0).pvalue) < 0.05  # the t-test's answer, within Monte-Carlo error


def test_identical_measurements_give_p_one_and_an_interval_of_zero():
    values = [0.0, 0.5, 1.0, 0.25]
    change = statistics.paired_change(values, values)
    assert change["pvalue"] == 1.0 and change["method"] == "no_change" and change["nonzero"] == 0
    assert change["delta"] == 0 and change["ci"][0] <= 0 <= change["ci"][1] and change["ci"] == [0.0, 0.0]
    assert statistics.describe_change(change).startswith("no significant change: +0.000")


def test_paired_change_reports_delta_interval_and_verdict():
    before = [0.0] * 10
    after = [0.5] * 6 + [0.0] * 4
    change = statistics.paired_change(before, after)
    assert change["delta"] == pytest.approx(0.3) and change["pvalue"] == pytest.approx(2 / 2**6)
    low, high = change["ci"]
    assert 0 < low <= 0.3 <= high <= 0.5
    assert statistics.describe_change(change) == f"rose: +0.300 [{low:.3f}, {high:.3f}] (paired p=0.031)"
    assert statistics.describe_change(statistics.paired_change(after, before)).startswith("fell: -0.300")
    with pytest.raises(statistics.StatisticsError, match="same sentences"):
        statistics.paired_change([0.1, 0.2], [0.1])


# ----- bootstrap intervals -----------------------------------------------------------------------------------------
def test_bootstrap_interval_of_a_constant_has_zero_width():
    assert statistics.bootstrap_interval([0.3] * 25) == [pytest.approx(0.3), pytest.approx(0.3)]


def test_bootstrap_interval_of_two_values_covers_the_resampling_distribution():
    # Resampling {0, 1} twice gives means 0, 1/2, 1 with chances 1/4, 1/2, 1/4: the 95% percentiles are 0 and 1.
    assert statistics.bootstrap_interval([0.0, 1.0]) == [0.0, 1.0]
    low, high = statistics.bootstrap_interval([0.0, 1.0], confidence=0.4)  # the 30th and 70th percentiles
    assert low == high == 0.5


def test_score_intervals_per_layer_and_for_the_mean():
    verdicts = [[True] * 20, [False] * 20, [True] * 10 + [False] * 10]
    entry = aligned_entry(verdicts, layers=[0, 2])  # layer 1 is not in the mean
    intervals = statistics.score_intervals(entry)
    assert intervals["per_layer"][0] == [1.0, 1.0] and intervals["per_layer"][1] is None
    low, high = intervals["per_layer"][2]
    assert low < 0.5 < high
    mean_low, mean_high = intervals["mean"]
    assert mean_low < 0.75 < mean_high and mean_low >= 0.5


# ----- per-sentence verdicts ----------------------------------------------------------------------------------------
def test_masks_round_trip_and_sentence_means_average_to_the_layer_mean():
    torch.manual_seed(0)
    source = torch.randn(4, 30, 8)
    target = source + 0.9 * torch.randn(4, 30, 8)
    score = score_pair(source, target, metric="nasca", pair=PAIR, layers=[1, 2, 3])
    from neuronxa_callback.alignment.scoring import cosine_matrices

    indicators = weak_alignment_indicators(cosine_matrices(source, target))
    entry = {"n": score.n, "layers": score.layers, "masks": score.aligned}
    layers, verdicts = statistics.layer_verdicts(entry)
    assert layers == [1, 2, 3] and np.array_equal(verdicts, indicators[1:].numpy())
    assert len(score.aligned[0]) == 8  # ceil(30 / 4) hex digits
    per_sentence = statistics.sentence_scores(entry)
    assert per_sentence.mean() == pytest.approx(score.mean, abs=1e-12)
    assert 0 < score.mean < 1  # neither trivial case
    assert statistics.aligned_masks([[True, False, True, True]]) == ["d"]


def test_an_invalid_layer_has_no_mask_and_is_left_out():
    masks = statistics.aligned_masks([[True, True], [False, True]], invalid_layers=[0])
    assert masks == [None, "2"]
    assert list(statistics.sentence_scores({"n": 2, "layers": [0, 1], "masks": masks})) == [0.0, 1.0]
    with pytest.raises(statistics.StatisticsError, match="bits beyond n=2"):
        statistics.layer_verdicts({"n": 2, "layers": [0], "masks": ["7"]})


# ----- correlations -------------------------------------------------------------------------------------------------
def test_correlation_p_for_few_points_equals_enumeration_of_every_pairing():
    x, y = [0.07, 0.09, 0.08, 0.12, 0.11, 0.13], [18.0, 19.5, 19.0, 21.0, 19.8, 22.5]
    result = statistics.correlate(x, y)
    observed = np.corrcoef(x, y)[0, 1]
    rs = [np.corrcoef(x, list(p))[0, 1] for p in itertools.permutations(y)]
    greater = sum(r >= observed - 1e-12 for r in rs) / len(rs)
    less = sum(r <= observed + 1e-12 for r in rs) / len(rs)
    assert result["pearson_pvalue"] == pytest.approx(min(1.0, 2 * min(greater, less)))
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rho = np.corrcoef(rx, ry)[0, 1]
    rhos = [np.corrcoef(rx, list(p))[0, 1] for p in itertools.permutations(ry)]
    greater = sum(r >= rho - 1e-12 for r in rhos) / len(rhos)
    less = sum(r <= rho + 1e-12 for r in rhos) / len(rhos)
    assert result["spearman_pvalue"] == pytest.approx(min(1.0, 2 * min(greater, less)))


def test_fisher_interval_matches_the_formula_and_needs_four_points():
    interval, reason = statistics.fisher_interval(0.6, 12)
    half = stats.norm.ppf(0.975) / np.sqrt(9)
    assert interval == [pytest.approx(np.tanh(np.arctanh(0.6) - half)), pytest.approx(np.tanh(np.arctanh(0.6) + half))]
    assert reason is None
    assert statistics.fisher_interval(0.6, 3) == (None, "n=3 is too small for a Fisher-z interval (needs n >= 4)")
    wider, _ = statistics.fisher_interval(0.6, 12, spearman=True)
    assert wider[0] < interval[0] and wider[1] > interval[1]
    result = statistics.correlate([1, 2, 3], [1, 3, 2])
    assert result["pearson_ci"] is None and "too small" in result["ci_reason"]
    json.dumps(result, allow_nan=False)


def test_first_differences_remove_a_shared_trend():
    """Both series rise with training; their wiggles around the trend are opposite. Levels correlate almost
    perfectly, the changes perfectly negatively: only the second says whether they move together."""
    trend = np.arange(7.0)
    x = list(trend + np.array([0, 0.3] * 3 + [0]))
    y = list(trend + np.array([0.3, 0] * 3 + [0.3]))
    levels = statistics.correlate(x, y)
    changes = statistics.correlate(statistics.first_differences(x), statistics.first_differences(y))
    assert levels["pearson"] > 0.95 and levels["pearson_pvalue"] < 0.01
    assert changes["pearson"] == pytest.approx(-1.0) and changes["n"] == 6


# ----- the history, the record, resume ------------------------------------------------------------------------------
def rising_records() -> list[dict]:
    """Four measurements on 12 sentences and 3 layers: 0, 2, 2 (unchanged) and 10 sentences aligned everywhere."""
    counts = [0, 2, 2, 10]
    chrf = [10.0, 12.0, 11.0, 15.0]
    return [
        record(step, [[k < count for k in range(12)] for _ in range(3)], chrf[i])
        for i, (step, count) in enumerate(zip((0, 10, 20, 30), counts))
    ]


def test_history_changes_against_baseline_and_previous_survive_resume():
    records = rising_records()
    settings = CallbackSettings(early_stopping_patience=2, early_stopping_criterion="paired_test")
    history, plateau = rebuild_from_records(records, settings)
    # The detector was fed each record's per-sentence vector: steps 10 and 20 (2 of 12 sentences up, p = 0.5) were
    # no improvement, step 30 (10 up, p = 2/1024) was; the min_delta rule would have taken step 10 as the best.
    assert plateau.best_step == 30 and plateau.bad_measurements == 0 and len(plateau.best_sentences) == 12
    _, plain = rebuild_from_records(records[:3], CallbackSettings(early_stopping_patience=2))
    assert plain.best_step == 10
    _, paired = rebuild_from_records(records[:3], settings)
    assert paired.best_step == 0 and paired.bad_measurements == 2
    change = history.changes(30)[PAIR]["nasca"]
    assert change["vs_baseline"]["step"] == 0 and change["vs_previous"]["step"] == 20
    assert change["vs_baseline"]["delta"] == pytest.approx(10 / 12)
    assert change["vs_baseline"]["pvalue"] == pytest.approx(2 / 2**10)
    assert change["vs_previous"]["pvalue"] == pytest.approx(2 / 2**8)
    assert history.changes(20)[PAIR]["nasca"]["vs_previous"]["pvalue"] == 1.0  # identical to step 10
    assert "vs_baseline" not in history.changes(0)[PAIR]["nasca"]
    restored = MeasurementHistory.from_state(json.loads(json.dumps(history.state())))
    assert restored.changes(30) == history.changes(30)
    entry = history.correlations()[PAIR]["chrf"]
    assert entry["differences"]["n"] == 3
    assert entry["differences"]["pearson"] == pytest.approx(
        np.corrcoef(statistics.first_differences([0, 2 / 12, 2 / 12, 10 / 12]), [2.0, -1.0, 4.0])[0, 1]
    )
    assert entry["pearson_ci"] is not None


def test_plateau_detector_counts_non_significant_rises_as_no_improvement():
    detector = PlateauDetector(patience=2, criterion="paired_test", alpha=0.05)
    n = 20
    base = [0.0] * n
    small = [1.0] * 2 + [0.0] * (n - 2)  # +0.1: two sentences gained, p = 2/4
    big = [1.0] * 8 + [0.0] * (n - 8)  # +0.4 over the best: eight sentences, p = 2/256
    assert not detector.update(0, 0.0, base).should_stop
    first = detector.update(1, 0.1, small)
    assert first.bad_measurements == 1 and first.pvalue == pytest.approx(0.5)
    second = detector.update(2, 0.4, big)
    assert second.bad_measurements == 0 and second.best == pytest.approx(0.4) and second.best_step == 2
    assert second.pvalue == pytest.approx(2 / 2**8)
    restored = PlateauDetector.from_state(json.loads(json.dumps(detector.state())))
    for d in (detector, restored):
        d.update(3, 0.4, big)
        stopped = d.update(4, 0.45, [1.0] * 9 + [0.0] * (n - 9))
        assert stopped.should_stop and "no significant improvement" in stopped.reason
    # The min_delta rule would have called the small rise an improvement.
    plain = PlateauDetector(patience=2)
    plain.update(0, 0.0)
    assert plain.update(1, 0.1).bad_measurements == 0
    assert "pvalue" not in plain.update(2, 0.2).to_dict()  # records of the min_delta rule are unchanged


def test_plateau_detector_rejects_unknown_criterion():
    with pytest.raises(ValueError, match="criterion must be one of"):
        PlateauDetector(patience=1, criterion="t_test")
    with pytest.raises(ValueError, match="alpha"):
        PlateauDetector(patience=1, alpha=1.0)


def test_end_of_run_verdict_uses_the_paired_test():
    records = rising_records()
    change = alignment_change(records, PAIR)
    assert change["method"] == "exact" and change["pvalue"] == pytest.approx(2 / 2**10)
    low, high = change["ci"]
    assert change["verdict"] == f"alignment rose: +0.833 [{low:.3f}, {high:.3f}] (paired p=0.002)"
    unchanged = alignment_change(records[1:3], PAIR)
    assert unchanged["verdict"].startswith("alignment no significant change: +0.000")


def test_tracker_names_of_the_change_block():
    history = MeasurementHistory()
    for item in rising_records():
        history.append(
            item["step"],
            {PAIR: item["pairs"][PAIR]["nasca_mean"]},
            {PAIR: item["pairs"][PAIR]["nasca"]},
            item["quality"],
            aligned={PAIR: item["pairs"][PAIR]["aligned"]},
        )
    last = {"step": 30, "change": history.changes(30), "correlation": history.correlations()}
    flat = names.flatten_record(last)
    key = names.change_key(PAIR, "nasca", "vs_baseline")
    assert key == f"neuronxa/{PAIR}/nasca_change_vs_baseline"
    assert flat[key] == pytest.approx(10 / 12) and flat[f"{key}_pvalue"] == pytest.approx(2 / 2**10)
    assert flat[f"{key}_ci_low"] <= flat[key] <= flat[f"{key}_ci_high"]
    assert f"neuronxa/{PAIR}/nasca_mean_ci_low" in flat and f"neuronxa/{PAIR}/r_diff_chrf" in flat
    assert set(names.detail_scalars(last)) >= {key, f"{key}_pvalue"}
