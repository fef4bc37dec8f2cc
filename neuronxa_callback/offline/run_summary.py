"""A run's alignment at a glance: the end-of-run table (one row per measurement) and whether alignment moved beyond
noise between the first and the last measurement (a paired test over sentences). The recipes print both; any host
can.

Usage::

    from neuronxa_callback.offline.run_summary import alignment_change, summary_lines

    for line in summary_lines(records, "eng_Latn-isl_Latn"):
        print(line)
    alignment_change(records, "eng_Latn-isl_Latn")["verdict"]    # "alignment rose: +0.025 [0.010, 0.040] (paired p=0.003)"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _fmt_p(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _quality_value(record: dict, pair: str, metric: str) -> float | None:
    from neuronxa_callback.measure.record import quality_scores

    return quality_scores(record).get(pair, {}).get(metric)


def _running_r(record: dict, pair: str) -> tuple[str | None, float | None]:
    """The running Pearson r of alignment with COMET if measured, else chrF: (metric, r)."""
    correlation = (record.get("correlation") or {}).get(pair) or {}
    for metric in ("comet", "chrf"):
        entry = correlation.get(metric)
        if entry and entry.get("pearson") is not None:
            return metric, entry["pearson"]
    return None, None


def _copies_text(record: dict, pair: str) -> str:
    """ "3/40": hypotheses that copied a prompt example (scored as empty), of those translated; "-" without quality."""
    entry = (record.get("quality") or {}).get(pair) or {}
    if entry.get("copies") is None:
        return "-"
    total = len(entry.get("translations") or []) or sum(
        len(d.get("translations") or []) for d in (entry.get("directions") or {}).values()
    )
    return f"{entry['copies']}/{total}" if total else str(entry["copies"])


def summary_lines(records: Sequence[dict], pair: str, metric: str = "nasca") -> list[str]:
    """One table row per measurement: step, layer mean with its binomial p-value, best layer, chrF, the hypotheses
    that copied a prompt example (scored as empty), COMET, the reference log-likelihood (nats per UTF-8 byte), the
    running r of alignment with COMET (else chrF)."""
    header = (
        f"{'step':>5}  {metric + ' mean':>10}  {'p-value':>8}  {'best layer':>13}  {'navca mean':>10}  "
        f"{'chrF':>6}  {'copies':>6}  {'COMET':>6}  {'ref lp/B':>8}  {'r (running)':>14}"
    )
    lines = [header, "-" * len(header)]
    for record in records:
        scores = (record.get("pairs") or {}).get(pair) or {}
        per_layer = scores.get(metric) or []
        best = max(range(len(per_layer)), key=per_layer.__getitem__) if per_layer else None
        best_text = f"{best:2d}: {per_layer[best]:.3f}" if best is not None else "-"
        r_metric, r = _running_r(record, pair)
        r_text = f"{r:+.2f} ({r_metric})" if r is not None else "-"
        lines.append(
            f"{record['step']:>5}  {_fmt(scores.get(metric + '_mean')):>10}  {_fmt_p(scores.get(metric + '_pvalue')):>8}  "
            f"{best_text:>13}  {_fmt(scores.get('navca_mean')):>10}  {_fmt(_quality_value(record, pair, 'chrf'), 1):>6}  "
            f"{_copies_text(record, pair):>6}  {_fmt(_quality_value(record, pair, 'comet')):>6}  "
            f"{_fmt(_quality_value(record, pair, 'ref_logprob')):>8}  {r_text:>14}"
        )
    return lines


def alignment_change(records: Sequence[dict], pair: str, metric: str = "nasca", *, alpha: float = 0.05) -> dict:
    """Baseline vs last measurement: the layer-mean change with its paired test over sentences.

    When both records carry each sentence's verdicts (``pairs[pair]["aligned"]``, on the same number of sentences),
    the change is statistics.paired_change of the per-sentence layer means: "delta", "ci" (bootstrap interval),
    "pvalue" (exact / Monte-Carlo sign-flip test), "method", and a verdict such as
    "alignment rose: +0.025 [0.010, 0.040] (paired p=0.003)" (significant at `alpha`). Records written before the
    verdicts were recorded fall back to the old rule: change > 2/n and a sign test over layers ("method":
    "layer_sign_test"; layers are correlated, so read that p as a rough guide). Either way the per-layer counts
    ("layers_rose", "layers_fell", "sign_test_p") are reported too.
    """
    if len(records) < 2:
        return {"verdict": "fewer than two measurements: no change to report"}
    first = (records[0].get("pairs") or {}).get(pair) or {}
    last = (records[-1].get("pairs") or {}).get(pair) or {}
    before, after = first.get(metric) or [], last.get(metric) or []
    if not before or len(before) != len(after):
        return {"verdict": f"no per-layer {metric} to compare"}
    valid = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    rose = sum(a > b for b, a in valid)
    fell = sum(a < b for b, a in valid)
    from scipy.stats import binomtest

    sign_p = binomtest(rose, rose + fell, 0.5).pvalue if rose + fell else 1.0
    result: dict[str, Any] = {
        "baseline_step": records[0]["step"],
        "final_step": records[-1]["step"],
        "baseline_mean": first[f"{metric}_mean"],
        "final_mean": last[f"{metric}_mean"],
        "delta": last[f"{metric}_mean"] - first[f"{metric}_mean"],
        "baseline_best": max(b for b, _ in valid) if valid else None,
        "final_best": max(a for _, a in valid) if valid else None,
        "layers_rose": rose,
        "layers_fell": fell,
        "sign_test_p": sign_p,
    }
    paired = _paired(first, last, metric)
    if paired is not None:
        from neuronxa_callback.alignment.statistics import describe_change

        result.update(
            delta=paired["delta"],
            ci=paired["ci"],
            pvalue=paired["pvalue"],
            method=paired["method"],
            n=paired["n"],
            sentences_changed=paired["nonzero"],
            verdict="alignment " + describe_change(paired, alpha=alpha),
        )
        return result
    num_pairs = len((records[0].get("data") or {}).get("ids") or []) or None
    # One sentence pair flips a layer's score by 1/n: a layer-mean change below ~2/n is within noise.
    noise = 2.0 / num_pairs if num_pairs else 0.02
    delta = result["delta"]
    if delta > noise and sign_p < 0.05:
        verdict = "alignment ROSE beyond noise"
    elif delta < -noise and sign_p < 0.05:
        verdict = "alignment FELL beyond noise"
    else:
        verdict = "alignment did NOT move beyond noise"
    result.update(method="layer_sign_test", noise_threshold=noise, verdict=verdict)
    return result


def _paired(first: dict, last: dict, metric: str) -> dict | None:
    """statistics.paired_change of the two pair entries' per-sentence layer means, or None without verdicts."""
    from neuronxa_callback.alignment import statistics

    aligned_before = (first.get("aligned") or {}).get(metric)
    aligned_after = (last.get("aligned") or {}).get(metric)
    if not aligned_before or not aligned_after:
        return None
    try:
        before = statistics.sentence_scores(aligned_before)
        after = statistics.sentence_scores(aligned_after)
    except statistics.StatisticsError:
        return None
    if len(before) != len(after):  # other sentences: nothing to pair
        return None
    return statistics.paired_change(before, after)
