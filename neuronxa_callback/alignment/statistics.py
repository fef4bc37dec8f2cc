"""Paired statistics with sentences as the unit: is a change of alignment beyond noise, how wide is a score's
interval, and does alignment move with translation quality.

Usage::

    from neuronxa_callback.alignment import statistics

    before = statistics.sentence_scores(record_0["pairs"][pair]["aligned"]["nasca"])   # [n] per-sentence layer means
    after = statistics.sentence_scores(record_5["pairs"][pair]["aligned"]["nasca"])
    change = statistics.paired_change(before, after)      # {"delta", "ci", "pvalue", "method", "nonzero", ...}
    statistics.describe_change(change)                    # "rose: +0.025 [0.010, 0.040] (paired p=0.003)"
    statistics.score_intervals(record_5["pairs"][pair]["aligned"]["nasca"])   # {"mean": [lo, hi], "per_layer": ...}
    statistics.correlate(alignment_series, chrf_series)   # Pearson / Spearman with p and Fisher-z intervals
    statistics.first_differences(alignment_series)        # the series of changes between measurements

Why sentences: NeuronXA's score (scoring.weak_alignment, the paper's Eq. 4) at layer l is the fraction of the n
sentences whose cosine wins its row and column. Each sentence therefore has a verdict per layer (aligned or not), and
its *layer mean* (the fraction of the mean's layers where it is aligned) averages, over sentences, to exactly the
score's layer mean. Two measurements on the same sentences give n paired differences, and the sentences (not the
correlated layers) are the independent units a test needs.

- The change test is an exact sign-flip permutation test on the per-sentence differences: under "no change" each
  difference is as likely to have either sign. Zero differences carry no information and are left out; with up to
  EXACT_MAX_NONZERO non-zero differences every one of the 2^m sign patterns is enumerated (all m positive gives
  p = 2 / 2^m two-sided), above that MONTE_CARLO_RESAMPLES random patterns with a fixed seed and the +1 correction
  p = (1 + #as extreme) / (1 + resamples).
- Intervals are bootstrap percentiles over sentences (resampled with replacement, fixed seed). They treat each
  sentence's verdicts as fixed: the Eq. 4 verdict also depends on the other sentences (its competitors), which a
  resample does not re-score. Read them as "which sentences happened to be drawn", not as every source of noise.
- Correlations: Pearson and Spearman with p exact (all n! pairings) up to EXACT_CORRELATION_MAX_POINTS points, a
  fixed-seed permutation p above; Fisher-z intervals for r (n >= 4; Spearman with the 1.06 / (n - 3) variance of
  Fieller et al.). On first differences (change vs change between consecutive measurements) a time trend that both
  series share cannot make the correlation: two series that both just rise over training correlate on levels only.

Nothing here needs torch; numpy and scipy only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "EXACT_CORRELATION_MAX_POINTS",
    "EXACT_MAX_NONZERO",
    "MONTE_CARLO_RESAMPLES",
    "SEED",
    "StatisticsError",
    "aligned_masks",
    "bootstrap_interval",
    "correlate",
    "describe_change",
    "fisher_interval",
    "first_differences",
    "layer_verdicts",
    "paired_change",
    "score_intervals",
    "sentence_scores",
    "sign_flip_pvalue",
]

CONFIDENCE = 0.95
SEED = 0  # every random draw here is seeded: the same records always give the same p-values and intervals
EXACT_MAX_NONZERO = 20  # 2^20 sign patterns (8 MB of sums) are enumerated; more non-zero differences: Monte-Carlo
MONTE_CARLO_RESAMPLES = 10_000
BOOTSTRAP_RESAMPLES = 10_000
# Up to this many points the correlation p-values are exact: all n! pairings of the two series (7! = 5040).
EXACT_CORRELATION_MAX_POINTS = 7
MIN_CORRELATION_POINTS = 3  # fewer points: r is always +-1 or undefined
_RELATIVE_TOLERANCE = 1e-9  # per-sentence means are fractions: "as extreme" must not hinge on float rounding


class StatisticsError(ValueError):
    """Bad input to a statistics function (lengths, masks, confidence levels)."""


# ----------------------------------------------------------------------------------------------------
# Per-sentence verdicts: encoding and decoding the record's "aligned" entry


def aligned_masks(indicators, invalid_layers: Sequence[int] = ()) -> list[str | None]:
    """Per layer a hex bitmask of the aligned sentences: bit i (value 2**i) set when sentence i is aligned.

    ``indicators``: bool [L, n] (a torch tensor, numpy array or nested lists), e.g. scoring.weak_alignment_indicators.
    Each mask has ceil(n / 4) hex digits (zero-padded); an invalid layer (no score) is None.
    ``aligned_masks([[True, False, True]])`` is ``["5"]``.
    """
    import numpy as np

    rows = np.asarray(indicators, dtype=bool)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise StatisticsError(f"statistics.aligned_masks: indicators must be [layers, n] with n >= 1; got {rows.shape}")
    digits = (rows.shape[1] + 3) // 4
    invalid = set(invalid_layers)
    masks: list[str | None] = []
    for layer, row in enumerate(rows):
        value = sum(1 << int(i) for i in np.flatnonzero(row))
        masks.append(None if layer in invalid else format(value, f"0{digits}x"))
    return masks


def layer_verdicts(aligned: dict[str, Any], n: int | None = None):
    """(layers, verdicts): the mean's layers (selected and valid) and bool [len(layers), n] verdicts for them.

    ``aligned``: a record's ``pairs[pair]["aligned"][metric]`` = {"n": n, "layers": [selected layers], "masks": [hex
    per layer, None for an invalid one]}. `n` defaults to aligned["n"].
    """
    import numpy as np

    if not isinstance(aligned, dict) or "masks" not in aligned or "layers" not in aligned:
        raise StatisticsError(
            f"statistics.layer_verdicts: expected a record's aligned entry {{'n', 'layers', 'masks'}}; got {aligned!r}"
        )
    n = int(aligned["n"] if n is None else n)
    masks = aligned["masks"]
    layers = [layer for layer in aligned["layers"] if 0 <= layer < len(masks) and masks[layer] is not None]
    verdicts = np.zeros((len(layers), n), dtype=bool)
    for row, layer in enumerate(layers):
        value = int(masks[layer], 16)
        if value >> n:
            raise StatisticsError(f"statistics.layer_verdicts: mask of layer {layer} has bits beyond n={n}")
        verdicts[row] = [(value >> i) & 1 for i in range(n)]
    return layers, verdicts


def sentence_scores(aligned: dict[str, Any], n: int | None = None):
    """Per sentence, the fraction of the mean's layers where it is aligned: float [n]. Its mean over sentences is
    the score's layer mean. Raises StatisticsError when no layer is valid."""
    layers, verdicts = layer_verdicts(aligned, n)
    if not layers:
        raise StatisticsError("statistics.sentence_scores: no valid layer to average")
    return verdicts.mean(axis=0)


