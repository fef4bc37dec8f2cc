"""A run's alignment at a glance: the end-of-run table (one row per measurement) and whether alignment moved beyond
noise between the first and the last measurement. The recipes print both; any host can.

Usage::

    from neuronxa_callback.offline.run_summary import alignment_change, summary_lines

    for line in summary_lines(records, "eng_Latn-isl_Latn"):
        print(line)
    alignment_change(records, "eng_Latn-isl_Latn")["verdict"]    # "alignment ROSE beyond noise", ...
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
    return ((record.get("quality") or {}).get(pair) or {}).get(metric)


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
    that copied a prompt example (scored as empty), COMET, the running r of alignment with COMET (else chrF)."""
    header = (
        f"{'step':>5}  {metric + ' mean':>10}  {'p-value':>8}  {'best layer':>13}  {'navca mean':>10}  "
        f"{'chrF':>6}  {'copies':>6}  {'COMET':>6}  {'r (running)':>14}"
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
            f"{_copies_text(record, pair):>6}  {_fmt(_quality_value(record, pair, 'comet')):>6}  {r_text:>14}"
        )
    return lines


def alignment_change(records: Sequence[dict], pair: str, metric: str = "nasca") -> dict:
    """Baseline vs last measurement: the layer-mean change, how many layers rose/fell, and a two-sided sign test over
    layers (layers are correlated, so read its p-value as a rough guide, not a proof)."""
    if len(records) < 2:
        return {"verdict": "fewer than two measurements: no change to report"}
    first = (records[0].get("pairs") or {}).get(pair) or {}
    last = (records[-1].get("pairs") or {}).get(pair) or {}
    before, after = first.get(metric) or [], last.get(metric) or []
    if not before or len(before) != len(after):
        return {"verdict": f"no per-layer {metric} to compare"}
    rose = sum(a > b for a, b in zip(after, before))
    fell = sum(a < b for a, b in zip(after, before))
    from scipy.stats import binomtest

    sign_p = binomtest(rose, rose + fell, 0.5).pvalue if rose + fell else 1.0
    num_pairs = len((records[0].get("data") or {}).get("ids") or []) or None
    delta = last[f"{metric}_mean"] - first[f"{metric}_mean"]
    # One sentence pair flips a layer's score by 1/n: a layer-mean change below ~2/n is within noise.
    noise = 2.0 / num_pairs if num_pairs else 0.02
    if delta > noise and sign_p < 0.05:
        verdict = "alignment ROSE beyond noise"
    elif delta < -noise and sign_p < 0.05:
        verdict = "alignment FELL beyond noise"
    else:
        verdict = "alignment did NOT move beyond noise"
    return {
        "baseline_step": records[0]["step"],
        "final_step": records[-1]["step"],
        "baseline_mean": first[f"{metric}_mean"],
        "final_mean": last[f"{metric}_mean"],
        "delta": delta,
        "baseline_best": max(before),
        "final_best": max(after),
        "layers_rose": rose,
        "layers_fell": fell,
        "sign_test_p": sign_p,
        "noise_threshold": noise,
        "verdict": verdict,
    }
