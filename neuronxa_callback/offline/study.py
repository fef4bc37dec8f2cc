"""Does alignment track translation quality during fine-tuning? The analysis of a set of runs (seeds) of one recipe.

Usage::

    from neuronxa_callback.offline.study import analyze_study, load_study_runs, write_study_page

    runs = load_study_runs(["runs/study/seed-0", "runs/study/seed-1", "runs/study/seed-2"])   # {name: records}
    analysis = analyze_study(runs, pair="eng_Latn-isl_Latn", control_pair="eng_Latn-deu_Latn")
    analysis["pooled"]["ref_logprob"]["changes"]["pearson"]     # pooled r of NASCA changes with likelihood changes
    write_study_page(analysis, "runs/study")                    # study.md and its PNG figures

    python -m neuronxa_callback.offline.study runs/study/seed-* --out runs/study

What it computes, per run and pooled over runs, for the NASCA layer mean of `pair` against each quality signal
(the reference likelihood, measured at every measurement, and chrF, measured at some):

- levels: Pearson / Spearman r over the measurements that carry the signal (statistics.correlate: exact p up to 7
  points, permutation p above, Fisher-z intervals);
- changes: the same on first differences between consecutive measurements that carry the signal;
- partial: r of the two series after each is regressed on the training step (the residuals' correlation; interval
  Fisher-z with one controlled variable, p by permuting the residuals, an approximation);
- per layer: each layer's NASCA against the signal (levels and changes), r only;
- the control pair: its NASCA movement (first to last measurement, the paired sentence test) and its r with the
  trained pair's quality signals, which says whether a correlation is specific to the trained pair.

Pooling over runs: the Fisher-z mean of the per-run r, weighted by n - 3 (n - 4 for the partial), with its normal
interval and p; and, as a second view, the correlation of within-run centred values pooled over runs, with p from
permutations within each run. Both keep the runs apart: no run's offset makes a correlation.

The time-trend caveat: NASCA and quality may correlate on levels only because both drift with training time. The
changes and the partial correlation (controlling for step) are the fair tests; the page says so next to the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "STUDY_METRICS",
    "analyze_study",
    "load_study_runs",
    "partial_correlation",
    "pool_correlations",
    "study_series",
    "write_study_page",
]

# The quality signals, in the order the page lists them: the reference likelihood (every measurement) first.
STUDY_METRICS = ("ref_logprob", "chrf")
_LABELS = {"ref_logprob": "reference log-likelihood (nats/byte)", "chrf": "chrF", "nasca": "NASCA layer mean"}
_VIEWS = ("levels", "changes", "partial")
_POOLED_PERMUTATIONS = 10_000


def load_study_runs(paths: Iterable[str | Path]) -> dict[str, list[dict]]:
    """{run name: measurement records} from run directories (holding neuronxa/metrics.jsonl), or metrics.jsonl files.
    The name is the run directory's name. A missing file raises FileNotFoundError naming it."""
    from neuronxa_callback.sinks.jsonl import read_jsonl

    runs: dict[str, list[dict]] = {}
    for raw in paths:
        path = Path(raw)
        jsonl = path if path.is_file() else path / "neuronxa" / "metrics.jsonl"
        if not jsonl.is_file():
            raise FileNotFoundError(f"load_study_runs: no metrics.jsonl at {jsonl}")
        name = (jsonl.parent.parent if jsonl.parent.name == "neuronxa" else jsonl.parent).name
        if name in runs:
            name = str(jsonl)
        runs[name] = [r for r in read_jsonl(jsonl) if r.get("event", "measurement") == "measurement"]
    if not runs:
        raise ValueError("load_study_runs: no runs given")
    return runs


