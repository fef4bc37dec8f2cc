"""Measurement history, running correlations with translation quality, and plateau detection.

Usage::

    from neuronxa_callback.measure.history import MeasurementHistory, PlateauDetector

    history = MeasurementHistory()
    history.append(0, {"eng_Latn-isl_Latn": 0.07}, {"eng_Latn-isl_Latn": [0.02, 0.11, 0.08]},
                   {"eng_Latn-isl_Latn": {"chrf": 19.0, "comet": None}})
    ...
    history.correlations()["eng_Latn-isl_Latn"]["chrf"]["pearson"]   # after >= 3 measurements with chrF

    detector = PlateauDetector(patience=2, min_delta=0.005, smoothing="ema", smoothing_factor=0.5)
    decision = detector.update(step=100, value=0.081)
    if decision.should_stop: ...

Both objects round-trip through JSON (state() / from_state()) so a resumed run continues exactly where the
checkpoint left off. Nothing here needs torch or a Trainer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from neuronxa_callback.alignment import statistics
from neuronxa_callback.alignment.statistics import correlate, first_differences

__all__ = ["QUALITY_METRICS", "Decision", "MeasurementHistory", "PlateauDetector", "correlate"]

# The quality scores a history correlates with alignment, in the order records, reports and trackers list them.
# Higher is better for each, so a positive r means alignment and quality rise together. "ref_logprob": the log-
# likelihood of the reference translation in nats per UTF-8 byte (quality/likelihood.py), at every measurement.
QUALITY_METRICS = ("chrf", "bleu", "comet", "cometkiwi", "ref_logprob")
MIN_POINTS = statistics.MIN_CORRELATION_POINTS  # fewer points: r is always +-1 or undefined, not worth reporting
# Up to this many points the p-values are exact: all n! pairings of the two series (7! = 5040). The t-approximation
# is far off for a handful of measurements: three perfectly ranked points get Spearman p = 0, where the exact
# two-sided p is 2/6.
EXACT_PVALUE_MAX_POINTS = statistics.EXACT_CORRELATION_MAX_POINTS


def _finite(value: Any) -> float | None:
    """float(value), or None for None/NaN/inf (JSON has no NaN, and a NaN r would poison every later plot)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class MeasurementHistory:
    """All measurements of one run, keyed by Trainer step, with running alignment-quality correlations.

    Usage::

        history = MeasurementHistory()
        correlations = history.append(step, {"eng_Latn-isl_Latn": 0.07}, {"eng_Latn-isl_Latn": per_layer},
                                      {"eng_Latn-isl_Latn": {"chrf": 19.0, "comet": 0.61, "cometkiwi": None}})

    Re-appending a step that is already there replaces it (a resumed run re-measures the checkpoint's step).
    """

    def __init__(self, quality_metrics: Sequence[str] = QUALITY_METRICS) -> None:
        if isinstance(quality_metrics, str):
            raise ValueError("quality_metrics must be a sequence of metric names, not a single string")
        self.quality_metrics = tuple(quality_metrics)
        # step -> {"alignment": {pair: mean}, "per_layer": {pair: [...]}, "quality": {pair: {metric: x|None}}}
        self._measurements: dict[int, dict[str, dict]] = {}

    def __len__(self) -> int:
        return len(self._measurements)

    @property
    def steps(self) -> list[int]:
        return sorted(self._measurements)

    @property
    def pairs(self) -> list[str]:
        seen: dict[str, None] = {}
        for step in self.steps:
            for pair in self._measurements[step]["alignment"]:
                seen.setdefault(pair, None)
        return list(seen)

    def append(
        self,
        step: int,
        alignment_means: dict[str, float],
        per_layer: dict[str, list[float]],
        quality: dict[str, dict[str, float | None]] | None = None,
        aligned: dict[str, dict[str, dict]] | None = None,
    ) -> dict:
        """Record one measurement and return the running correlations (see correlations()).

        `aligned`: `{pair: {metric: record["pairs"][pair]["aligned"][metric]}}`, each sentence's verdict per layer;
        kept so that later measurements can be tested against this one (changes())."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        missing = set(alignment_means) ^ set(per_layer)
        if missing:
            raise ValueError(f"alignment_means and per_layer must name the same pairs; differ in {sorted(missing)}")
        for pair, layers in per_layer.items():
            if len(layers) == 0:
                raise ValueError(f"per_layer[{pair!r}] is empty")
        measurement: dict[str, dict] = {
            "alignment": {pair: float(value) for pair, value in alignment_means.items()},
            # None: a layer the measurement could not score (e.g. float16 overflow); it is left out per layer.
            "per_layer": {pair: [_finite(v) for v in layers] for pair, layers in per_layer.items()},
            "quality": {
                pair: {metric: _finite(scores.get(metric)) for metric in self.quality_metrics}
                for pair, scores in (quality or {}).items()
            },
        }
        if aligned:
            measurement["aligned"] = {pair: dict(by_metric) for pair, by_metric in aligned.items() if by_metric}
        self._measurements[step] = measurement
        return self.correlations()

    def truncate_after(self, step: int) -> None:
        """Forget measurements taken after `step` (they happened after the checkpoint a run resumes from)."""
        for later in [s for s in self._measurements if s > step]:
            del self._measurements[later]

    def series(self, pair: str) -> dict:
        """{"steps", "alignment", "per_layer", "quality": {metric: [x|None per step]}} for the steps that measured `pair`."""
        steps = [s for s in self.steps if pair in self._measurements[s]["alignment"]]
        rows = [self._measurements[s] for s in steps]
        return {
            "steps": steps,
            "alignment": [m["alignment"][pair] for m in rows],
            "per_layer": [m["per_layer"][pair] for m in rows],
            "quality": {
                metric: [m["quality"].get(pair, {}).get(metric) for m in rows] for metric in self.quality_metrics
            },
        }

    def correlations(self) -> dict[str, dict[str, dict]]:
        """The JSONL "correlation" block: {pair: {metric: {n, pearson, pearson_pvalue, pearson_ci, spearman,
        spearman_pvalue, spearman_ci, reason, ci_reason, per_layer_pearson, per_layer_spearman, best_layer,
        differences}}}, only where >= 3 measurements carry that quality score. "differences" is statistics.correlate
        on the first differences between consecutive such measurements (a trend both series share cannot make it)."""
        result: dict[str, dict[str, dict]] = {}
        for pair in self.pairs:
            series = self.series(pair)
            for metric in self.quality_metrics:
                kept = [i for i, q in enumerate(series["quality"][metric]) if q is not None]
                if len(kept) < MIN_POINTS:
                    continue
                quality = [series["quality"][metric][i] for i in kept]
                alignment = [series["alignment"][i] for i in kept]
                entry = correlate(alignment, quality)
                entry.update(self._per_layer(pair, [series["per_layer"][i] for i in kept], quality))
                entry["differences"] = correlate(first_differences(alignment), first_differences(quality))
                result.setdefault(pair, {})[metric] = entry
        return result

    def sentence_scores(self, step: int, pair: str, metric: str) -> list[float] | None:
        """Per-sentence layer means (statistics.sentence_scores) of `metric` for `pair` at `step`, or None when that
        measurement kept no verdicts for it (e.g. records written before they were recorded)."""
        aligned = ((self._measurements.get(step) or {}).get("aligned") or {}).get(pair, {}).get(metric)
        if not aligned:
            return None
        try:
            return statistics.sentence_scores(aligned).tolist()
        except statistics.StatisticsError:  # no valid layer: nothing to pair
            return None

    def changes(self, step: int) -> dict[str, dict[str, dict]]:
        """The JSONL "change" block for the measurement at `step`: {pair: {metric: {"mean_ci": [lo, hi],
        "vs_baseline": change, "vs_previous": change}}}, where change is statistics.paired_change of the per-sentence
        layer means against the first earlier measurement with verdicts (the baseline) and the latest earlier one, plus
        "step" (the step compared with). A comparison needs the same number of sentences; it is absent otherwise."""
        measurement = self._measurements.get(step) or {}
        earlier = [s for s in self.steps if s < step]
        result: dict[str, dict[str, dict]] = {}
        for pair, by_metric in (measurement.get("aligned") or {}).items():
            for metric in by_metric:
                current = self.sentence_scores(step, pair, metric)
                if current is None:
                    continue
                entry: dict[str, Any] = {"mean_ci": statistics.bootstrap_interval(current)}
                baseline_step, baseline = self._comparable(earlier, pair, metric, len(current))
                if baseline is not None:
                    entry["vs_baseline"] = {"step": baseline_step, **statistics.paired_change(baseline, current)}
                    previous_step, previous = self._comparable(reversed(earlier), pair, metric, len(current))
                    entry["vs_previous"] = (
                        {**entry["vs_baseline"]}
                        if previous_step == baseline_step
                        else {"step": previous_step, **statistics.paired_change(previous, current)}
                    )
                result.setdefault(pair, {})[metric] = entry
        return result

    def _comparable(self, steps, pair: str, metric: str, n: int) -> tuple[int | None, list[float] | None]:
        """The first of `steps` whose per-sentence scores can be paired with n sentences, and those scores."""
        for step in steps:
            scores = self.sentence_scores(step, pair, metric)
            if scores is not None and len(scores) == n:
                return step, scores
        return None, None

    @staticmethod
    def _per_layer(pair: str, per_layer: list[list[float]], quality: list[float]) -> dict:
        num_layers = len(per_layer[0])
        if any(len(layers) != num_layers for layers in per_layer):
            raise ValueError(
                f"pair {pair!r}: the number of layers changed between measurements "
                f"({sorted({len(layers) for layers in per_layer})}); cannot correlate per layer"
            )
        pearson: list[float | None] = []
        spearman: list[float | None] = []
        for layer in range(num_layers):
            points = [(row[layer], q) for row, q in zip(per_layer, quality) if row[layer] is not None]
            entry = correlate([x for x, _ in points], [q for _, q in points], pvalues=False)
            pearson.append(entry["pearson"])
            spearman.append(entry["spearman"])
        defined = [(r, i) for i, r in enumerate(pearson) if r is not None]
        # "Tracks quality best" = the highest (signed) r: a layer that anti-correlates does not track quality.
        best_layer = max(defined)[1] if defined else None
        return {"per_layer_pearson": pearson, "per_layer_spearman": spearman, "best_layer": best_layer}

    def state(self) -> dict:
        """JSON-serialisable snapshot; MeasurementHistory.from_state(history.state()) is equal to history."""
        return {
            "quality_metrics": list(self.quality_metrics),
            "measurements": [{"step": step, **self._measurements[step]} for step in self.steps],
        }

    @classmethod
    def from_state(cls, state: dict) -> MeasurementHistory:
        if not isinstance(state, dict) or "measurements" not in state:
            raise ValueError(
                "MeasurementHistory.from_state: expected a dict from MeasurementHistory.state() "
                "with a 'measurements' list"
            )
        history = cls(state.get("quality_metrics", QUALITY_METRICS))
        for row in state["measurements"]:
            history.append(
                int(row["step"]),
                row["alignment"],
                row["per_layer"],
                row.get("quality") or None,
                aligned=row.get("aligned") or None,
            )
        return history


@dataclass(frozen=True)
class Decision:
    """What PlateauDetector.update concluded for one measurement."""

    step: int
    value: float
    should_stop: bool
    reason: str | None
    best: float | None
    best_step: int | None
    smoothed: float
    bad_measurements: int
    # criterion="paired_test": the paired test's p against the best measurement (None when it was not made).
    pvalue: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["pvalue"] is None:  # the min_delta rule has no p-value: records stay as they were
            del data["pvalue"]
        return data


_SMOOTHINGS = ("none", "ema", "window")
_MODES = ("max", "min")
CRITERIA = ("min_delta", "paired_test")


class PlateauDetector:
    """Early stopping on a noisy alignment score: stop after `patience` measurements without improvement.

    Usage::

        detector = PlateauDetector(patience=3, min_delta=0.005, smoothing="window", window=3)
        for step, nasca in measurements:
            decision = detector.update(step, nasca)
            if decision.should_stop:
                break

    criterion="min_delta" (the default): the value is smoothed first ("ema": s = a*x + (1-a)*s_prev with
    a = smoothing_factor; "window": mean of the last `window` values), then compared with the best smoothed value so
    far: an improvement is a change in the `mode` direction by more than `min_delta`.

    criterion="paired_test": an improvement is a change over the best measurement so far that is significant in the
    paired sign-flip test over sentences (statistics.sign_flip_pvalue, p < `alpha`) and larger than `min_delta`; pass
    each measurement's per-sentence layer means as ``update(step, value, sentences=...)``. The detector keeps the best
    measurement's vector, so small gains add up until they are significant. Smoothing is not used for the decision
    (the test already weighs the noise); a measurement without `sentences` (or with another n) falls back to the
    min_delta rule on the raw value.

    `patience` counts measurements, not steps. No stop before step `min_steps`.
    """

    def __init__(
        self,
        patience: int,
        min_delta: float = 0.0,
        smoothing: str = "none",
        smoothing_factor: float = 0.5,
        window: int = 3,
        mode: str = "max",
        min_steps: int = 0,
        criterion: str = "min_delta",
        alpha: float = 0.05,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1 (measurements), got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if smoothing not in _SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {_SMOOTHINGS}, got {smoothing!r}")
        if not isinstance(smoothing_factor, (int, float)) or not 0 < smoothing_factor <= 1:
            raise ValueError(f"smoothing_factor (EMA alpha) must be in (0, 1], got {smoothing_factor!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
            raise ValueError(f"min_steps must be an int >= 0, got {min_steps!r}")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValueError(f"alpha (significance level of the paired test) must be in (0, 1), got {alpha!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.smoothing = smoothing
        self.smoothing_factor = float(smoothing_factor)
        self.window = window
        self.mode = mode
        self.min_steps = min_steps
        self.criterion = criterion
        self.alpha = float(alpha)
        self.reset()

    def reset(self) -> None:
        self.values: list[float] = []
        self.steps: list[int] = []
        self.smoothed: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_measurements = 0
        self.best_sentences: list[float] | None = None  # criterion="paired_test": the best measurement's vector
        self.last_pvalue: float | None = None

    def _smooth(self, value: float) -> float:
        if self.smoothing == "ema" and self.smoothed is not None:
            return self.smoothing_factor * value + (1 - self.smoothing_factor) * self.smoothed
        if self.smoothing == "window":
            recent = self.values[-self.window :]
            return sum(recent) / len(recent)
        return value

    def _improves(self, smoothed: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return smoothed > self.best + self.min_delta
        return smoothed < self.best - self.min_delta

    def _improves_paired(self, value: float, sentences: list[float] | None) -> bool | None:
        """The paired test's verdict against the best measurement, or None when it cannot be made."""
        self.last_pvalue = None
        if sentences is None or self.best_sentences is None or len(sentences) != len(self.best_sentences):
            return None
        differences = [after - before for before, after in zip(self.best_sentences, sentences)]
        delta = sum(differences) / len(differences)
        self.last_pvalue, _ = statistics.sign_flip_pvalue(differences)
        gain = delta if self.mode == "max" else -delta
        return self.last_pvalue < self.alpha and gain > self.min_delta

    def update(self, step: int, value: float, sentences: Sequence[float] | None = None) -> Decision:
        """Feed one measurement (steps strictly increasing) and get the decision for it. `sentences`: its
        per-sentence layer means, used by criterion="paired_test"."""
        if self.steps and step <= self.steps[-1]:
            raise ValueError(
                f"step {step} is not after the last step {self.steps[-1]}; "
                "restore the detector with from_state() on resume instead of re-feeding steps"
            )
        value_f = _finite(value)
        if value_f is None:
            raise ValueError(f"value at step {step} must be a finite number, got {value!r}")
        self.steps.append(int(step))
        self.values.append(value_f)
        self.smoothed = self._smooth(value_f)
        vector = [float(v) for v in sentences] if sentences is not None and self.criterion == "paired_test" else None
        paired = vector is not None
        improves = self._improves_paired(value_f, vector) if paired else None
        if improves is None:
            improves = self._improves(value_f if paired else self.smoothed)
        if improves:
            self.best, self.best_step, self.bad_measurements = value_f if paired else self.smoothed, int(step), 0
            self.best_sentences = vector
        else:
            self.bad_measurements += 1
        should_stop = self.bad_measurements >= self.patience and step >= self.min_steps
        reason = None
        if should_stop and paired:
            reason = (
                f"no significant improvement (paired test over sentences, p < {self.alpha:g}, change > "
                f"{self.min_delta:g}) over the best {self.best:.4f} (step {self.best_step}) for "
                f"{self.bad_measurements} measurements (patience {self.patience})"
            )
        elif should_stop:
            reason = (
                f"no improvement of the {self.smoothing} smoothed value by more than {self.min_delta:g} over the "
                f"best {self.best:.4f} (step {self.best_step}) for {self.bad_measurements} measurements "
                f"(patience {self.patience})"
            )
        return Decision(
            step=int(step),
            value=value_f,
            should_stop=should_stop,
            reason=reason,
            best=self.best,
            best_step=self.best_step,
            smoothed=self.smoothed,
            bad_measurements=self.bad_measurements,
            pvalue=self.last_pvalue if paired else None,
        )

    def args(self) -> dict:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "smoothing": self.smoothing,
            "smoothing_factor": self.smoothing_factor,
            "window": self.window,
            "mode": self.mode,
            "min_steps": self.min_steps,
            "criterion": self.criterion,
            "alpha": self.alpha,
        }

    def state(self) -> dict:
        """{"args": constructor arguments, "attributes": counters and history}, JSON-serialisable."""
        return {
            "args": self.args(),
            "attributes": {
                "values": list(self.values),
                "steps": list(self.steps),
                "smoothed": self.smoothed,
                "best": self.best,
                "best_step": self.best_step,
                "bad_measurements": self.bad_measurements,
                "best_sentences": self.best_sentences,
            },
        }

    @classmethod
    def from_state(cls, state: dict) -> PlateauDetector:
        if not isinstance(state, dict) or "args" not in state or "attributes" not in state:
            raise ValueError(
                "PlateauDetector.from_state: expected {'args': ..., 'attributes': ...} from PlateauDetector.state()"
            )
        detector = cls(**state["args"])
        attributes = state["attributes"]
        detector.values = [float(v) for v in attributes["values"]]
        detector.steps = [int(s) for s in attributes["steps"]]
        detector.smoothed = attributes["smoothed"]
        detector.best = attributes["best"]
        detector.best_step = attributes["best_step"]
        detector.bad_measurements = int(attributes["bad_measurements"])
        best_sentences = attributes.get("best_sentences")  # absent in states saved before the paired test existed
        detector.best_sentences = [float(v) for v in best_sentences] if best_sentences is not None else None
        return detector
