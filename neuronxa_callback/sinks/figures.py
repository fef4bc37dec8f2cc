"""Figures of alignment and translation quality over training, from plain lists (the JSONL's contents).

Usage::

    from neuronxa_callback.sinks.figures import plot_layer_heatmap, plot_layer_profile

    plot_layer_heatmap([0, 50, 100], [[...L values...], [...], [...]], "heatmap.png", pair="eng_Latn-isl_Latn")
    plot_layer_profile(report.to_dict(), "profile.png")        # `neuronxa score --plot`

Every function takes plain data and an output path, writes a PNG and returns the path. Figures are drawn with
matplotlib's object-oriented API (matplotlib.figure.Figure), never through pyplot: no display is needed, and a
notebook user's backend and open figures are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

_QUALITY_COLOURS = {
    "comet": "tab:red",
    "cometkiwi": "tab:purple",
    "chrf": "tab:green",
    "bleu": "tab:brown",
    "ref_logprob": "tab:olive",
}
_QUALITY_LABELS = {
    "comet": "COMET",
    "cometkiwi": "CometKiwi",
    "chrf": "chrF",
    "bleu": "BLEU",
    "ref_logprob": "reference log-likelihood (nats/byte)",
}


def chance_level(num_sentences: int) -> float:
    """Probability that a random sentence pair is weakly aligned: 1 / (2n - 1) (paper Appendix E)."""
    if num_sentences < 1:
        raise ValueError(f"num_sentences must be >= 1, got {num_sentences}")
    return 1.0 / (2 * num_sentences - 1)


def _subplots(figsize: tuple[float, float]):
    """(figure, axes) outside pyplot: pyplot would pick (or need) a GUI backend and track the figure globally."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)  # a Figure without a pyplot manager renders PNG with Agg; nothing to close
    return path


def _label(metric: str) -> str:
    return metric.upper() if metric in ("nasca", "navca", "mexa") else _QUALITY_LABELS.get(metric, metric)


def plot_layer_heatmap(
    steps: Sequence[int], per_layer: Sequence[Sequence[float]], path: str | Path, *, pair: str, metric: str = "nasca"
) -> Path:
    """Layer x step heatmap: one column per measurement, layer 0 at the bottom."""
    if len(steps) == 0 or len(steps) != len(per_layer):
        raise ValueError(
            f"plot_layer_heatmap: need one per-layer list per step, got {len(steps)} steps and {len(per_layer)} lists"
        )
    import numpy as np

    values = np.array([list(row) for row in per_layer], dtype=float).T  # [layers, steps]
    num_layers = values.shape[0]
    fig, ax = _subplots((max(5.0, 1.0 + 0.45 * len(steps)), max(3.5, 0.9 + 0.22 * num_layers)))
    image = ax.imshow(
        values,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        vmin=0.0,
        vmax=max(1e-6, float(np.nanmax(values))),
        interpolation="nearest",
    )
    tick_every = max(1, math.ceil(len(steps) / 12))
    ax.set_xticks(range(0, len(steps), tick_every))
    ax.set_xticklabels([str(steps[i]) for i in range(0, len(steps), tick_every)], rotation=45 if len(steps) > 6 else 0)
    layer_every = max(1, math.ceil(num_layers / 16))
    ax.set_yticks(range(0, num_layers, layer_every))
    ax.set_xlabel("training step")
    ax.set_ylabel("decoder layer (0 = first)")  # 0-based, like the per-layer series names (layer_07)
    ax.set_title(f"{_label(metric)} per layer over training — {pair}")
    fig.colorbar(image, ax=ax, label=_label(metric))
    return _save(fig, path)


