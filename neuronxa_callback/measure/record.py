"""The measurement record (one JSONL line, docs/DESIGN.md "JSONL record") and what is derived from records:
the Trainer's eval_neuronxa_* metrics, the running history, the plateau detector, and both rebuilt on resume.

Usage (rank 0)::

    record = build_record(trigger, step, epoch, report.to_dict(), quality, measurement_index=index)
    record["correlation"] = add_to_history(history, record, settings)
    metrics = eval_metrics(record["pairs"])            # {"eval_neuronxa_nasca": ..., ...}
    history, plateau = rebuild_from_records(jsonl.records, settings)   # resume without callback state
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuronxa_callback.data.loaders import ParallelSet
    from neuronxa_callback.measure.history import Decision, MeasurementHistory, PlateauDetector
    from neuronxa_callback.settings import CallbackSettings

SCHEMA_VERSION = 1
EVAL_PREFIX = "eval_neuronxa"


def new_history() -> MeasurementHistory:
    from neuronxa_callback.measure.history import MeasurementHistory

    return MeasurementHistory()


def new_plateau(settings: CallbackSettings) -> PlateauDetector | None:
    """The early-stopping detector the settings ask for, or None when early stopping is off."""
    if settings.early_stopping_patience is None:
        return None
    from neuronxa_callback.measure.history import PlateauDetector

    return PlateauDetector(
        patience=settings.early_stopping_patience,
        min_delta=settings.early_stopping_min_delta,
        smoothing=settings.early_stopping_smoothing,
        smoothing_factor=settings.early_stopping_factor,
        window=settings.early_stopping_window,
        min_steps=settings.early_stopping_min_steps,
        criterion=settings.early_stopping_criterion,
        alpha=settings.early_stopping_alpha,
    )


def build_record(
    trigger: str,
    step: int,
    epoch: float | None,
    report_dict: dict,
    quality: dict | None,
    *,
    measurement_index: int,
    likelihood: dict | None = None,
) -> dict:
    """The record's head: schema, step, trigger, time, index, pairs, (when translated) quality and (whenever quality
    is on: every measurement) the reference likelihood."""
    record = {
        "schema": SCHEMA_VERSION,
        "event": "measurement",
        "step": int(step),
        "epoch": epoch,
        "trigger": trigger,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "measurement_index": measurement_index,
        "pairs": report_dict["pairs"],
    }
    if quality is not None:
        record["quality"] = quality
    if likelihood is not None:
        record["likelihood"] = likelihood
    return record


def quality_scores(record: dict, metrics: tuple[str, ...] | None = None) -> dict[str, dict[str, float | None]]:
    """{pair: {metric: value}} of a record's quality metrics (history.QUALITY_METRICS by default): the translation
    scores of its "quality" section (present when it translated) and the reference likelihood of its "likelihood"
    section (present at every measurement while quality is on). What the history correlates and reports plot."""
    from neuronxa_callback.measure.history import QUALITY_METRICS

    metrics = QUALITY_METRICS if metrics is None else metrics
    out: dict[str, dict[str, float | None]] = {}
    for section in ("quality", "likelihood"):
        for pair, scores in (record.get(section) or {}).items():
            row = out.setdefault(pair, {m: None for m in metrics})
            for metric in metrics:
                if (scores or {}).get(metric) is not None:
                    row[metric] = scores[metric]
    return out


def measurement_record(
    trigger: str,
    step: int,
    epoch: float | None,
    *,
    index: int,
    report_dict: dict,
    quality: dict | None,
    timing: dict[str, float],
    settings: CallbackSettings,
    data: ParallelSet,
    history: MeasurementHistory,
    plateau: PlateauDetector | None = None,
    likelihood: dict | None = None,
) -> tuple[dict, Decision | None]:
    """The one way a measurement becomes a record (the callback, the monitor, checkpoint scoring): head, running
    correlations (the measurement joins `history`), the paired changes against the history's baseline and previous
    measurement ("change", see MeasurementHistory.changes), the plateau detector's decision when there is one, and
    the tail. Returns (record, the detector's decision or None)."""
    record = build_record(trigger, step, epoch, report_dict, quality, measurement_index=index, likelihood=likelihood)
    record["correlation"] = add_to_history(history, record, settings)
    change = history.changes(int(step))
    if change:
        record["change"] = change
    decision = None
    if plateau is not None:
        pair = settings.early_stopping_pair or next(iter(report_dict["pairs"]))
        decision = plateau.update(step, stop_value(record, settings), stop_sentences(history, record, settings))
        record["early_stopping"] = {"metric": settings.early_stopping_metric, "pair": pair, **decision.to_dict()}
    finish_record(record, report_dict, timing, settings, data)
    return record, decision


def finish_record(
    record: dict, report_dict: dict, timing: dict[str, float], settings: CallbackSettings, data: ParallelSet
) -> dict:
    """The record's tail: timing, the settings and the data it was measured with."""
    record["timing"] = {**timing, "alignment_forward_seconds": report_dict.get("timing", {}).get("forward_seconds")}
    record["settings"] = settings.to_json()
    record["data"] = {"origin": data.origin, "ids": list(data.ids)}
    return record


def stop_value(record: dict, settings: CallbackSettings) -> float | None:
    """The early-stopping metric's layer mean for the early-stopping pair (default: the first pair)."""
    pairs = record.get("pairs") or {}
    if not pairs:
        return None
    pair = settings.early_stopping_pair or next(iter(pairs))
    value = (pairs.get(pair) or {}).get(f"{settings.early_stopping_metric}_mean")
    return float(value) if value is not None else None


def stop_sentences(history: MeasurementHistory, record: dict, settings: CallbackSettings) -> list[float] | None:
    """The early-stopping metric's per-sentence layer means for the early-stopping pair (the paired test's input)."""
    pairs = record.get("pairs") or {}
    if not pairs:
        return None
    pair = settings.early_stopping_pair or next(iter(pairs))
    return history.sentence_scores(int(record["step"]), pair, settings.early_stopping_metric)


def add_to_history(
    history: MeasurementHistory, record: dict, settings: CallbackSettings | None = None, *, metric: str | None = None
) -> dict:
    """Add one JSONL record to the history and return the running correlations (the record's "correlation").
    The alignment series is `metric`'s layer mean (default: NASCA when NAS is measured, else NAVCA)."""
    if metric is None:
        metric = "nasca" if settings is None or "nas" in settings.representations else "navca"
    pairs = record.get("pairs") or {}
    means = {
        pair: scores[f"{metric}_mean"] for pair, scores in pairs.items() if scores.get(f"{metric}_mean") is not None
    }
    per_layer = {pair: scores[metric] for pair, scores in pairs.items() if pair in means}
    quality = quality_scores(record)
    # Every metric's per-sentence verdicts, not only the series metric: "change" tests each of them.
    aligned = {pair: scores["aligned"] for pair, scores in pairs.items() if scores.get("aligned")}
    if not means:
        return {}
    return history.append(int(record["step"]), means, per_layer, quality or None, aligned=aligned or None)


def history_from_records(records: list[dict], metric: str = "nasca") -> MeasurementHistory:
    """The running history of a run's records (for a report or a resume without the callback's state)."""
    history = new_history()
    for record in records:
        add_to_history(history, record, metric=metric)
    return history


def rebuild_from_records(
    records: list[dict], settings: CallbackSettings
) -> tuple[MeasurementHistory, PlateauDetector | None]:
    """History and plateau detector as they were after `records` (a fresh callback resuming from the JSONL)."""
    history, plateau = new_history(), new_plateau(settings)
    for record in records:
        add_to_history(history, record, settings)
        decision_value = stop_value(record, settings)
        if plateau is not None and decision_value is not None:
            plateau.update(record["step"], decision_value, stop_sentences(history, record, settings))
    return history, plateau


def eval_metrics(pairs: dict[str, dict]) -> dict[str, float]:
    """eval_neuronxa_nasca (mean over pairs of the layer mean), eval_neuronxa_navca, eval_neuronxa_<pair>_nasca."""
    metrics: dict[str, float] = {}
    for metric in ("nasca", "navca"):
        values = [scores[f"{metric}_mean"] for scores in pairs.values() if scores.get(f"{metric}_mean") is not None]
        if values:
            metrics[f"{EVAL_PREFIX}_{metric}"] = float(sum(values) / len(values))
        for pair, scores in pairs.items():
            if scores.get(f"{metric}_mean") is not None:
                metrics[f"{EVAL_PREFIX}_{pair}_{metric}"] = float(scores[f"{metric}_mean"])
    return metrics