# ----------------------------------------------------------------------------------------------------
# Paired change


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise StatisticsError(f"statistics: confidence must be in (0, 1); got {confidence!r}")
    return float(confidence)


def sign_flip_pvalue(
    differences, *, resamples: int = MONTE_CARLO_RESAMPLES, seed: int = SEED, exact_max: int = EXACT_MAX_NONZERO
) -> tuple[float, str]:
    """Two-sided sign-flip permutation p of mean(differences) = 0: (p, "exact" | "monte_carlo" | "no_change").

    Zeros are left out (their sign flip changes nothing). Up to `exact_max` non-zero differences every sign pattern
    is enumerated and p = #(|sum| >= |observed|) / 2^m; above, `resamples` seeded patterns and
    p = (1 + #as extreme) / (1 + resamples). No non-zero difference: p = 1 ("no_change").
    """
    import numpy as np

    d = np.asarray(differences, dtype=np.float64).ravel()
    if not np.all(np.isfinite(d)):
        raise StatisticsError("statistics.sign_flip_pvalue: differences must be finite")
    d = d[d != 0]
    m = len(d)
    if m == 0:
        return 1.0, "no_change"
    observed = abs(d.sum())
    threshold = observed - _RELATIVE_TOLERANCE * max(1.0, np.abs(d).sum())
    if m <= exact_max:
        sums = np.zeros(1)
        for value in d:  # all 2^m signed sums, built by doubling
            sums = np.concatenate((sums + value, sums - value))
        return float(np.count_nonzero(np.abs(sums) >= threshold) / len(sums)), "exact"
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise StatisticsError(f"statistics.sign_flip_pvalue: resamples must be an int >= 1; got {resamples!r}")
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, resamples, 1000):  # in blocks: 1000 x m signs at a time
        signs = rng.integers(0, 2, size=(min(1000, resamples - start), m), dtype=np.int8) * 2 - 1
        extreme += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return float((1 + extreme) / (1 + resamples)), "monte_carlo"


