"""MeasurementHistory correlations (checked against scipy) and PlateauDetector golden sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from neuronxa_callback.measure.history import Decision, MeasurementHistory, PlateauDetector, correlate

PAIR = "eng_Latn-isl_Latn"
OTHER = "eng_Latn-deu_Latn"

# Five measurements, three layers. Layer 1 follows chrF exactly (up to scale), layer 0 runs against it,
# layer 2 is noise; the layer mean is what the callback logs.
STEPS = [0, 25, 50, 75, 100]
CHRF = [19.0, 19.4, 20.3, 20.1, 21.0]
COMET = [0.61, 0.60, 0.64, 0.66, 0.65]
LAYERS = [[0.30, 0.190, 0.05], [0.28, 0.194, 0.09], [0.25, 0.203, 0.04], [0.27, 0.201, 0.07], [0.22, 0.210, 0.06]]


def mean(values):
    return sum(values) / len(values)


def filled_history(quality_from: int = 0) -> MeasurementHistory:
    history = MeasurementHistory()
    for i, step in enumerate(STEPS):
        quality = {PAIR: {"chrf": CHRF[i], "comet": COMET[i], "cometkiwi": None}} if i >= quality_from else None
        history.append(step, {PAIR: mean(LAYERS[i]), OTHER: 0.5}, {PAIR: LAYERS[i], OTHER: [0.4, 0.6, 0.5]}, quality)
    return history


def test_correlate_matches_scipy():
    x, y = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.55, 0.9], [1.0, 2.0, 1.5, 3.5, 3.0, 1.2, 2.8, 3.1]
    result = correlate(x, y)
    assert result["n"] == 8 and result["reason"] is None
    assert result["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert result["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    # Eight points (above the exact limit): a permutation p with 10,000 seeded pairings and scipy's +1 correction.
    shuffles = stats.PermutationMethod(n_resamples=10_000, rng=np.random.default_rng(0))
    assert result["pearson_pvalue"] == pytest.approx(stats.pearsonr(x, y, method=shuffles).pvalue, abs=1e-12)
    assert result["pearson_pvalue"] >= 1 / 10_001


def test_correlate_small_samples_get_exact_pvalues():
    """Three perfectly ranked points: scipy's t-approximation says Spearman p = 0 (it printed "0 (underflow)" in the
    demo's report); of the 3! pairings two are as extreme (the order and its reverse), so the exact p is 1/3."""
    x, y = [0.071, 0.090, 0.096], [12.6, 17.7, 19.7]
    assert stats.spearmanr(x, y).pvalue == 0  # what was reported before
    result = correlate(x, y)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["spearman_pvalue"] == pytest.approx(1 / 3) and result["pearson_pvalue"] == pytest.approx(1 / 3)
    # Five points, one pair swapped: enumerate the 120 pairings by hand.
    import itertools

    x, y = [0.1, 0.4, 0.35, 0.8, 0.7], [1.0, 2.0, 1.5, 3.5, 3.0]
    observed = np.corrcoef(x, y)[0, 1]
    rs = [np.corrcoef(x, list(p))[0, 1] for p in itertools.permutations(y)]
    greater, less = (sum(r >= observed - 1e-12 for r in rs) / 120, sum(r <= observed + 1e-12 for r in rs) / 120)
    assert correlate(x, y)["pearson_pvalue"] == pytest.approx(min(1.0, 2 * min(greater, less)))  # scipy's two-sided


@pytest.mark.parametrize(
    "x, y, reason",
    [
        ([0.1, 0.2], [1.0, 2.0], "fewer than 3"),
        ([0.2, 0.2, 0.2], [1.0, 2.0, 3.0], "alignment series is constant"),
        ([0.1, 0.2, 0.3], [5.0, 5.0, 5.0], "quality series is constant"),
    ],
)
def test_correlate_undefined_gives_none_and_reason(x, y, reason):
    result = correlate(x, y)
    assert result["pearson"] is None and result["spearman"] is None and result["pearson_pvalue"] is None
    assert reason in result["reason"]
    json.dumps(result, allow_nan=False)  # no NaN sneaks into the JSONL


def test_correlate_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="3 values but y has 2"):
        correlate([1, 2, 3], [1, 2])