def study_series(records: Sequence[dict], pair: str, metrics: Sequence[str] = STUDY_METRICS) -> dict[str, Any]:
    """One run's series for `pair`, one entry per step (the last record at a step wins): {"steps", "nasca" (layer
    means), "layers" (per-layer NASCA lists, None for a layer that could not be scored), "quality": {metric: [value
    or None per step]}}. Records without `pair` are skipped; ValueError when none has it."""
    from neuronxa_callback.measure.record import quality_scores

    by_step: dict[int, dict] = {}
    for record in records:
        if pair in (record.get("pairs") or {}):
            by_step[int(record["step"])] = record
    if not by_step:
        raise ValueError(f"study_series: no measurement record holds the pair {pair!r}")
    steps = sorted(by_step)
    scores = [by_step[s]["pairs"][pair] for s in steps]
    quality = [quality_scores(by_step[s], tuple(metrics)).get(pair, {}) for s in steps]
    return {
        "steps": steps,
        "nasca": [_number(entry.get("nasca_mean")) for entry in scores],
        "layers": [[_number(v) for v in (entry.get("nasca") or [])] for entry in scores],
        "quality": {metric: [_number(row.get(metric)) for row in quality] for metric in metrics},
    }


def partial_correlation(
    x: Sequence[float], y: Sequence[float], control: Sequence[float], *, resamples: int | None = None
) -> dict[str, Any]:
    """Pearson r of x and y with `control` (e.g. the training step) partialled out: the correlation of their residuals
    after a least-squares line on `control`. {"n", "pearson", "pearson_pvalue", "pearson_ci", "reason"}: p permutes
    the residuals (statistics.correlate; an approximation to the exact partial test), the interval is Fisher-z with
    one controlled variable (standard error 1 / sqrt(n - 4)). Needs n >= 4 points. `resamples`: permutations above
    statistics.EXACT_CORRELATION_MAX_POINTS points (default statistics.MONTE_CARLO_RESAMPLES)."""
    import numpy as np

    from neuronxa_callback.alignment import statistics

    if not len(x) == len(y) == len(control):
        raise ValueError(f"partial_correlation: x, y and control have {len(x)}, {len(y)} and {len(control)} values")
    n = len(x)
    out: dict[str, Any] = {"n": n, "pearson": None, "pearson_pvalue": None, "pearson_ci": None, "reason": None}
    if n < 4:
        out["reason"] = f"fewer than 4 points (n={n})"
        return out
    if len(set(control)) == 1:
        out["reason"] = "the control series is constant"
        return out
    design = np.column_stack([np.ones(n), np.asarray(control, dtype=float)])

    def residuals(values: Sequence[float]) -> list[float]:
        array = np.asarray(values, dtype=float)
        coefficients, *_ = np.linalg.lstsq(design, array, rcond=None)
        return [float(v) for v in array - design @ coefficients]

    rx, ry = residuals(x), residuals(y)
    if max(map(abs, rx)) < 1e-12 or max(map(abs, ry)) < 1e-12:
        out["reason"] = "a series is a straight line in the control: nothing left to correlate"
        return out
    result = statistics.correlate(rx, ry, resamples=resamples or statistics.MONTE_CARLO_RESAMPLES)
    out.update(pearson=result["pearson"], pearson_pvalue=result["pearson_pvalue"], reason=result["reason"])
    if result["pearson"] is not None:
        out["pearson_ci"], _ = statistics.fisher_interval(result["pearson"], n - 1)
    return out


def pool_correlations(results: Sequence[Mapping[str, Any]], *, controlled: int = 0) -> dict[str, Any]:
    """The Fisher-z mean of several runs' Pearson r, weighted by n - 3 - controlled: {"pearson", "pearson_ci",
    "pearson_pvalue" (normal, two-sided), "runs" (how many runs had an r), "n" (their points in all)}. Runs without
    an r (too few points, constant series) are left out; r = +-1 is clipped to +-0.999999 so z stays finite."""
    from scipy.stats import norm

    used = [(r["pearson"], r["n"]) for r in results if r.get("pearson") is not None and r["n"] - 3 - controlled > 0]
    out: dict[str, Any] = {"pearson": None, "pearson_ci": None, "pearson_pvalue": None, "runs": len(used), "n": 0}
    if not used:
        return out
    weights = [n - 3 - controlled for _, n in used]
    z = sum(w * math.atanh(max(-0.999999, min(0.999999, r))) for (r, _), w in zip(used, weights)) / sum(weights)
    se = 1 / math.sqrt(sum(weights))
    half = float(norm.ppf(0.975)) * se
    out.update(
        pearson=math.tanh(z),
        pearson_ci=[math.tanh(z - half), math.tanh(z + half)],
        pearson_pvalue=float(2 * norm.sf(abs(z) / se)),
        n=sum(n for _, n in used),
    )
    return out