def _bootstrap_weights(n: int, resamples: int, seed: int):
    """[resamples, n] counts: how often each sentence is drawn in each bootstrap sample of size n (read-only)."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise StatisticsError(f"statistics: resamples must be an int >= 1; got {resamples!r}")
    return _seeded_weights(n, resamples, seed)


# A record needs several intervals on the same n sentences (its means, its changes): the draws depend only on
# (n, resamples, seed), so they are made once (8 MB for n = 100 and 10,000 resamples).
@functools.lru_cache(maxsize=4)
def _seeded_weights(n: int, resamples: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n, size=(resamples, n))  # each row: n sentences drawn with replacement
    # Counting per row with one bincount (row r's sentences offset by r * n) is ~20x faster than rng.multinomial.
    offsets = np.arange(resamples)[:, None] * n
    weights = np.bincount((drawn + offsets).ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)
    weights.flags.writeable = False
    return weights


def bootstrap_interval(
    values, *, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED
) -> list:
    """Percentile bootstrap interval of the mean over sentences (rows): [lo, hi] for values [n], or [[lo, hi] per
    column] for values [n, k] (the same resamples for every column). A constant has an interval of zero width."""
    import numpy as np

    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise StatisticsError(f"statistics.bootstrap_interval: values must be [n] or [n, k] with n >= 1; got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise StatisticsError("statistics.bootstrap_interval: values must be finite")
    n = x.shape[0]
    means = _bootstrap_weights(n, resamples, seed) @ x / n  # [resamples] or [resamples, k]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    if x.ndim == 1:
        return [float(low), float(high)]
    return [[float(lo), float(hi)] for lo, hi in zip(low, high)]


def paired_change(
    before,
    after,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
    exact_max: int = EXACT_MAX_NONZERO,
) -> dict[str, Any]:
    """The change of the mean from `before` to `after`, paired by sentence (both [n], the same sentences in order).

    Returns {"n", "delta" (mean of after - before), "ci" ([lo, hi] bootstrap percentile interval of delta, sentences
    resampled), "pvalue" (two-sided sign-flip test, see sign_flip_pvalue), "method" ("exact" / "monte_carlo" /
    "no_change"), "nonzero" (sentences whose value changed), "confidence"}.
    """
    import numpy as np

    a = np.asarray(before, dtype=np.float64).ravel()
    b = np.asarray(after, dtype=np.float64).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise StatisticsError(
            f"statistics.paired_change: before and after must hold the same sentences (equal, non-zero lengths); "
            f"got {len(a)} and {len(b)}"
        )
    differences = b - a
    pvalue, method = sign_flip_pvalue(differences, resamples=resamples, seed=seed, exact_max=exact_max)
    return {
        "n": len(a),
        "delta": float(differences.mean()),
        "ci": bootstrap_interval(differences, confidence=confidence, resamples=resamples, seed=seed),
        "pvalue": pvalue,
        "method": method,
        "nonzero": int(np.count_nonzero(differences)),
        "confidence": _check_confidence(confidence),
    }


def describe_change(change: dict[str, Any], *, alpha: float = 0.05) -> str:
    """One line for a paired_change result: "rose: +0.025 [0.010, 0.040] (paired p=0.003)"; "fell: ..." likewise;
    "no significant change: +0.004 [-0.006, 0.014] (paired p=0.52)" when p >= alpha."""
    delta, (low, high), pvalue = change["delta"], change["ci"], change["pvalue"]
    if pvalue < alpha and delta > 0:
        word = "rose"
    elif pvalue < alpha and delta < 0:
        word = "fell"
    else:
        word = "no significant change"
    p_text = f"{pvalue:.1e}" if pvalue < 1e-3 else f"{pvalue:.3f}" if pvalue < 0.1 else f"{pvalue:.2f}"
    return f"{word}: {delta:+.3f} [{low:.3f}, {high:.3f}] (paired p={p_text})"


def score_intervals(
    aligned: dict[str, Any],
    n: int | None = None,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Bootstrap intervals (sentences resampled) of a score from its record entry (see layer_verdicts):
    {"mean": [lo, hi] of the layer mean, "per_layer": [[lo, hi] or None (layer not in the mean) per layer]}."""
    import numpy as np

    layers, verdicts = layer_verdicts(aligned, n)
    if not layers:
        raise StatisticsError("statistics.score_intervals: no valid layer")
    columns = np.concatenate((verdicts.T.astype(np.float64), verdicts.mean(axis=0)[:, None]), axis=1)
    intervals = bootstrap_interval(columns, confidence=confidence, resamples=resamples, seed=seed)
    per_layer: list[list[float] | None] = [None] * len(aligned["masks"])
    for layer, interval in zip(layers, intervals):
        per_layer[layer] = interval
    return {"mean": intervals[-1], "per_layer": per_layer}


