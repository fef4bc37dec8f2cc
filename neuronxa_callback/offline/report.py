"""A run's report: figures and a Markdown summary from <output_dir>/neuronxa/metrics.jsonl.

Usage::

    from neuronxa_callback.offline.report import write_report

    files = write_report("outputs/qlora-en-is")        # or the metrics.jsonl itself
    print(files["summary"])                             # outputs/qlora-en-is/neuronxa/report/report.md

`neuronxa report RUN_DIR` calls write_report.
"""

from __future__ import annotations

import math
from pathlib import Path

from neuronxa_callback.measure.history import QUALITY_METRICS
from neuronxa_callback.measure.record import history_from_records, quality_scores
from neuronxa_callback.sinks.jsonl import read_jsonl

ALIGNMENT_METRIC = "nasca"


class ReportError(ValueError):
    """The run directory or metrics file cannot make a report; the message names the path."""


def load_records(run_dir_or_jsonl: str | Path) -> tuple[Path, list[dict]]:
    """(path of the metrics JSONL, its measurement records sorted by step; for a repeated step the last one wins).

    Accepts a run directory (<run_dir>/neuronxa/metrics.jsonl), its "neuronxa" directory, or a .jsonl file.
    """
    given = Path(run_dir_or_jsonl)
    if given.is_dir():
        candidates = [given / "neuronxa" / "metrics.jsonl", given / "metrics.jsonl"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise ReportError(f"no metrics file in {given}: looked for {candidates[0]} and {candidates[1]}")
    elif given.is_file():
        path = given
    else:
        raise ReportError(f"{given} does not exist (expected a run directory or a metrics .jsonl file)")
    records = [r for r in read_jsonl(path) if r.get("event", "measurement") == "measurement"]
    by_step: dict[int, dict] = {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record.get("step"), int):
            raise ReportError(f"{path}: measurement record {number} has no integer 'step'")
        by_step[record["step"]] = record
    if not by_step:
        raise ReportError(f"{path} holds no measurement records (empty file?)")
    return path, [by_step[step] for step in sorted(by_step)]


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _fmt_p(pvalue) -> str:
    """p-values: three decimals, or scientific below 0.001 (where the decimals would all read 0.000)."""
    if pvalue is None:
        return "–"
    if pvalue == 0:
        return "0 (underflow)"
    return f"{pvalue:.3f}" if pvalue >= 1e-3 else f"{pvalue:.1e}"


def _chance(records: list[dict]) -> float | None:
    from neuronxa_callback.sinks.figures import chance_level

    ids = (records[-1].get("data") or {}).get("ids")
    return chance_level(len(ids)) if ids else None


def _slug(pair: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in pair)


def write_report(run_dir_or_jsonl: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the PNG figures and report.md for a run; returns {name: path} of every file written."""
    from neuronxa_callback.sinks import figures as plots

    jsonl, records = load_records(run_dir_or_jsonl)
    out = Path(out_dir) if out_dir is not None else jsonl.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    history = history_from_records(records, ALIGNMENT_METRIC)
    if len(history) == 0:
        raise ReportError(f"{jsonl}: no record has per-layer {ALIGNMENT_METRIC!r} scores to report on")
    correlations = history.correlations()
    chance = _chance(records)
    files: dict[str, Path] = {}
    lines = [
        "# NeuronXA report",
        "",
        f"Source: `{jsonl}` — {len(records)} measurement(s), steps {history.steps[0]}–{history.steps[-1]}.",
    ]
    data = records[-1].get("data") or {}
    if data.get("origin"):
        lines.append(
            f"Evaluation data: {data['origin']}, n = {len(data.get('ids') or [])} sentence pairs"
            + (f" (chance level {chance:.4f})." if chance else ".")
        )
    lines.append("")
    for pair in history.pairs:
        series = history.series(pair)
        slug = _slug(pair)
        files[f"heatmap/{pair}"] = plots.plot_layer_heatmap(
            series["steps"], series["per_layer"], out / f"heatmap_{slug}.png", pair=pair
        )
        files[f"trend/{pair}"] = plots.plot_alignment_and_quality(
            series["steps"], series["alignment"], series["quality"], out / f"trend_{slug}.png", pair=pair, chance=chance
        )
        lines += _pair_section(pair, series, records, correlations.get(pair, {}))
        for metric, entry in correlations.get(pair, {}).items():
            kept = [i for i, q in enumerate(series["quality"][metric]) if q is not None]
            files[f"scatter/{pair}/{metric}"] = plots.plot_alignment_vs_quality(
                [series["alignment"][i] for i in kept],
                [series["quality"][metric][i] for i in kept],
                out / f"scatter_{slug}_{metric}.png",
                pair=pair,
                quality_metric=metric,
                steps=[series["steps"][i] for i in kept],
            )
            if any(r is not None for r in entry["per_layer_pearson"]):
                files[f"layer_correlation/{pair}/{metric}"] = plots.plot_layer_correlations(
                    entry["per_layer_pearson"],
                    out / f"layer_correlation_{slug}_{metric}.png",
                    pair=pair,
                    quality_metric=metric,
                    best_layer=entry["best_layer"],
                )
        figure_names = [p.name for key, p in files.items() if key.split("/")[1] == pair]
        lines += ["Figures: " + ", ".join(f"[{name}]({name})" for name in figure_names), ""]
    summary = out / "report.md"
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    files["summary"] = summary
    return files


def _interval(interval) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "–"


def _mean_interval(scores: dict) -> str:
    """The NASCA layer mean's bootstrap interval over sentences, from the record's per-sentence verdicts."""
    from neuronxa_callback.alignment import statistics

    aligned = (scores.get("aligned") or {}).get(ALIGNMENT_METRIC)
    if not aligned:
        return "–"
    try:
        return _interval(statistics.score_intervals(aligned)["mean"])
    except statistics.StatisticsError:
        return "–"


def _change_text(records: list[dict], pair: str, start: int, end: int) -> str:
    """ "rose: +0.025 [0.010, 0.040] (paired p=0.003)" between two steps, or the bare change without verdicts."""
    from neuronxa_callback.offline.run_summary import alignment_change

    if start == end:
        return "+0.0000 (the same measurement)"
    chosen = [r for r in records if r["step"] in (start, end)]
    change = alignment_change(chosen, pair, ALIGNMENT_METRIC)
    if "pvalue" in change:
        return change["verdict"].removeprefix("alignment ")
    return f"{change['delta']:+.4f}" if "delta" in change else "–"


def _first_label(step: int, records: list[dict]) -> str:
    """The first row's name: "baseline" only for step 0, the model before any update; a run measured from a later step
    (checkpoints scored without their base model, a resumed run) starts with a fine-tuned model, named by its step."""
    if step == 0:
        return "baseline"
    first = next(r for r in records if r["step"] == step)
    return f"first {'checkpoint' if first.get('trigger') == 'checkpoint' else 'measurement'} (step {step})"


def _pair_section(pair: str, series: dict, records: list[dict], correlations: dict) -> list[str]:
    steps, alignment = series["steps"], series["alignment"]
    by_step = {r["step"]: (r.get("pairs") or {}).get(pair, {}) for r in records}
    best_index = max(range(len(alignment)), key=lambda i: alignment[i])
    first = _first_label(steps[0], records)
    rows = [(first, 0), ("final", len(steps) - 1), ("best", best_index)]
    lines = [
        f"## {pair}",
        "",
        "| | step | NASCA (layer mean) | p-value | best layer (NASCA) | 95% interval |",
        "|---|---|---|---|---|---|",
    ]
    for label, i in rows:
        per_layer = series["per_layer"][i]
        scored = [k for k, value in enumerate(per_layer) if value is not None]  # None: a layer it could not score
        top = max(scored, key=lambda k: per_layer[k]) if scored else None
        best = f"{top} ({_fmt(per_layer[top], 3)})" if top is not None else "–"
        lines.append(
            f"| {label} | {steps[i]} | {_fmt(alignment[i])} | {_fmt_p(by_step[steps[i]].get('nasca_pvalue'))} "
            f"| {best} | {_mean_interval(by_step[steps[i]])} |"
        )
    lines += [
        "",
        f"Change {first} → final: {_change_text(records, pair, steps[0], steps[-1])}; "
        f"{first} → best: {_change_text(records, pair, steps[0], steps[best_index])}.",
        "",
        "Intervals: 95% bootstrap over sentences; p of a change: paired sign-flip test over sentences "
        "(docs/guide/statistics.md).",
        "",
    ]
    trends = []
    for metric in QUALITY_METRICS:
        measured = [(r["step"], quality_scores(r).get(pair, {}).get(metric)) for r in records]
        values = [(s, float(v)) for s, v in measured if isinstance(v, (int, float)) and math.isfinite(v)]
        if values:
            earliest, latest = values[0], values[-1]
            trends.append(
                f"{metric} {_fmt(earliest[1], 3)} (step {earliest[0]}) → {_fmt(latest[1], 3)} "
                f"(step {latest[0]}), {len(values)} measurement(s)"
            )
    lines.append("Quality trend: " + ("; ".join(trends) if trends else "no translation quality measured") + ".")
    copies = [
        (r["step"], r["quality"][pair]["copies"], r["quality"][pair].get("copy_rate"))
        for r in records
        if isinstance((r.get("quality") or {}).get(pair, {}).get("copies"), int)
    ]
    if copies:  # hypotheses that repeated a prompt example: scored as empty, so the quality trend is not flattered
        lines.append(
            "Copies of a prompt example (scored as empty): "
            + "; ".join(f"step {step}: {count} ({_fmt(100 * (rate or 0.0), 0)} %)" for step, count, rate in copies)
            + "."
        )
    off_target = [
        (r["step"], r["quality"][pair]["off_target"], r["quality"][pair].get("off_target_rate"))
        for r in records
        if isinstance((r.get("quality") or {}).get(pair, {}).get("off_target"), int)
    ]
    if off_target:  # hypotheses in another language than the target (quality/language_id.py)
        lines.append(
            "Off-target hypotheses (another language than the target): "
            + "; ".join(f"step {step}: {count} ({_fmt(100 * (rate or 0.0), 0)} %)" for step, count, rate in off_target)
            + "."
        )
    lines.append("")
    if correlations:
        lines += [
            "| quality | n | Pearson r | p | Spearman ρ | p | best layer (r) | r: 95% interval | r of changes | p |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for metric, entry in correlations.items():
            best = entry["best_layer"]
            best_text = f"{best} ({_fmt(entry['per_layer_pearson'][best], 3)})" if best is not None else "–"
            note = f" ({entry['reason']})" if entry.get("reason") else ""
            differences = entry.get("differences") or {}
            lines.append(
                f"| {metric} | {entry['n']} | {_fmt(entry['pearson'], 3)}{note} | "
                f"{_fmt_p(entry['pearson_pvalue'])} | {_fmt(entry['spearman'], 3)} | "
                f"{_fmt_p(entry['spearman_pvalue'])} | {best_text} | {_interval(entry.get('pearson_ci'))} | "
                f"{_fmt(differences.get('pearson'), 3)} | {_fmt_p(differences.get('pearson_pvalue'))} |"
            )
        lines += [
            "",
            "r of changes: Pearson r of the changes between consecutive measurements (first differences), which a "
            "trend both series share over training cannot produce; p exact up to 7 points. The r interval is "
            "Fisher's z (none below 4 points).",
        ]
    else:
        lines.append("Correlation with quality: fewer than 3 measurements with quality scores.")
    lines.append("")
    return lines