def _centred_pooled(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]], resamples: int, seed: int = 0
) -> dict[str, Any]:
    """Pearson r of within-run centred values pooled over runs, p from permuting y within each run (seeded)."""
    import numpy as np

    arrays = [(np.asarray(x, float), np.asarray(y, float)) for x, y in groups if len(x) >= 3]
    out: dict[str, Any] = {"pearson": None, "pearson_pvalue": None, "n": sum(len(x) for x, _ in arrays)}
    if not arrays:
        return out
    xs = np.concatenate([x - x.mean() for x, _ in arrays])
    ys = [y - y.mean() for _, y in arrays]
    y_all = np.concatenate(ys)
    if xs.std() == 0 or y_all.std() == 0:
        return out
    observed = float(np.corrcoef(xs, y_all)[0, 1])
    rng = np.random.default_rng(seed)
    # Each row a permutation within every run; centred values keep their sum of squares, so r is a dot product.
    shuffled = np.concatenate([rng.permuted(np.tile(y, (resamples, 1)), axis=1) for y in ys], axis=1)
    scale = np.sqrt((xs**2).sum() * (y_all**2).sum())
    extreme = int((np.abs(shuffled @ xs) / scale >= abs(observed) - 1e-12).sum())
    out.update(pearson=observed, pearson_pvalue=(1 + extreme) / (1 + resamples))
    return out


def _paired(series: dict[str, Any], metric: str, alignment: Sequence[float | None] | None = None):
    """(steps, alignment, quality) at the steps where both are known."""
    alignment = series["nasca"] if alignment is None else alignment
    rows = [
        (s, a, q)
        for s, a, q in zip(series["steps"], alignment, series["quality"][metric])
        if a is not None and q is not None
    ]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _views(steps: Sequence[int], x: Sequence[float], y: Sequence[float], resamples: int) -> dict[str, dict[str, Any]]:
    from neuronxa_callback.alignment import statistics

    dx, dy = statistics.first_differences(x), statistics.first_differences(y)
    return {
        "levels": statistics.correlate(x, y, resamples=resamples),
        "changes": statistics.correlate(dx, dy, resamples=resamples),
        "partial": partial_correlation(x, y, steps, resamples=resamples),
    }


def _layer_rs(series: dict[str, Any], metric: str) -> dict[str, list[float | None]]:
    """Per-layer Pearson r (levels and changes) of NASCA with `metric`, r only (no p: 2 x layers tests)."""
    from neuronxa_callback.alignment import statistics

    num_layers = max((len(layers) for layers in series["layers"]), default=0)
    out: dict[str, list[float | None]] = {"levels": [], "changes": []}
    for layer in range(num_layers):
        values = [layers[layer] if layer < len(layers) else None for layers in series["layers"]]
        _, x, y = _paired(series, metric, values)
        out["levels"].append(statistics.correlate(x, y, pvalues=False)["pearson"])
        dx, dy = statistics.first_differences(x), statistics.first_differences(y)
        out["changes"].append(statistics.correlate(dx, dy, pvalues=False)["pearson"])
    return out


