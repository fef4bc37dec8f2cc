"""Where the callback's records go (rank 0 only), and the interface every destination implements.

Three modules, two ideas -- the complete record and the trackers' view of it:

- ``jsonl.py``: the metrics JSONL, always (the complete record; reports and resumes read it).
- ``trackers.py``: the trackers (W&B, trackio, TensorBoard, MLflow): `trackers.TrackerHub` for an attached Trainer,
  `trackers.WandbSink` alone for W&B without one.
- ``metric_names.py``: every name a record is published under, one per number and backend.

(``tracking.py`` is a different idea: the running history and the plateau detector, not a destination.)

Usage (NeuronXACallback, rank 0)::

    jsonl, measured = open_jsonl(output_dir / "neuronxa", step)   # measured: the records kept for a resume
    wandb = open_wandb(settings, measured) if use_wandb(settings, args) else None
    ...
    log_report_figures_to([wandb, trackers], jsonl)                # at the end, before the runs close
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuronxa_callback.settings import CallbackSettings
    from neuronxa_callback.sinks.jsonl import JsonlLogger
    from neuronxa_callback.sinks.trackers import TrackerHub, WandbSink

logger = logging.getLogger("neuronxa_callback")  # the callback's logger: the name users configure


class MeasurementLogger:
    """The interface of every destination the monitor drives (the JSONL, the trackers, a host's loggers); the
    defaults do nothing. Rank 0 only; a destination never raises (failures are warnings, the JSONL has the record)."""

    def log_measurement(self, record: dict) -> None:
        """Store one measurement record (docs/DESIGN.md, "JSONL record")."""

    def log_figures(self, figures: dict[str, str | Path]) -> None:
        """Attach figures (name -> PNG path)."""

    def finish(self) -> None:
        """Flush and release resources; called once at the end of training."""


def use_wandb(settings: CallbackSettings, args: Any) -> bool:
    """report_to="auto": W&B iff the Trainer reports to it ("wandb" or "all" in args.report_to)."""
    report_to = settings.report_to
    if report_to == "auto":
        trainer_report = getattr(args, "report_to", None) or []
        if isinstance(trainer_report, str):
            trainer_report = [trainer_report]
        return "wandb" in trainer_report or "all" in trainer_report
    return report_to == "wandb"


def open_jsonl(directory: Path, step: int, *, keep_earlier: bool = True) -> tuple[JsonlLogger, list[dict]]:
    """`directory`/metrics.jsonl and its measurement records; a resumed run keeps what was measured up to its
    checkpoint. A fresh run (step 0) starts a fresh file: with `keep_earlier`, an earlier run's file is renamed
    to metrics.<its last write time>.jsonl first (and said so), never overwritten."""
    from neuronxa_callback.sinks.jsonl import JsonlLogger

    path = Path(directory) / "metrics.jsonl"
    if step == 0 and keep_earlier:
        _keep_earlier_run(path)
    jsonl = JsonlLogger(path, resume_step=step if step > 0 else -1)
    measured = [r for r in jsonl.records if r.get("event", "measurement") == "measurement"]
    return jsonl, measured


def _keep_earlier_run(path: Path) -> None:
    """Move an earlier run's non-empty metrics.jsonl aside (metrics.<UTC time of its last write>.jsonl)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    number = 1
    while kept.exists():
        number += 1
        kept = path.with_name(f"{path.stem}.{stamp}-{number}{path.suffix}")
    path.rename(kept)
    logger.warning(
        "NeuronXACallback: %s held an earlier run's records; kept them as %s (this run starts a new "
        "file; resume from a checkpoint to continue a run)",
        path,
        kept.name,
    )


def run_summary(
    directory: Path,
    jsonl: JsonlLogger | None,
    *,
    step: int,
    measured: int,
    failures: list[str],
    stop_reason: str | None,
) -> dict:
    """What the run measured, written to `directory`/summary.json (best effort) and returned."""
    path = Path(directory) / "metrics.jsonl"
    summary = {
        "measured": measured,
        "measured_nothing": measured == 0,
        "steps": [r["step"] for r in jsonl.records if r.get("event", "measurement") == "measurement"] if jsonl else [],
        "last_step": int(step),
        "failures": list(failures),
        "stop_reason": stop_reason,
        "metrics_file": str(path),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "summary.json").write_text(
            json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    except OSError as error:
        logger.warning("NeuronXACallback: could not write the run summary next to %s (%s)", path, error)
    return summary


def open_wandb(settings: CallbackSettings, measured: list[dict]) -> WandbSink:
    """W&B without an attached Trainer: the active run (the Trainer's, report_to="wandb"), else a run of its own.
    It logs the headline itself, under the names the Trainer's W&B integration gives it when attached."""
    from neuronxa_callback.sinks.trackers import WandbSink

    return WandbSink(project=settings.wandb_project, config={"neuronxa": settings.to_json()}, previous_records=measured)


# ----- the Trainer's trackers (NeuronXACallback.attach(trainer)); see trackers.py ----------------------------------------
def open_trackers(settings: CallbackSettings, trainer: Any, measured: list[dict]) -> TrackerHub | None:
    """A trackers.TrackerHub for an attached Trainer (None when the callback's report_to is "none"): headline scalars
    through trainer.log, details and media to each backend of report_to. Out of band (a record arrives steps after
    the step it measured) each backend's sink writes the headline too, on the measured step."""
    if settings.report_to == "none":
        return None
    from neuronxa_callback.sinks.trackers import TrackerHub

    return TrackerHub(trainer, previous_records=measured, on_measured_step=settings.measure_in != "process")


def wandb_besides_trackers(settings: CallbackSettings, args: Any, attached: bool) -> bool:
    """Whether the callback needs a W&B sink of its own: when W&B is asked for and no attached Trainer logs to it."""
    from neuronxa_callback.sinks.trackers import trackers_of

    return use_wandb(settings, args) and not (attached and "wandb" in trackers_of(args))


def hint_attach(args: Any, attached: bool) -> None:
    """Say once per run, when the Trainer reports to trackers the unattached callback cannot reach, how to reach them."""
    from neuronxa_callback.sinks.trackers import trackers_of

    missed = [name for name in trackers_of(args) if name != "wandb"]
    if attached or not missed:
        return
    logger.info(
        "NeuronXACallback: the Trainer reports to %s, which only see the alignment when the callback is "
        "attached: call callback.attach(trainer) (now it goes to the JSONL%s only)",
        ", ".join(missed),
        " and W&B" if "wandb" in trackers_of(args) else "",
    )


def log_report_figures_to(loggers: list[Any], jsonl: JsonlLogger | None) -> None:
    """The report's figures (written once) to each logger that is not None, before the runs close."""
    loggers = [item for item in loggers if item is not None]
    if not loggers or jsonl is None:
        return
    from neuronxa_callback.offline.report import write_report

    try:
        written = write_report(jsonl.path)
    except Exception as error:  # figures are a convenience: the JSONL already holds everything
        logger.warning("NeuronXACallback: report figures for the trackers failed (%s: %s)", type(error).__name__, error)
        return
    figures = {name: path for name, path in written.items() if str(path).endswith(".png")}
    for item in loggers:
        item.log_figures(figures)