def test_history_correlations_match_scipy_on_the_same_numbers():
    correlations = filled_history().correlations()
    means = [mean(layers) for layers in LAYERS]
    for metric, quality in (("chrf", CHRF), ("comet", COMET)):
        entry = correlations[PAIR][metric]
        assert entry["n"] == 5
        assert entry["pearson"] == pytest.approx(stats.pearsonr(means, quality).statistic, abs=1e-12)
        # five points: exact p-values over all 120 pairings (scipy's permutation method, Spearman on ranks)
        every = stats.PermutationMethod(n_resamples=120)
        assert entry["pearson_pvalue"] == pytest.approx(stats.pearsonr(means, quality, method=every).pvalue, abs=1e-12)
        assert entry["spearman_pvalue"] == pytest.approx(
            stats.pearsonr(stats.rankdata(means), stats.rankdata(quality), method=every).pvalue, abs=1e-12
        )
        assert entry["spearman"] == pytest.approx(stats.spearmanr(means, quality).statistic, abs=1e-12)
        for layer in range(3):
            column = [row[layer] for row in LAYERS]
            assert entry["per_layer_pearson"][layer] == pytest.approx(
                stats.pearsonr(column, quality).statistic, abs=1e-12
            )
            assert entry["per_layer_spearman"][layer] == pytest.approx(
                stats.spearmanr(column, quality).statistic, abs=1e-12
            )
    # layer 1 was built to follow chrF; layer 0 runs against it
    assert correlations[PAIR]["chrf"]["best_layer"] == 1
    assert correlations[PAIR]["chrf"]["per_layer_pearson"][1] > 0.95
    assert correlations[PAIR]["chrf"]["per_layer_pearson"][0] < 0
    # no quality scored for cometkiwi or for the other pair -> no entries
    assert "cometkiwi" not in correlations[PAIR]
    assert OTHER not in correlations
    json.dumps(correlations, allow_nan=False)


def test_no_correlation_before_three_quality_points():
    history = MeasurementHistory()
    for i in range(2):
        assert history.append(STEPS[i], {PAIR: mean(LAYERS[i])}, {PAIR: LAYERS[i]}, {PAIR: {"chrf": CHRF[i]}}) == {}
    # a measurement without quality does not count towards the three
    assert history.append(STEPS[2], {PAIR: mean(LAYERS[2])}, {PAIR: LAYERS[2]}, None) == {}
    result = history.append(STEPS[3], {PAIR: mean(LAYERS[3])}, {PAIR: LAYERS[3]}, {PAIR: {"chrf": CHRF[3]}})
    assert result[PAIR]["chrf"]["n"] == 3
    kept = [0, 1, 3]
    expected = stats.pearsonr([mean(LAYERS[i]) for i in kept], [CHRF[i] for i in kept]).statistic
    assert result[PAIR]["chrf"]["pearson"] == pytest.approx(expected, abs=1e-12)


def test_constant_layer_gives_none_not_nan():
    history = MeasurementHistory()
    for i in range(3):
        history.append(STEPS[i], {PAIR: 0.1 * i}, {PAIR: [0.0, 0.1 * i]}, {PAIR: {"chrf": CHRF[i]}})
    entry = history.correlations()[PAIR]["chrf"]
    assert entry["per_layer_pearson"][0] is None
    assert entry["best_layer"] == 1


def test_reappending_a_step_replaces_it():
    history = filled_history()
    history.append(50, {PAIR: 0.9, OTHER: 0.5}, {PAIR: [0.9, 0.9, 0.9], OTHER: [0.4, 0.6, 0.5]}, {PAIR: {"chrf": 30.0}})
    assert history.steps == STEPS
    assert history.series(PAIR)["alignment"][2] == 0.9
    assert history.series(PAIR)["quality"]["chrf"][2] == 30.0
    history.truncate_after(50)
    assert history.steps == [0, 25, 50]


def test_history_state_round_trip_through_json():
    history = filled_history(quality_from=1)
    restored = MeasurementHistory.from_state(json.loads(json.dumps(history.state())))
    assert restored.state() == history.state()
    assert restored.correlations() == history.correlations()
    restored.append(125, {PAIR: 0.2}, {PAIR: [0.2, 0.22, 0.18]}, {PAIR: {"chrf": 22.0}})
    assert restored.correlations()[PAIR]["chrf"]["n"] == 5


def test_history_rejects_bad_input():
    history = MeasurementHistory()
    with pytest.raises(ValueError, match="step"):
        history.append(-1, {PAIR: 0.1}, {PAIR: [0.1]})
    with pytest.raises(ValueError, match="same pairs"):
        history.append(0, {PAIR: 0.1}, {OTHER: [0.1]})
    with pytest.raises(ValueError, match="quality_metrics"):
        MeasurementHistory("chrf")


