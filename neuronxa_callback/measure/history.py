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

# The quality scores a history correlates with alignment, in the order records, reports and trackers list them.
QUALITY_METRICS = ("chrf", "bleu", "comet", "cometkiwi")
MIN_POINTS = 3  # a correlation over fewer than three points is always +-1 or undefined: not worth reporting
# Up to this many points the p-values are exact: all n! pairings of the two series (7! = 5040). The t-approximation
# scipy uses otherwise is far off for a handful of measurements: three perfectly ranked points get Spearman p = 0,
# where the exact two-sided p is 2/6.
EXACT_PVALUE_MAX_POINTS = 7


def _finite(value: Any) -> float | None:
    """float(value), or None for None/NaN/inf (JSON has no NaN, and a NaN r would poison every later plot)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def correlate(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson and Spearman correlation of two equally long series.

    Usage: ``correlate([0.1, 0.2, 0.3], [10, 12, 15])["pearson"]``.

    Returns {"n", "pearson", "pearson_pvalue", "spearman", "spearman_pvalue", "reason"}; the coefficients are None
    (never NaN) when there are fewer than three points or a series is constant, and "reason" then says why. The
    p-values are two-sided: exact permutation tests up to EXACT_PVALUE_MAX_POINTS points (Spearman's as Pearson's on
    ranks), scipy's t-distribution ones above.
    """
    if len(x) != len(y):
        raise ValueError(f"correlate: x has {len(x)} values but y has {len(y)}")
    n = len(x)
    result: dict[str, Any] = {
        "n": n,
        "pearson": None,
        "pearson_pvalue": None,
        "spearman": None,
        "spearman_pvalue": None,
        "reason": None,
    }
    if n < MIN_POINTS:
        result["reason"] = f"fewer than {MIN_POINTS} points (n={n})"
        return result
    if len(set(x)) == 1:
        result["reason"] = "alignment series is constant"
        return result
    if len(set(y)) == 1:
        result["reason"] = "quality series is constant"
        return result
    from scipy import stats  # lazily: scipy import costs ~0.3 s

    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    pearson_pvalue, spearman_pvalue = pearson.pvalue, spearman.pvalue
    if n <= EXACT_PVALUE_MAX_POINTS:
        every_pairing = stats.PermutationMethod(n_resamples=math.factorial(n))
        pearson_pvalue = stats.pearsonr(x, y, method=every_pairing).pvalue
        spearman_pvalue = stats.pearsonr(stats.rankdata(x), stats.rankdata(y), method=every_pairing).pvalue
    result.update(
        pearson=_finite(pearson.statistic),
        pearson_pvalue=_finite(pearson_pvalue),
        spearman=_finite(spearman.statistic),
        spearman_pvalue=_finite(spearman_pvalue),
    )
    if result["pearson"] is None or result["spearman"] is None:
        result["reason"] = "correlation undefined (near-constant series)"
    return result


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
    ) -> dict:
        """Record one measurement and return the running correlations (see correlations())."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        missing = set(alignment_means) ^ set(per_layer)
        if missing:
            raise ValueError(f"alignment_means and per_layer must name the same pairs; differ in {sorted(missing)}")
        for pair, layers in per_layer.items():
            if len(layers) == 0:
                raise ValueError(f"per_layer[{pair!r}] is empty")
        measurement = {
            "alignment": {pair: float(value) for pair, value in alignment_means.items()},
            # None: a layer the measurement could not score (e.g. float16 overflow); it is left out per layer.
            "per_layer": {pair: [_finite(v) for v in layers] for pair, layers in per_layer.items()},
            "quality": {
                pair: {metric: _finite(scores.get(metric)) for metric in self.quality_metrics}
                for pair, scores in (quality or {}).items()
            },
        }
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
        """The JSONL "correlation" block: {pair: {metric: {n, pearson, pearson_pvalue, spearman, spearman_pvalue, reason,
        per_layer_pearson, per_layer_spearman, best_layer}}}, only where >= 3 measurements carry that quality score."""
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
                result.setdefault(pair, {})[metric] = entry
        return result

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
            entry = correlate([x for x, _ in points], [q for _, q in points])
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
            history.append(int(row["step"]), row["alignment"], row["per_layer"], row.get("quality") or None)
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

    def to_dict(self) -> dict:
        return asdict(self)


_SMOOTHINGS = ("none", "ema", "window")
_MODES = ("max", "min")


class PlateauDetector:
    """Early stopping on a noisy alignment score: stop after `patience` measurements without improvement.

    Usage::

        detector = PlateauDetector(patience=3, min_delta=0.005, smoothing="window", window=3)
        for step, nasca in measurements:
            decision = detector.update(step, nasca)
            if decision.should_stop:
                break

    The value is smoothed first ("ema": s = a*x + (1-a)*s_prev with a = smoothing_factor; "window": mean of the last
    `window` values), then compared with the best smoothed value so far: an improvement is a change in the `mode`
    direction by more than `min_delta`. `patience` counts measurements, not steps. No stop before step `min_steps`.
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
        self.patience = patience
        self.min_delta = float(min_delta)
        self.smoothing = smoothing
        self.smoothing_factor = float(smoothing_factor)
        self.window = window
        self.mode = mode
        self.min_steps = min_steps
        self.reset()

    def reset(self) -> None:
        self.values: list[float] = []
        self.steps: list[int] = []
        self.smoothed: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_measurements = 0

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

    def update(self, step: int, value: float) -> Decision:
        """Feed one measurement (steps strictly increasing) and get the decision for it."""
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
        if self._improves(self.smoothed):
            self.best, self.best_step, self.bad_measurements = self.smoothed, int(step), 0
        else:
            self.bad_measurements += 1
        should_stop = self.bad_measurements >= self.patience and step >= self.min_steps
        reason = None
        if should_stop:
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
        return detector
