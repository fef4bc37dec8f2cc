"""Every name a measurement record is published under, made in this one module: one name per number and backend.

A record (docs/DESIGN.md, "JSONL record") is published in four parts:

- **headline** (`headline_scalars`): per pair the layer mean of each alignment metric, the best layer, every quality
  score (chrF, BLEU, COMET, CometKiwi, copy and off-target rates; ``ref_logprob``, the reference's log-likelihood in nats per UTF-8
  byte, at every measurement), the running Pearson r against each quality metric; the
  early-stopping state. A few numbers per measurement, worth a place next to the loss.
- **details** (`detail_scalars`): every other number: per-layer series, p-values, correlation details (with Fisher-z
  intervals ``r_<q>_ci_low`` / ``_ci_high`` and first-difference correlations ``r_diff_<q>``, ``rho_diff_<q>``), the
  layer mean's bootstrap interval (``nasca_mean_ci_low`` / ``_ci_high``), the paired change against the first and
  the previous measurement (`change_key`: ``nasca_change_vs_baseline`` with ``_pvalue``, ``_ci_low``, ``_ci_high``),
  timings.
- **media** (`heatmap_key`, `translations_key`, `figure_key`, `translation_rows`): the layer x step heatmap, the
  translations table, the report's figures.
- **the console line** (`summary_line`).

Names per backend (``<pair>`` = ``eng_Latn-isl_Latn``), the same whether the callback is attached to the Trainer or
not (attached, the headline goes through ``trainer.log`` and the Trainer's integration renames it; not attached, the
W&B sink writes it under the name that integration would have produced):

=======================  ==========================================  ============================================
what                     W&B, trackio, TensorBoard                   MLflow
=======================  ==========================================  ============================================
headline                 ``eval/neuronxa/<pair>/nasca_mean``         ``eval_neuronxa/<pair>/nasca_mean``
early stopping           ``eval/neuronxa_early_stopping/smoothed``   ``eval_neuronxa_early_stopping/smoothed``
details                  ``neuronxa/<pair>/nasca/layer_07``          the same
media                    ``neuronxa/<pair>/nasca_heatmap``,          artifacts under those names
                         ``neuronxa/<pair>/translations``,
                         ``neuronxa/figures/<name>``
W&B run summary          ``eval/neuronxa/<pair>/nasca_mean_best``    --
                         and ``..._best_step``
=======================  ==========================================  ============================================

``trainer.log`` (and so ``trainer.state.log_history`` and the console) gets the headline as `trainer_scalars`:
``eval_neuronxa/<pair>/nasca_mean``, ``eval_neuronxa_early_stopping/smoothed``.

The Trainer's *evaluation metrics* are a separate thing, made by ``_records.eval_metrics`` and added to the metrics
of each ``trainer.evaluate()`` (after the Trainer has logged them, so no tracker shows them twice):
``eval_neuronxa_nasca`` (mean over pairs of the layer mean), ``eval_neuronxa_navca``, ``eval_neuronxa_<pair>_nasca``,
``eval_neuronxa_<pair>_navca``. They are the names for ``metric_for_best_model`` and ``EarlyStoppingCallback``.

Usage::

    from neuronxa_callback.sinks import names

    names.trainer_scalars(record)["eval_neuronxa/eng_Latn-isl_Latn/nasca_mean"]
    names.headline_for(record, "wandb")["eval/neuronxa/eng_Latn-isl_Latn/nasca_mean"]
    names.detail_scalars(record)["neuronxa/eng_Latn-isl_Latn/nasca/layer_07"]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

PREFIX = "neuronxa"  # details and media
TRAINER_PREFIX = "eval_neuronxa"  # the headline through trainer.log; the integrations rewrite "eval_" to "eval/"
STEP_METRIC = "train/global_step"  # the Trainer's x axis on W&B and trackio; one x axis per run
# The groups trainer_key() puts the headline in (each pair's numbers; early stopping's own group).
HEADLINE_GROUPS = (f"{TRAINER_PREFIX}/", f"{TRAINER_PREFIX}_early_stopping/")
ALIGNMENT_METRICS = ("nasca", "navca", "mexa")
# off_target_rate / off_target: hypotheses in another language than the target (quality/language_id.py).
QUALITY_METRICS = ("chrf", "bleu", "comet", "cometkiwi", "copy_rate", "copies", "off_target_rate", "off_target")
# A record's "likelihood" section (quality/likelihood.py): the headline is nats per UTF-8 byte of the reference;
# per character and per token are details.
LIKELIHOOD_METRICS = ("ref_logprob", "ref_logprob_per_char", "ref_logprob_per_token")
# Higher is better for these: the W&B run summary keeps their best value and its step.
BEST_METRICS = ("nasca_mean", "navca_mean", "chrf", "bleu", "comet", "cometkiwi", "ref_logprob")
# The backends whose Trainer integration rewrites "eval_x" to "eval/x" (transformers' rewrite_logs); MLflow keeps it.
REWRITING_BACKENDS = ("wandb", "trackio", "tensorboard")

# Keys of a record's quality block that are not scores (everything else numeric is one: chrf, bleu, comet, copy rates).
# language_judged is the off-target rate's denominator, kept in the JSONL only.
_QUALITY_NON_SCORES = {"direction", "signatures", "translations", "directions", "language_judged"}
_EARLY_STOPPING_KEYS = ("smoothed", "best", "bad_measurements")


def _number(value: Any) -> float | None:
    """A finite float, or None (missing values and NaN are left out, never logged as a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ----- the headline --------------------------------------------------------------------------------------------------
def headline_scalars(record: dict) -> dict[str, float]:
    """The few numbers per measurement worth a place in the Trainer's logs, keyed relative to the prefix.

    Per pair: the layer mean of each alignment metric, the best layer of the first one (index, as a float; its score
    is in the per-layer series), every quality score of the record (chrF, BLEU, COMET, CometKiwi, copy rates ...), and
    the running Pearson r against each quality metric once it exists. Early stopping: smoothed value, best, bad
    measurements, should_stop. Usage: ``headline_scalars(record)["eng_Latn-isl_Latn/nasca_mean"]``.
    """
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            out[name] = number

    for pair, scores in (record.get("pairs") or {}).items():
        best_metric = None
        for metric in ALIGNMENT_METRICS:
            put(f"{pair}/{metric}_mean", scores.get(f"{metric}_mean"))
            if best_metric is None and isinstance(scores.get(metric), list) and scores[metric]:
                best_metric = metric
        if best_metric is not None:
            per_layer = [(_number(v), i) for i, v in enumerate(scores[best_metric])]
            per_layer = [(v, i) for v, i in per_layer if v is not None]
            if per_layer:
                _, layer = max(per_layer, key=lambda item: (item[0], -item[1]))  # ties: the lowest layer
                out[f"{pair}/{best_metric}_best_layer"] = float(layer)
    for pair, quality in (record.get("quality") or {}).items():
        for name, value in quality.items():
            if name not in _QUALITY_NON_SCORES:
                put(f"{pair}/{name}", value)
    for pair, likelihood in (record.get("likelihood") or {}).items():
        put(f"{pair}/ref_logprob", (likelihood or {}).get("ref_logprob"))
    for pair, by_metric in (record.get("correlation") or {}).items():
        for metric, entry in by_metric.items():
            put(f"{pair}/r_{metric}", (entry or {}).get("pearson"))
    stopping = record.get("early_stopping")
    if stopping:
        for key in _EARLY_STOPPING_KEYS:
            put(f"early_stopping/{key}", stopping.get(key))
        out["early_stopping/should_stop"] = float(bool(stopping.get("should_stop")))
    return out


def trainer_key(name: str) -> str:
    """A headline name (`headline_scalars`) as ``trainer.log`` gets it. Early stopping gets its own group,
    ``eval_neuronxa_early_stopping/...``: dashboards sort a group's panels by name, and "early_stopping/..." would
    otherwise come before every pair's alignment ("eng_Latn-...")."""
    return f"{TRAINER_PREFIX}_{name}" if name.startswith("early_stopping/") else f"{TRAINER_PREFIX}/{name}"


def trainer_scalars(record: dict) -> dict[str, float]:
    """What goes through ``trainer.log``: `headline_scalars` under ``eval_neuronxa/``, floats only."""
    return {trainer_key(name): value for name, value in headline_scalars(record).items()}


def backend_key(key: str, backend: str) -> str:
    """The name `backend` shows for a ``trainer.log`` key: what the Trainer's integration for it writes
    (W&B, trackio, TensorBoard: ``eval_x`` -> ``eval/x``; MLflow: the key, unsupported characters as "_")."""
    if backend in REWRITING_BACKENDS and key.startswith("eval_"):
        return "eval/" + key[len("eval_") :]
    if backend == "mlflow":
        return re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", key)
    return key


def headline_for(record: dict, backend: str) -> dict[str, float]:
    """The headline under the names `backend` shows when the Trainer logs it; what a sink writes itself when no
    Trainer does (the callback not attached), so that the names are the same either way."""
    return {backend_key(key, backend): value for key, value in trainer_scalars(record).items()}


def host_scalars(record: dict) -> dict[str, float]:
    """The headline for another framework's loggers (Lightning's, Accelerate's trackers): the names the HF Trainer's
    W&B / trackio / TensorBoard integrations show (``eval/neuronxa/<pair>/nasca_mean``), so a dashboard reads the
    same whichever host trained."""
    return headline_for(record, "tensorboard")


# ----- the details ---------------------------------------------------------------------------------------------------
def flatten_record(record: dict) -> dict[str, float]:
    """Every number of one record under ``neuronxa/``: the headline's numbers and the details together.

    This is the flat view of a record (docs/DESIGN.md), not a set of names any backend publishes: a backend gets
    the headline under its `backend_key` names and `detail_scalars` under these. Missing values and NaN are left
    out. Usage: ``flatten_record(record)["neuronxa/eng_Latn-isl_Latn/nasca/layer_07"]``.
    """
    flat: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            flat[name] = number

    for pair, scores in (record.get("pairs") or {}).items():
        for metric in ALIGNMENT_METRICS:
            put(f"{PREFIX}/{pair}/{metric}_mean", scores.get(f"{metric}_mean"))
            put(f"{PREFIX}/{pair}/{metric}_pvalue", scores.get(f"{metric}_pvalue"))
            per_layer = scores.get(metric)
            if isinstance(per_layer, list):
                for layer, value in enumerate(per_layer):
                    put(layer_key(pair, metric, layer), value)
    for pair, quality in (record.get("quality") or {}).items():
        # copy_rate / copies: hypotheses that repeated a prompt example, scored as empty (copies.py).
        for metric in QUALITY_METRICS:
            put(f"{PREFIX}/{pair}/{metric}", quality.get(metric))
    for pair, likelihood in (record.get("likelihood") or {}).items():
        for metric in LIKELIHOOD_METRICS:
            put(f"{PREFIX}/{pair}/{metric}", (likelihood or {}).get(metric))
    for pair, by_metric in (record.get("correlation") or {}).items():
        for metric, entry in by_metric.items():
            entry = entry or {}
            put(f"{PREFIX}/{pair}/r_{metric}", entry.get("pearson"))
            put(f"{PREFIX}/{pair}/r_{metric}_pvalue", entry.get("pearson_pvalue"))
            put(f"{PREFIX}/{pair}/rho_{metric}", entry.get("spearman"))
            put(f"{PREFIX}/{pair}/best_layer_{metric}", entry.get("best_layer"))
            put(f"{PREFIX}/{pair}/n_{metric}", entry.get("n"))
            _put_interval(put, f"{PREFIX}/{pair}/r_{metric}", entry.get("pearson_ci"))
            # On first differences (change vs change between measurements): a shared time trend cannot make these.
            differences = entry.get("differences") or {}
            put(f"{PREFIX}/{pair}/r_diff_{metric}", differences.get("pearson"))
            put(f"{PREFIX}/{pair}/r_diff_{metric}_pvalue", differences.get("pearson_pvalue"))
            put(f"{PREFIX}/{pair}/rho_diff_{metric}", differences.get("spearman"))
            put(f"{PREFIX}/{pair}/rho_diff_{metric}_pvalue", differences.get("spearman_pvalue"))
    for pair, by_metric in (record.get("change") or {}).items():
        for metric, entry in by_metric.items():
            _put_interval(put, f"{PREFIX}/{pair}/{metric}_mean", entry.get("mean_ci"))
            for against in CHANGE_REFERENCES:
                change = entry.get(against) or {}
                key = change_key(pair, metric, against)
                put(key, change.get("delta"))
                put(f"{key}_pvalue", change.get("pvalue"))
                _put_interval(put, key, change.get("ci"))
    stopping = record.get("early_stopping")
    if stopping:
        for key in ("value", "smoothed", "best", "bad_measurements", "pvalue"):
            put(f"{PREFIX}/early_stopping/{key}", stopping.get(key))
        flat[f"{PREFIX}/early_stopping/should_stop"] = float(bool(stopping.get("should_stop")))
    for key, value in (record.get("timing") or {}).items():
        put(f"{PREFIX}/timing/{key}", value)
    return flat


# The measurements a record's "change" block compares with (MeasurementHistory.changes).
CHANGE_REFERENCES = ("vs_baseline", "vs_previous")


def change_key(pair: str, metric: str, against: str) -> str:
    """``neuronxa/<pair>/nasca_change_vs_baseline``: the paired change of the layer mean against the run's first
    measurement (``vs_previous``: the one before); ``_pvalue``, ``_ci_low`` and ``_ci_high`` follow it."""
    if against not in CHANGE_REFERENCES:
        raise ValueError(f"change_key: against must be one of {CHANGE_REFERENCES}; got {against!r}")
    return f"{PREFIX}/{pair}/{metric}_change_{against}"


def _put_interval(put, name: str, interval: Any) -> None:
    """``<name>_ci_low`` / ``<name>_ci_high`` from a [lo, hi] interval (nothing when there is none)."""
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        put(f"{name}_ci_low", interval[0])
        put(f"{name}_ci_high", interval[1])


def detail_scalars(record: dict) -> dict[str, float]:
    """Every number of the record that is not in the headline, under ``neuronxa/``: per-layer series
    (``neuronxa/<pair>/nasca/layer_07``), p-values, correlation details, timings. Disjoint from the headline, so
    nothing is published twice."""
    headline = set(headline_scalars(record))
    cut = len(PREFIX) + 1
    # Early stopping is all in the headline; its raw "value" is the pair's layer mean, already there.
    return {
        name: value
        for name, value in flatten_record(record).items()
        if name[cut:] not in headline and not name[cut:].startswith("early_stopping/")
    }


def layer_key(pair: str, metric: str, layer: int) -> str:
    """``neuronxa/<pair>/<metric>/layer_07`` (2-digit, 0-based)."""
    return f"{PREFIX}/{pair}/{metric}/layer_{layer:02d}"


# ----- media ---------------------------------------------------------------------------------------------------------
def heatmap_key(pair: str, metric: str = "nasca") -> str:
    """The layer x step heatmap of one pair (an image per measurement; the newest holds every earlier step)."""
    return f"{PREFIX}/{pair}/{metric}_heatmap"


def translations_key(pair: str) -> str:
    """The table of the model's translations of one pair (when quality is scored)."""
    return f"{PREFIX}/{pair}/translations"


def figure_key(name: str) -> str:
    """A figure of the report (``write_report``'s name, e.g. ``trend/<pair>``) at the end of the run."""
    return f"{PREFIX}/figures/{name}"


def translation_rows(record: dict) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """{pair: (columns, rows)} of the record's translations (every direction), for a table per backend."""
    # language: the hypothesis' language as identified (quality/language_id.py), "" when it was not identified.
    columns = ["step", "direction", "id", "source", "hypothesis", "reference", "language"]
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    for pair, quality in (record.get("quality") or {}).items():
        blocks = list((quality.get("directions") or {}).values()) or [quality]
        rows = []
        for block in blocks:
            for row in block.get("translations") or []:
                rows.append(
                    [
                        int(record["step"]),
                        str(block.get("direction", "")),
                        str(row.get("id", "")),
                        str(row.get("source", "")),
                        str(row.get("hypothesis", "")),
                        str(row.get("reference", "")),
                        str(row.get("language") or ""),
                    ]
                )
        if rows:
            tables[pair] = (columns, rows)
    return tables


# ----- the W&B run summary -------------------------------------------------------------------------------------------
def best_values(records: Iterable[dict], backend: str = "wandb") -> dict[str, float | int]:
    """The best (highest) value of each `BEST_METRICS` headline over `records` and the step it was measured at:
    ``{"eval/neuronxa/<pair>/nasca_mean_best": 0.41, "eval/neuronxa/<pair>/nasca_mean_best_step": 40, ...}``
    (ties: the earlier step)."""
    best: dict[str, tuple[float, int]] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for name, value in headline_scalars(record).items():
            pair, _, metric = name.rpartition("/")
            if pair and not pair.startswith("early_stopping") and metric in BEST_METRICS:
                key = backend_key(trainer_key(name), backend)
                if key not in best or value > best[key][0] or (value == best[key][0] and step < best[key][1]):
                    best[key] = (value, step)
    out: dict[str, float | int] = {}
    for key, (value, step) in best.items():
        out[f"{key}_best"] = value
        out[f"{key}_best_step"] = step
    return out


# ----- the console ---------------------------------------------------------------------------------------------------
def summary_line(record: dict) -> str:
    """One human line per measurement for the console, e.g.
    ``step 20: eng_Latn-isl_Latn NASCA 0.032 (best layer 6: 0.100), NAVCA 0.008, chrF 16.5 [alignment 12 s]``."""
    headline = headline_scalars(record)
    parts = []
    for pair in record.get("pairs") or {}:
        items = []
        for metric in ALIGNMENT_METRICS:
            mean = headline.get(f"{pair}/{metric}_mean")
            if mean is None:
                continue
            text = f"{metric.upper()} {mean:.3f}"
            layer = headline.get(f"{pair}/{metric}_best_layer")
            if layer is not None:
                text += f" (best layer {int(layer)}: {record['pairs'][pair][metric][int(layer)]:.3f})"
            items.append(text)
        for name, value in headline.items():
            if name.startswith(f"{pair}/") and "_mean" not in name and "best_layer" not in name:
                items.append(f"{name[len(pair) + 1 :]} {_short(value)}")
        parts.append(f"{pair} " + ", ".join(items))
    stopping = record.get("early_stopping")
    if stopping:
        parts.append(
            f"early stopping: {stopping.get('bad_measurements', 0)} bad"
            + (f", STOP ({stopping.get('reason')})" if stopping.get("should_stop") else "")
        )
    timing = record.get("timing") or {}
    seconds = [
        f"{key.replace('_seconds', '')} {value:.0f} s"
        for key, value in timing.items()
        if key in ("alignment_seconds", "likelihood_seconds", "generation_seconds", "quality_seconds")
        and _number(value)
    ]
    text = f"step {record.get('step')}: " + "; ".join(parts)
    return text + (f" [{', '.join(seconds)}]" if seconds else "")


def _short(value: float) -> str:
    """0.031 / 16.5 / 3 (counts such as copies stay integers)."""
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