def analyze_study(
    runs: Mapping[str, Sequence[dict]],
    *,
    pair: str,
    control_pair: str | None = None,
    metrics: Sequence[str] = STUDY_METRICS,
    resamples: int = _POOLED_PERMUTATIONS,
) -> dict[str, Any]:
    """The study's numbers from {run name: records} (load_study_runs): {"pair", "control_pair", "metrics",
    "runs": {name: {"series", "control_series", metric: {"levels", "changes", "partial", "points", "layers",
    "control": {"levels", "changes", "partial"}}, "change", "control_change"}}, "pooled": {metric: {view: Fisher-z
    pool, view + "_centred": within-run centred pool, "layers": per-layer Fisher-z mean r}}}. See the module
    docstring for what each view means. `resamples`: permutations for every permutation p (above 7 points)."""
    from neuronxa_callback.alignment import statistics
    from neuronxa_callback.offline.run_summary import alignment_change

    if not runs:
        raise ValueError("analyze_study: no runs")
    analysis: dict[str, Any] = {"pair": pair, "control_pair": control_pair, "metrics": list(metrics), "runs": {}}
    for name, records in runs.items():
        series = study_series(records, pair, metrics)
        entry: dict[str, Any] = {"series": series, "change": alignment_change(list(records), pair)}
        control_series = None
        if control_pair is not None:
            control_series = study_series(records, control_pair, ())
            entry["control_series"] = control_series
            entry["control_change"] = alignment_change(list(records), control_pair)
        for metric in metrics:
            steps, x, y = _paired(series, metric)
            result: dict[str, Any] = {**_views(steps, x, y, resamples), "points": len(steps)}
            result["layers"] = _layer_rs(series, metric)
            if control_series is not None:
                control_at = dict(zip(control_series["steps"], control_series["nasca"]))
                cx = [control_at.get(s) for s in series["steps"]]
                csteps, cx, cy = _paired(series, metric, cx)
                result["control"] = _views(csteps, cx, cy, resamples)
            entry[metric] = result
        analysis["runs"][name] = entry

    pooled: dict[str, Any] = {}
    for metric in metrics:
        per_run = [analysis["runs"][name][metric] for name in analysis["runs"]]
        block: dict[str, Any] = {}
        for view in _VIEWS:
            block[view] = pool_correlations([r[view] for r in per_run], controlled=1 if view == "partial" else 0)
        groups_levels, groups_changes = [], []
        for name in analysis["runs"]:
            _, x, y = _paired(analysis["runs"][name]["series"], metric)
            groups_levels.append((x, y))
            groups_changes.append((statistics.first_differences(x), statistics.first_differences(y)))
        block["levels_centred"] = _centred_pooled(groups_levels, resamples)
        block["changes_centred"] = _centred_pooled(groups_changes, resamples)
        if control_pair is not None:
            block["control"] = {
                view: pool_correlations([r["control"][view] for r in per_run], controlled=1 if view == "partial" else 0)
                for view in _VIEWS
            }
        block["layers"] = {}
        for view in ("levels", "changes"):
            num_layers = max(len(r["layers"][view]) for r in per_run)
            block["layers"][view] = [
                pool_correlations(
                    [
                        {"pearson": r["layers"][view][layer], "n": r["points"] - (view == "changes")}
                        for r in per_run
                        if layer < len(r["layers"][view])
                    ]
                )["pearson"]
                for layer in range(num_layers)
            ]
        pooled[metric] = block
    analysis["pooled"] = pooled
    return analysis


# ----- the results page -----------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _r(result: Mapping[str, Any] | None) -> str:
    """'+0.42 [+0.10, +0.70] p=0.012 (n=12)' or '- (reason)'."""
    if not result or result.get("pearson") is None:
        reason = (result or {}).get("reason")
        return f"- ({reason})" if reason else "-"
    text = f"{result['pearson']:+.2f}"
    if result.get("pearson_ci"):
        low, high = result["pearson_ci"]
        text += f" [{low:+.2f}, {high:+.2f}]"
    if result.get("pearson_pvalue") is not None:
        p = result["pearson_pvalue"]
        text += f" p={p:.1e}" if p < 1e-3 else f" p={p:.3f}"
    if result.get("n"):
        text += f" (n={result['n']})"
    return text