def plot_alignment_and_quality(
    steps: Sequence[int],
    alignment: Sequence[float],
    quality: dict[str, Sequence[float | None]],
    path: str | Path,
    *,
    pair: str,
    metric: str = "nasca",
    chance: float | None = None,
) -> Path:
    """Layer-mean alignment (left axis) and translation quality scores (right axis) over training steps.

    ``quality`` maps metric name -> one value per step (None where not measured); metrics with no values are skipped.
    """
    if len(steps) != len(alignment):
        raise ValueError(f"plot_alignment_and_quality: {len(steps)} steps but {len(alignment)} alignment values")
    fig, ax = _subplots((8.0, 4.8))
    lines = ax.plot(steps, alignment, marker="o", color="tab:blue", label=f"{_label(metric)} (layer mean)")
    if chance is not None:
        lines += [
            ax.axhline(chance, color="tab:blue", linestyle=":", linewidth=1, label=f"chance level ({chance:.4f})")
        ]
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{_label(metric)} (layer mean)", color="tab:blue")
    ax.tick_params(axis="y", labelcolor="tab:blue")
    plotted = {name: values for name, values in quality.items() if any(v is not None for v in values)}
    # chrF/BLEU live on 0-100, COMET/CometKiwi on about 0-1 and ref_logprob (nats per byte) on about -3-0: one shared
    # axis would flatten the small ones to a line, so each scale gets its own right-hand axis (the second one offset
    # outwards).
    small = ("comet", "cometkiwi", "ref_logprob")
    groups = [[n for n in plotted if n not in small], [n for n in plotted if n in small]]
    groups = [group for group in groups if group]
    for index, group in enumerate(groups):
        twin = ax.twinx()
        if index == 1:
            twin.spines["right"].set_position(("outward", 55))
        for name in group:
            values = plotted[name]
            if len(values) != len(steps):
                raise ValueError(
                    f"plot_alignment_and_quality: quality[{name!r}] has {len(values)} values for {len(steps)} steps"
                )
            xs = [s for s, v in zip(steps, values) if v is not None]
            ys = [v for v in values if v is not None]
            colour = _QUALITY_COLOURS.get(name, "tab:gray")
            lines += twin.plot(xs, ys, marker="s", linestyle="--", color=colour, label=_label(name))
        twin.set_ylabel(
            " / ".join(_label(name) for name in group),
            color=_QUALITY_COLOURS.get(group[0], "black") if len(group) == 1 else "black",
        )
    ax.legend(
        lines,
        [line.get_label() for line in lines],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=min(4, len(lines)),
        fontsize="small",
        frameon=False,
    )
    what = "Alignment and translation quality" if plotted else f"{_label(metric)} (layer mean)"
    ax.set_title(f"{what} over training — {pair}")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_alignment_vs_quality(
    alignment: Sequence[float],
    quality: Sequence[float],
    path: str | Path,
    *,
    pair: str,
    quality_metric: str,
    steps: Sequence[int] | None = None,
    metric: str = "nasca",
) -> Path:
    """Scatter of layer-mean alignment against a quality score, one point per measurement, with Pearson r annotated."""
    if len(alignment) != len(quality) or len(alignment) == 0:
        raise ValueError(
            f"plot_alignment_vs_quality: need equally many (>= 1) alignment and quality values, got "
            f"{len(alignment)} and {len(quality)}"
        )
    from neuronxa_callback.measure.history import correlate

    fig, ax = _subplots((5.5, 4.5))
    colours = list(steps) if steps is not None else list(range(len(alignment)))
    points = ax.scatter(alignment, quality, c=colours, cmap="viridis", s=40, edgecolors="black", linewidths=0.5)
    fig.colorbar(points, ax=ax, label="training step" if steps is not None else "measurement")
    result = correlate(list(alignment), list(quality))
    if result["pearson"] is not None:
        text = (
            f"Pearson r = {result['pearson']:.3f} (p = {result['pearson_pvalue']:.3g})\n"
            f"Spearman ρ = {result['spearman']:.3f}, n = {result['n']}"
        )
    else:
        text = f"no correlation: {result['reason']}"
    ax.text(
        0.03,
        0.97,
        text,
        transform=ax.transAxes,
        va="top",
        fontsize="small",
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
    )
    ax.set_xlabel(f"{_label(metric)} (layer mean)")
    ax.set_ylabel(_label(quality_metric))
    ax.set_title(f"{_label(metric)} vs {_label(quality_metric)} — {pair}")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_layer_correlations(
    per_layer_r: Sequence[float | None],
    path: str | Path,
    *,
    pair: str,
    quality_metric: str,
    best_layer: int | None = None,
    metric: str = "nasca",
) -> Path:
    """Bar per layer: Pearson r between that layer's alignment and the quality score; best layer highlighted."""
    if len(per_layer_r) == 0:
        raise ValueError("plot_layer_correlations: per_layer_r is empty")
    layers = list(range(len(per_layer_r)))
    heights = [r if r is not None else 0.0 for r in per_layer_r]
    colours = [
        "tab:orange" if i == best_layer else ("lightgray" if r is None else "tab:blue")
        for i, r in enumerate(per_layer_r)
    ]
    fig, ax = _subplots((max(6.0, 1.5 + 0.3 * len(layers)), 4.0))
    ax.bar(layers, heights, color=colours, edgecolor="black", linewidth=0.4)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"Pearson r ({_label(metric)} vs {_label(quality_metric)})")
    title = f"Per-layer correlation with {_label(quality_metric)} — {pair}"
    if best_layer is not None:
        title += f"\nbest layer: {best_layer} (r = {per_layer_r[best_layer]:.3f}, orange)"
    ax.set_title(title, fontsize="medium")
    undefined = [i for i, r in enumerate(per_layer_r) if r is None]
    if undefined:
        ax.plot(undefined, [0.0] * len(undefined), linestyle="none", marker="x", color="gray", markersize=8)
        ax.set_xlabel("layer (x = undefined: constant series)")
    ax.set_xticks(layers[:: max(1, math.ceil(len(layers) / 20))])
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_layer_profile(report: dict, path: str | Path, *, metric: str = "nasca") -> Path:
    """Per-layer alignment of one AlignmentReport.to_dict(), one line per language pair, with the chance level."""
    pairs = report.get("pairs") or {}
    plotted = {pair: scores[metric] for pair, scores in pairs.items() if isinstance(scores.get(metric), list)}
    if not plotted:
        raise ValueError(f"plot_layer_profile: the report has no per-layer {metric!r} scores for any pair")
    fig, ax = _subplots((7.0, 4.2))
    for pair, values in plotted.items():
        mean = pairs[pair].get(f"{metric}_mean")
        label = f"{pair} (mean {mean:.3f})" if isinstance(mean, (int, float)) else pair
        ax.plot(range(len(values)), values, marker="o", markersize=3, label=label)
    ids = (report.get("data") or {}).get("ids")
    if ids:
        chance = chance_level(len(ids))
        ax.axhline(chance, color="gray", linestyle=":", linewidth=1, label=f"chance ({chance:.4f}, n={len(ids)})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel(_label(metric))
    ax.set_ylim(bottom=0.0)
    model = report.get("model")
    ax.set_title(f"{_label(metric)} per layer" + (f" — {model}" if model else ""))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)