# ----------------------------------------------------------------------------------------------------
# Correlation


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def first_differences(series: Sequence[float]) -> list[float]:
    """[x1 - x0, x2 - x1, ...]: the change between consecutive measurements."""
    return [float(later) - float(earlier) for earlier, later in zip(series, series[1:])]


def fisher_interval(
    r: float | None, n: int, *, spearman: bool = False, confidence: float = CONFIDENCE
) -> tuple[list[float] | None, str | None]:
    """(interval, reason): the Fisher-z interval tanh(atanh(r) +- z * se) with se = sqrt(1 / (n - 3)) (Pearson) or
    sqrt(1.06 / (n - 3)) (Spearman, Fieller et al. 1957). None and a reason when r is undefined or n < 4 (no
    standard error). r = +-1 gives the point [r, r]."""
    from scipy.stats import norm

    confidence = _check_confidence(confidence)
    if r is None:
        return None, "r undefined"
    if n < 4:
        return None, f"n={n} is too small for a Fisher-z interval (needs n >= 4)"
    if abs(r) >= 1:
        return [float(r), float(r)], None
    se = math.sqrt((1.06 if spearman else 1.0) / (n - 3))
    z = math.atanh(r)
    half = float(norm.ppf(1 - (1 - confidence) / 2)) * se
    return [math.tanh(z - half), math.tanh(z + half)], None


def correlate(
    x: Sequence[float],
    y: Sequence[float],
    *,
    pvalues: bool = True,
    resamples: int = MONTE_CARLO_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Pearson and Spearman correlation of two equally long series, with two-sided p-values and Fisher-z intervals.

    Usage: ``correlate([0.1, 0.2, 0.3, 0.5], [10, 12, 15, 14])["pearson_ci"]``.

    Returns {"n", "pearson", "pearson_pvalue", "pearson_ci", "spearman", "spearman_pvalue", "spearman_ci", "reason",
    "ci_reason"}; the coefficients are None (never NaN) when there are fewer than three points or a series is
    constant, and "reason" says why. p: exact over all n! pairings up to EXACT_CORRELATION_MAX_POINTS points
    (Spearman's as Pearson's on ranks), else a permutation test with `resamples` seeded pairings (scipy adds the +1
    correction). ``pvalues=False`` skips them (None). The intervals are fisher_interval's; "ci_reason" says why
    there is none.
    """
    if len(x) != len(y):
        raise ValueError(f"correlate: x has {len(x)} values but y has {len(y)}")
    n = len(x)
    result: dict[str, Any] = {
        "n": n,
        "pearson": None,
        "pearson_pvalue": None,
        "pearson_ci": None,
        "spearman": None,
        "spearman_pvalue": None,
        "spearman_ci": None,
        "reason": None,
        "ci_reason": None,
    }
    if n < MIN_CORRELATION_POINTS:
        result["reason"] = f"fewer than {MIN_CORRELATION_POINTS} points (n={n})"
        return result
    if len(set(x)) == 1:
        result["reason"] = "alignment series is constant"
        return result
    if len(set(y)) == 1:
        result["reason"] = "quality series is constant"
        return result
    import numpy as np
    from scipy import stats  # lazily: scipy import costs ~0.3 s

    pearson = _finite(stats.pearsonr(x, y).statistic)
    spearman = _finite(stats.spearmanr(x, y).statistic)
    result.update(pearson=pearson, spearman=spearman)
    if pearson is None or spearman is None:
        result["reason"] = "correlation undefined (near-constant series)"
        return result
    if pvalues:
        exact = n <= EXACT_CORRELATION_MAX_POINTS
        method = stats.PermutationMethod(
            n_resamples=math.factorial(n) if exact else resamples, rng=None if exact else np.random.default_rng(seed)
        )
        result["pearson_pvalue"] = _finite(stats.pearsonr(x, y, method=method).pvalue)
        result["spearman_pvalue"] = _finite(stats.pearsonr(stats.rankdata(x), stats.rankdata(y), method=method).pvalue)
    result["pearson_ci"], result["ci_reason"] = fisher_interval(pearson, n, confidence=confidence)
    result["spearman_ci"], _ = fisher_interval(spearman, n, spearman=True, confidence=confidence)
    return result