def _figures(analysis: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    runs = analysis["runs"]
    metrics = analysis["metrics"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # 1. Every series over training: NASCA of the trained pair, of the control pair (its own panel: it sits at another
    # level, and one scale would flatten the trained pair's movement), and each quality signal.
    control_pair = analysis.get("control_pair")
    nasca_panels = 2 if control_pair else 1
    panels = nasca_panels + len(metrics)
    fig, axes = plt.subplots(panels, 1, figsize=(7, 2.3 * panels), sharex=True)
    for i, (name, entry) in enumerate(runs.items()):
        colour = colours[i % len(colours)]
        series = entry["series"]
        axes[0].plot(series["steps"], series["nasca"], "o-", color=colour, label=name)
        if control_pair and entry.get("control_series"):
            control = entry["control_series"]
            axes[1].plot(control["steps"], control["nasca"], "x--", color=colour, label=name)
        for axis, metric in zip(axes[nasca_panels:], metrics):
            steps, _, values = _paired(series, metric)
            axis.plot(steps, values, "o-", color=colour, label=name)
            axis.set_ylabel(_LABELS.get(metric, metric), fontsize=8)
    axes[0].set_ylabel(f"NASCA {analysis['pair']}", fontsize=8)
    if control_pair:
        axes[1].set_ylabel(f"NASCA {control_pair}\n(control)", fontsize=8)
    axes[0].legend(fontsize=7, ncol=3)
    axes[-1].set_xlabel("training step")
    fig.tight_layout()
    paths["series"] = out_dir / "study_series.png"
    fig.savefig(paths["series"], dpi=110)
    plt.close(fig)

    # 2. Scatter of levels and of changes, one colour per run.
    from neuronxa_callback.alignment import statistics

    fig, axes = plt.subplots(len(metrics), 2, figsize=(8, 3.2 * len(metrics)), squeeze=False)
    for row, metric in enumerate(metrics):
        for i, (name, entry) in enumerate(runs.items()):
            _, x, y = _paired(entry["series"], metric)
            colour = colours[i % len(colours)]
            axes[row][0].scatter(x, y, color=colour, s=18, label=name)
            axes[row][1].scatter(statistics.first_differences(x), statistics.first_differences(y), color=colour, s=18)
        pooled = analysis["pooled"][metric]
        axes[row][0].set_title(f"levels: pooled r {_short(pooled['levels'])}", fontsize=9)
        axes[row][1].set_title(f"changes: pooled r {_short(pooled['changes'])}", fontsize=9)
        axes[row][0].set_xlabel(_LABELS["nasca"])
        axes[row][1].set_xlabel(f"change of {_LABELS['nasca']}")
        axes[row][0].set_ylabel(_LABELS.get(metric, metric))
        axes[row][1].set_ylabel(f"change of {metric}")
        axes[row][1].axhline(0, color="grey", lw=0.5)
        axes[row][1].axvline(0, color="grey", lw=0.5)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    paths["scatter"] = out_dir / "study_scatter.png"
    fig.savefig(paths["scatter"], dpi=110)
    plt.close(fig)

    # 3. Per-layer r (Fisher-z mean over runs).
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for view, style in (("levels", "o-"), ("changes", "s--")):
            values = analysis["pooled"][metric]["layers"][view]
            axis.plot(range(len(values)), [math.nan if v is None else v for v in values], style, label=view)
        axis.axhline(0, color="grey", lw=0.5)
        axis.set_ylim(-1.05, 1.05)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_xlabel("layer")
        axis.set_ylabel("r (Fisher-z mean over runs)")
        axis.set_title(f"per-layer NASCA vs {metric}", fontsize=9)
        axis.legend(fontsize=7)
    fig.tight_layout()
    paths["layers"] = out_dir / "study_layers.png"
    fig.savefig(paths["layers"], dpi=110)
    plt.close(fig)
    return paths


def _short(result: Mapping[str, Any]) -> str:
    if result.get("pearson") is None:
        return "-"
    p = result.get("pearson_pvalue")
    return f"{result['pearson']:+.2f}" + ("" if p is None else f" (p={p:.2g})")


def _best_layers(values: Sequence[float | None], k: int = 3) -> str:
    ranked = sorted((v, i) for i, v in enumerate(values) if v is not None)[::-1][:k]
    return ", ".join(f"{i} ({v:+.2f})" for v, i in ranked) or "-"


def study_markdown(analysis: Mapping[str, Any], figures: Mapping[str, str] | None = None, intro: str = "") -> str:
    """The results page's markdown (write_study_page writes it with the figures): `figures` maps "series",
    "scatter", "layers" to the image paths the page links, `intro` is the text placed under the title."""
    pair, control = analysis["pair"], analysis["control_pair"]
    lines = ["# Does alignment track translation quality during fine-tuning?", ""]
    if intro:
        lines += [intro.strip(), ""]
    lines += [
        f"Trained pair **{pair}** (NASCA layer mean against each quality signal); control pair "
        f"**{control or 'none'}** (alignment only). {len(analysis['runs'])} runs (seeds). r is Pearson's; "
        "brackets: 95% Fisher-z interval; p two-sided (exact up to 7 points, permutations above); n: points.",
        "",
        "**Read the changes and the partial r first.** NASCA and quality can correlate on *levels* only because "
        "both drift with training time. The *changes* (first differences between consecutive measurements that carry "
        "the signal) and the *partial* correlation controlling for the training step remove a shared trend; they "
        "are the fair tests.",
        "",
        "Pooled over runs: the Fisher-z mean of the per-run r weighted by n - 3 (n - 4 for the partial), with its "
        "normal interval and p; *centred*: the correlation of within-run centred values pooled over runs, p from "
        "permutations within each run.",
        "",
        "## Headline: pooled over runs",
        "",
        "| quality signal | levels | changes | partial (step) | levels, centred | changes, centred |",
        "|---|---|---|---|---|---|",
    ]
    for metric in analysis["metrics"]:
        block = analysis["pooled"][metric]
        lines.append(
            f"| {_LABELS.get(metric, metric)} | {_r(block['levels'])} | {_r(block['changes'])} | "
            f"{_r(block['partial'])} | {_r(block['levels_centred'])} | {_r(block['changes_centred'])} |"
        )
    lines += ["", "## Per run", ""]
    for metric in analysis["metrics"]:
        lines += [
            f"### NASCA vs {_LABELS.get(metric, metric)}",
            "",
            "| run | points | levels | changes | partial (step) |",
            "|---|---|---|---|---|",
        ]
        for name, entry in analysis["runs"].items():
            result = entry[metric]
            lines.append(
                f"| {name} | {result['points']} | {_r(result['levels'])} | {_r(result['changes'])} | "
                f"{_r(result['partial'])} |"
            )
        lines.append("")
    if control:
        lines += [
            f"## Control pair {control}",
            "",
            "Its NASCA from the first to the last measurement (paired sign-flip test over sentences), and its r with "
            f"the trained pair's quality: a correlation that the control pair shows as well is not specific to {pair}.",
            "",
            "| run | control NASCA change | trained pair NASCA change |",
            "|---|---|---|",
        ]
        for name, entry in analysis["runs"].items():
            lines.append(
                f"| {name} | {entry['control_change'].get('verdict', '-')} | {entry['change'].get('verdict', '-')} |"
            )
        lines += [
            "",
            "| quality signal | control: levels | control: changes | control: partial (step) |",
            "|---|---|---|---|",
        ]
        for metric in analysis["metrics"]:
            block = analysis["pooled"][metric]["control"]
            lines.append(
                f"| {_LABELS.get(metric, metric)} | {_r(block['levels'])} | {_r(block['changes'])} | "
                f"{_r(block['partial'])} |"
            )
        lines.append("")
    lines += [
        "## Per layer",
        "",
        "Each layer's NASCA against the signal, r as the Fisher-z mean over runs (no p-values: one test per layer "
        "and view would need a multiple-comparison correction; read it as a picture).",
        "",
        "| quality signal | best layers, levels | best layers, changes |",
        "|---|---|---|",
    ]
    for metric in analysis["metrics"]:
        layers = analysis["pooled"][metric]["layers"]
        lines.append(
            f"| {_LABELS.get(metric, metric)} | {_best_layers(layers['levels'])} | {_best_layers(layers['changes'])} |"
        )
    lines += ["", "| layer | " + " | ".join(f"{m}: levels | {m}: changes" for m in analysis["metrics"]) + " |"]
    lines.append("|---|" + "---|---|" * len(analysis["metrics"]))
    num_layers = max(len(analysis["pooled"][m]["layers"]["levels"]) for m in analysis["metrics"])
    for layer in range(num_layers):
        cells = []
        for metric in analysis["metrics"]:
            for view in ("levels", "changes"):
                values = analysis["pooled"][metric]["layers"][view]
                value = values[layer] if layer < len(values) else None
                cells.append("-" if value is None else f"{value:+.2f}")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        captions = {
            "series": "NASCA of the trained pair, of the control pair and each quality signal over training, one "
            "colour per run",
            "scatter": "NASCA against quality: levels (left) and changes between consecutive measurements (right)",
            "layers": "per-layer r with each quality signal (Fisher-z mean over runs)",
        }
        for key, path in figures.items():
            lines += [f"![{captions.get(key, key)}]({path})", "", f"*{captions.get(key, key)}.*", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_study_page(
    analysis: Mapping[str, Any], out_dir: str | Path, *, intro: str = "", name: str = "study.md"
) -> dict[str, Path]:
    """Write `<out_dir>/study.md` (the results page), its PNG figures next to it (matplotlib, Agg) and
    `<out_dir>/study.json` (the numbers, without the series' per-layer lists). Returns {"page", "json", "series",
    "scatter", "layers": path}."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _figures(analysis, out_dir)
    page = out_dir / name
    page.write_text(study_markdown(analysis, {k: p.name for k, p in figures.items()}, intro), encoding="utf-8")
    numbers = {
        **{k: v for k, v in analysis.items() if k != "runs"},
        "runs": {
            run: {key: value for key, value in entry.items() if key not in ("series", "control_series")}
            for run, entry in analysis["runs"].items()
        },
        "series": {
            run: {
                "steps": entry["series"]["steps"],
                "nasca": entry["series"]["nasca"],
                "quality": entry["series"]["quality"],
                "control_nasca": (entry.get("control_series") or {}).get("nasca"),
            }
            for run, entry in analysis["runs"].items()
        },
    }
    json_path = out_dir / "study.json"
    json_path.write_text(json.dumps(numbers, indent=1, default=str) + "\n", encoding="utf-8")
    return {"page": page, "json": json_path, **figures}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m neuronxa_callback.offline.study RUN_DIR ... --pair P [--control-pair C] --out DIR`."""
    import argparse

    parser = argparse.ArgumentParser(description="alignment vs quality over a set of runs: study.md and figures")
    parser.add_argument("runs", nargs="+", help="run directories (with neuronxa/metrics.jsonl) or metrics.jsonl files")
    parser.add_argument("--pair", default="eng_Latn-isl_Latn")
    parser.add_argument("--control-pair", default="eng_Latn-deu_Latn", help="'none' for no control pair")
    parser.add_argument("--out", type=Path, required=True, help="directory for study.md, study.json and the figures")
    args = parser.parse_args(argv)
    control = None if args.control_pair.lower() == "none" else args.control_pair
    analysis = analyze_study(load_study_runs(args.runs), pair=args.pair, control_pair=control)
    print(write_study_page(analysis, args.out)["page"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