def run(detector: PlateauDetector, values, steps=None) -> list[Decision]:
    steps = steps if steps is not None else [10 * i for i in range(len(values))]
    return [detector.update(step, value) for step, value in zip(steps, values)]


def first_stop(decisions: list[Decision]) -> int | None:
    return next((i for i, d in enumerate(decisions) if d.should_stop), None)


def test_plateau_stops_exactly_after_patience_bad_measurements():
    decisions = run(PlateauDetector(patience=2), [0.10, 0.20, 0.15, 0.18, 0.30])
    assert [d.bad_measurements for d in decisions] == [0, 0, 1, 2, 0]
    assert first_stop(decisions) == 3
    assert decisions[3].best == 0.20 and decisions[3].best_step == 10
    assert "patience 2" in decisions[3].reason
    assert decisions[2].reason is None


def test_plateau_min_delta():
    values = [0.100, 0.105, 0.108, 0.200]
    assert first_stop(run(PlateauDetector(patience=2, min_delta=0.01), values)) == 2
    assert first_stop(run(PlateauDetector(patience=2, min_delta=0.0), values)) is None


@pytest.mark.parametrize(
    "kwargs, expected_stop, expected_smoothed",
    [
        ({"smoothing": "none"}, 3, [0.0, 1.0, 0.0, 0.9]),
        ({"smoothing": "ema", "smoothing_factor": 0.5}, 5, [0.0, 0.5, 0.25, 0.575, 0.2875, 0.14375]),
        ({"smoothing": "window", "window": 3}, 5, [0.0, 0.5, 1 / 3, 1.9 / 3, 0.3, 0.3]),
        ({"smoothing": "window", "window": 2}, 3, [0.0, 0.5, 0.5, 0.45]),
    ],
)
def test_plateau_smoothing_golden(kwargs, expected_stop, expected_smoothed):
    decisions = run(PlateauDetector(patience=2, **kwargs), [0.0, 1.0, 0.0, 0.9, 0.0, 0.0])
    assert first_stop(decisions) == expected_stop
    assert [d.smoothed for d in decisions[: len(expected_smoothed)]] == pytest.approx(expected_smoothed)


def test_plateau_never_stops_before_min_steps():
    decisions = run(PlateauDetector(patience=1, min_steps=30), [1.0, 0.9, 0.8, 0.7, 0.6])
    assert [d.should_stop for d in decisions] == [False, False, False, True, True]
    assert decisions[1].bad_measurements == 1  # counted, just not acted on


def test_plateau_mode_min():
    decisions = run(PlateauDetector(patience=1, mode="min"), [3.0, 2.0, 2.5])
    assert first_stop(decisions) == 2 and decisions[2].best == 2.0


def test_plateau_state_round_trip_mid_sequence_matches_uninterrupted_run():
    values = [0.1, 0.3, 0.2, 0.35, 0.34, 0.33, 0.36, 0.31, 0.30, 0.29]
    settings = {"patience": 3, "min_delta": 0.005, "smoothing": "ema", "smoothing_factor": 0.4}
    uninterrupted = run(PlateauDetector(**settings), values)
    first = PlateauDetector(**settings)
    before = run(first, values[:5])
    resumed = PlateauDetector.from_state(json.loads(json.dumps(first.state())))
    after = run(resumed, values[5:], steps=[10 * i for i in range(5, len(values))])
    assert before + after == uninterrupted
    assert first_stop(uninterrupted) is not None


def test_plateau_rejects_stale_steps_and_bad_values():
    detector = PlateauDetector(patience=2)
    detector.update(10, 0.1)
    with pytest.raises(ValueError, match="step 10 is not after"):
        detector.update(10, 0.2)
    with pytest.raises(ValueError, match="finite"):
        detector.update(20, float("nan"))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"patience": 0}, "patience"),
        ({"patience": 2, "min_delta": -0.1}, "min_delta"),
        ({"patience": 2, "smoothing": "median"}, "smoothing"),
        ({"patience": 2, "smoothing_factor": 0.0}, "smoothing_factor"),
        ({"patience": 2, "window": 0}, "window"),
        ({"patience": 2, "mode": "up"}, "mode"),
        ({"patience": 2, "min_steps": -5}, "min_steps"),
    ],
)
def test_plateau_bad_settings_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        PlateauDetector(**kwargs)
