"""The trackers a Trainer reports to (`TrainingArguments(report_to=...)`): what the callback sends where.

Usage (what ``NeuronXACallback.attach(trainer)`` sets up)::

    from neuronxa_callback.trackers import TrackerHub

    hub = TrackerHub(trainer, previous_records=jsonl.records)   # finds the Trainer's W&B/trackio/TensorBoard/MLflow
    hub.log_measurement(record)                                  # rank 0, once per measurement (the JSONL record)
    hub.log_figures({"heatmap/eng_Latn-isl_Latn": "heatmap.png"})  # the report's figures, before trackers close
    hub.finish()

Two routes, so no scalar is logged twice:

- **Headline scalars through the Trainer** (`trainer_scalars`): ``trainer.log({...})`` with floats only, the way
  TRL's callbacks reach every tracker. Keys start with ``eval_neuronxa/`` (the measurement evaluates the model on
  held-out pairs): the Trainer's integrations rewrite them to ``eval/neuronxa/<pair>/nasca_mean`` (W&B, trackio,
  TensorBoard) and MLflow keeps ``eval_neuronxa/...``. They land in ``trainer.state.log_history`` on the Trainer's
  step, next to (never inside) the ``loss`` entries, and the console's progress printer shows one short line.
- **Details straight to each backend that can take them** (`detail_scalars`, `TrackerSink` subclasses): the
  per-layer series ``neuronxa/<pair>/nasca/layer_07``, p-values, correlation details, timings, the layer x step
  heatmap, the translations table and the report's figures. These never go through ``trainer.log`` (they would
  flood the console and ``log_history``); each sink writes them on the same step axis the Trainer uses for that
  backend (W&B and trackio: the ``train/global_step`` field; TensorBoard and MLflow: the step argument).

Every tracker failure is a warning: the JSONL stays the complete record.
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .loggers import PREFIX, STEP_METRIC, MeasurementLogger, flatten_record

logger = logging.getLogger(__name__)

TRAINER_PREFIX = "eval_neuronxa"  # rewritten by the Trainer's integrations to "eval/neuronxa"
ALIGNMENT_METRICS = ("nasca", "navca", "mexa")
# Keys of a record's quality block that are not scores (everything else numeric is one: chrf, bleu, comet, copy rates).
_QUALITY_NON_SCORES = {"direction", "signatures", "translations", "directions"}
_EARLY_STOPPING_KEYS = ("smoothed", "best", "bad_measurements")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def headline_scalars(record: dict) -> dict[str, float]:
    """The few numbers per measurement worth a place in the Trainer's logs, keyed relative to the prefix.

    Per pair: the layer mean of each alignment metric, the best layer of the first one (index, as a float; its score
    is in the per-layer series), every quality score of the record (chrF, BLEU, COMET, CometKiwi, copy rates ...), and
    the running Pearson r against each quality metric once it exists. Early stopping: smoothed value, best, bad measurements, should_stop.
    Usage: ``headline_scalars(record)["eng_Latn-isl_Latn/nasca_mean"]``.
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
    for pair, by_metric in (record.get("correlation") or {}).items():
        for metric, entry in by_metric.items():
            put(f"{pair}/r_{metric}", (entry or {}).get("pearson"))
    stopping = record.get("early_stopping")
    if stopping:
        for key in _EARLY_STOPPING_KEYS:
            put(f"early_stopping/{key}", stopping.get(key))
        out["early_stopping/should_stop"] = float(bool(stopping.get("should_stop")))
    return out


def trainer_scalars(record: dict) -> dict[str, float]:
    """What goes through ``trainer.log``: `headline_scalars` under ``eval_neuronxa/``, floats only.

    Early stopping gets its own group, ``eval_neuronxa_early_stopping/...``: dashboards sort a group's panels by name,
    and "early_stopping/..." would otherwise come before every pair's alignment ("eng_Latn-...")."""
    return {(f"{TRAINER_PREFIX}_{name}" if name.startswith("early_stopping/") else f"{TRAINER_PREFIX}/{name}"): value
            for name, value in headline_scalars(record).items()}


def detail_scalars(record: dict) -> dict[str, float]:
    """Every other number of the record (``flatten_record``'s names, ``neuronxa/...``): per-layer series, p-values,
    correlation details, timings. Disjoint from `trainer_scalars`, so nothing is logged twice."""
    headline = set(headline_scalars(record))
    cut = len(PREFIX) + 1
    # Early stopping is all in the headline; its raw "value" is the pair's layer mean, already there.
    return {name: value for name, value in flatten_record(record).items()
            if name[cut:] not in headline and not name[cut:].startswith("early_stopping/")}


def translation_rows(record: dict) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """{pair: (columns, rows)} of the record's translations (every direction), for a table per backend."""
    columns = ["step", "direction", "id", "source", "hypothesis", "reference"]
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    for pair, quality in (record.get("quality") or {}).items():
        blocks = list((quality.get("directions") or {}).values()) or [quality]
        rows = []
        for block in blocks:
            for row in block.get("translations") or []:
                rows.append([int(record["step"]), str(block.get("direction", "")), str(row.get("id", "")),
                             str(row.get("source", "")), str(row.get("hypothesis", "")), str(row.get("reference", ""))])
        if rows:
            tables[pair] = (columns, rows)
    return tables


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
                items.append(f"{name[len(pair) + 1:]} {_short(value)}")
        parts.append(f"{pair} " + ", ".join(items))
    stopping = record.get("early_stopping")
    if stopping:
        parts.append(f"early stopping: {stopping.get('bad_measurements', 0)} bad"
                     + (f", STOP ({stopping.get('reason')})" if stopping.get("should_stop") else ""))
    timing = record.get("timing") or {}
    seconds = [f"{key.replace('_seconds', '')} {value:.0f} s" for key, value in timing.items()
               if key in ("alignment_seconds", "generation_seconds", "quality_seconds") and _number(value)]
    text = f"step {record.get('step')}: " + "; ".join(parts)
    return text + (f" [{', '.join(seconds)}]" if seconds else "")


def _short(value: float) -> str:
    """0.031 / 16.5 / 3 (counts such as copies stay integers)."""
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


# ----- one small adapter per backend -------------------------------------------------------------------------------
class TrackerSink:
    """A backend that takes the details: scalars on the Trainer's step, images (PNG paths) and tables."""

    name = "tracker"

    def log(self, step: int, scalars: dict[str, float], images: dict[str, Path],
            tables: dict[str, tuple[list[str], list[list[Any]]]]) -> None:
        raise NotImplementedError

    def log_figures(self, step: int, figures: dict[str, Path]) -> None:
        """The report's figures at the end of training (default: as images)."""
        self.log(step, {}, figures, {})


class WandbSink(TrackerSink):
    """The Trainer's W&B run (``wandb.run``), on ``train/global_step`` like WandbCallback."""

    name = "wandb"

    def __init__(self) -> None:
        import wandb

        self._wandb = wandb
        self._defined = None

    def _run(self):
        run = self._wandb.run
        if run is not None and self._defined is not run:
            # WandbCallback declares "*" on train/global_step too; this also covers a run the user started.
            run.define_metric(STEP_METRIC)
            run.define_metric(f"{PREFIX}/*", step_metric=STEP_METRIC)
            self._defined = run
        return run

    def log(self, step, scalars, images, tables):
        run = self._run()
        if run is None:
            return
        payload: dict[str, Any] = dict(scalars)
        payload.update({key: self._wandb.Image(str(path)) for key, path in images.items()})
        payload.update({key: self._wandb.Table(columns=columns, data=rows) for key, (columns, rows) in tables.items()})
        payload[STEP_METRIC] = step
        run.log(payload)


class TrackioSink(TrackerSink):
    """The Trainer's trackio run (local SQLite under $TRACKIO_DIR). Like TrackioCallback it logs without ``step=``
    and puts ``train/global_step`` in the row, so the dashboard's x-axis ``train/global_step`` lines everything up."""

    name = "trackio"

    def __init__(self) -> None:
        import trackio

        self._trackio = trackio

    def log(self, step, scalars, images, tables):
        if self._trackio.context_vars.current_run.get() is None:
            return
        if scalars:
            self._trackio.log({**scalars, STEP_METRIC: step})
        media: dict[str, Any] = {key: self._trackio.Image(str(path)) for key, path in images.items()}
        media.update({key: self._trackio.Table(columns=columns, data=rows) for key, (columns, rows) in tables.items()})
        if media:
            # The Media tab labels each image and table with the row's own step: give it the training step (a
            # counter value there would read as "Step: 11" under a heatmap of step 5). trackio then continues its
            # counter above that step; the Trainer's rows keep their train/global_step field, the x-axis to use.
            self._trackio.log({**media, STEP_METRIC: step}, step=step)


class TensorBoardSink(TrackerSink):
    """The Trainer's own SummaryWriter (TensorBoardCallback.tb_writer): the same event file, so TensorBoard shows one
    run (a second writer in that directory is often not picked up live; a subdirectory would be a second run)."""

    name = "tensorboard"

    def __init__(self, tensorboard_callback: Any) -> None:
        self._callback = tensorboard_callback

    def log(self, step, scalars, images, tables):
        writer = getattr(self._callback, "tb_writer", None)
        if writer is None:
            return
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)
        for key, path in images.items():
            writer.add_image(key, _read_png(path), step, dataformats="HWC")
        for key, (columns, rows) in tables.items():
            writer.add_text(key, _markdown_table(columns, rows), step)
        writer.flush()


class MlflowSink(TrackerSink):
    """The active MLflow run (MLflowCallback's): detail scalars with ``step=``, images and tables as run artifacts."""

    name = "mlflow"

    def __init__(self) -> None:
        import mlflow

        self._mlflow = mlflow

    def log(self, step, scalars, images, tables):
        if self._mlflow.active_run() is None:
            return
        if scalars:
            clean = {re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", key): value for key, value in scalars.items()}
            self._mlflow.log_metrics(clean, step=step)
        for key, path in images.items():
            self._mlflow.log_artifact(str(path), artifact_path=f"{key.rsplit('/', 1)[0]}/step_{step:06d}")
        for key, (columns, rows) in tables.items():
            self._mlflow.log_table({column: [row[i] for row in rows] for i, column in enumerate(columns)},
                                   artifact_file=f"{key}/step_{step:06d}.json")

    def log_figures(self, step, figures):
        if self._mlflow.active_run() is None:
            return
        for key, path in figures.items():
            self._mlflow.log_artifact(str(path), artifact_path=key.rsplit("/", 1)[0])


def _read_png(path: Path):
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    return image[..., :3]  # RGBA -> RGB, floats in [0, 1]


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


_SINK_BY_CALLBACK = {"WandbCallback": "wandb", "TrackioCallback": "trackio", "TensorBoardCallback": "tensorboard",
                     "MLflowCallback": "mlflow"}


def sinks_for(trainer: Any) -> list[TrackerSink]:
    """One sink per reporting integration the Trainer runs (W&B, trackio, TensorBoard, MLflow). Other trackers
    (comet_ml, clearml, ...) get the headline scalars through ``trainer.log`` only."""
    sinks: list[TrackerSink] = []
    for callback in getattr(getattr(trainer, "callback_handler", None), "callbacks", []):
        kind = _SINK_BY_CALLBACK.get(type(callback).__name__)
        if kind is None or any(s.name == kind for s in sinks):
            continue
        try:
            if kind == "wandb":
                sinks.append(WandbSink())
            elif kind == "trackio":
                sinks.append(TrackioSink())
            elif kind == "tensorboard":
                sinks.append(TensorBoardSink(callback))
            else:
                sinks.append(MlflowSink())
        except Exception as error:  # a tracker that cannot be imported must not stop training
            logger.warning("NeuronXA: %s details disabled (%s: %s)", kind, type(error).__name__, error)
    return sinks


class TrackerHub(MeasurementLogger):
    """Sends each measurement to every tracker of an attached Trainer (see the module docstring). Rank 0 only."""

    def __init__(self, trainer: Any, *, previous_records: Sequence[dict] = (), heatmaps: bool = True,
                 tables: bool = True, sinks: Sequence[TrackerSink] | None = None) -> None:
        self._trainer = trainer
        self.sinks = list(sinks) if sinks is not None else sinks_for(trainer)
        self.heatmaps, self.tables = heatmaps, tables
        self._records: list[dict] = [r for r in previous_records if isinstance(r.get("step"), int)]
        self._last_step: int | None = None

    def log_measurement(self, record: dict) -> None:
        step = record.get("step")
        if not isinstance(step, int):
            return
        self._records = sorted([r for r in self._records if r["step"] != step] + [record], key=lambda r: r["step"])
        self._last_step = step
        scalars = trainer_scalars(record)
        if scalars:
            self._log_through_trainer(step, scalars)
        if not self.sinks:
            return
        # Every backend copies or reads an image when it is logged, so the PNGs live only for this call.
        with tempfile.TemporaryDirectory(prefix="neuronxa-trackers-") as figure_dir:
            images = self._heatmaps(Path(figure_dir)) if self.heatmaps else {}
            tables = {f"{PREFIX}/{pair}/translations": table for pair, table in translation_rows(record).items()} \
                if self.tables else {}
            details = detail_scalars(record)
            for sink in self.sinks:
                try:
                    sink.log(step, details, images, tables)
                except Exception as error:
                    logger.warning("NeuronXA: logging step %d to %s failed (%s: %s); the JSONL has it",
                                   step, sink.name, type(error).__name__, error)

    def _log_through_trainer(self, step: int, scalars: dict[str, float]) -> None:
        """trainer.log adds "epoch" and the step to a copy in log_history and dispatches on_log to the integrations,
        which log on state.global_step (== the record's step). The Trainer's CallbackHandler.on_log also sets
        control.should_log = False: called from on_step_end at a logging step, that would silently drop the loss
        the Trainer is about to log, so the flag is put back."""
        control = getattr(self._trainer, "control", None)
        should_log = bool(getattr(control, "should_log", False))
        try:
            self._trainer.log(dict(scalars))
        except Exception as error:
            logger.warning("NeuronXA: trainer.log of step %d failed (%s: %s); the JSONL has it",
                           step, type(error).__name__, error)
        finally:
            if should_log:
                for current in {id(c): c for c in (control, getattr(self._trainer, "control", None))
                                if c is not None}.values():
                    current.should_log = True

    def _heatmaps(self, figure_dir: Path) -> dict[str, Path]:
        from .plots import plot_layer_heatmap

        images: dict[str, Path] = {}
        pairs = sorted({pair for r in self._records for pair in (r.get("pairs") or {})})
        for pair in pairs:
            for metric in ("nasca",):  # one heatmap per pair: each measurement's image holds every earlier one
                rows = [(r["step"], r["pairs"][pair][metric]) for r in self._records
                        if isinstance((r.get("pairs") or {}).get(pair, {}).get(metric), list)]
                if not rows:
                    continue
                path = plot_layer_heatmap([s for s, _ in rows], [v for _, v in rows],
                                          figure_dir / f"{metric}-heatmap-{pair}.png", pair=pair, metric=metric)
                images[f"{PREFIX}/{pair}/{metric}_heatmap"] = path
        return images

    def log_figures(self, figures: dict[str, str | Path]) -> None:
        if not figures or not self.sinks:
            return
        step = self._last_step if self._last_step is not None else int(getattr(self._trainer.state, "global_step", 0))
        # The report's heatmap is the last live heatmap again: leave it out when those were logged.
        named = {f"{PREFIX}/figures/{name}": Path(path) for name, path in figures.items()
                 if not (self.heatmaps and name.startswith("heatmap/"))}
        for sink in self.sinks:
            try:
                sink.log_figures(step, named)
            except Exception as error:
                logger.warning("NeuronXA: report figures to %s failed (%s: %s)", sink.name, type(error).__name__, error)

    def finish(self) -> None:
        """The Trainer's integrations own (and close) their runs; nothing to release here."""


# ----- attaching the callback to a Trainer ---------------------------------------------------------------------------
def _trainer_callback_base():
    from transformers.trainer_callback import TrainerCallback

    return TrainerCallback


def _is_neuronxa(callback: Any) -> bool:
    return type(callback).__name__ == "NeuronXACallback" and hasattr(callback, "_trainer")


def _make_link(trainer: Any):
    base = _trainer_callback_base()

    class TrainerLink(base):
        """Keeps every NeuronXACallback of `trainer` linked to it (also one the Trainer rebuilt from a checkpoint,
        which replaces the instance), and runs their final measurement BEFORE the reporting integrations close their
        runs at train end (TensorBoard closes its writer, trackio finishes its run, MLflow ends its run there; the
        Trainer calls callbacks in list order, and this link sits in front of the integrations)."""

        def __init__(self) -> None:
            self.trainer = trainer

        def _callbacks(self) -> list:
            return [cb for cb in self.trainer.callback_handler.callbacks if _is_neuronxa(cb)]

        def on_train_begin(self, args, state, control, **kwargs):
            for callback in self._callbacks():
                callback._trainer = self.trainer
            return control

        def on_train_end(self, args, state, control, **kwargs):
            for callback in self._callbacks():
                callback._trainer = self.trainer
                callback._finish_before_trackers_close(args, state, control, **kwargs)
            return control

    return TrainerLink()


def link_to_trainer(callback: Any, trainer: Any) -> None:
    """Add `callback` to `trainer` (if it is not there yet) and the TrainerLink in front of the integrations."""
    handler = getattr(trainer, "callback_handler", None)
    if handler is None or not hasattr(trainer, "log"):
        raise TypeError(f"attach() needs a transformers Trainer, got {type(trainer).__name__}")
    if callback not in handler.callbacks:
        trainer.add_callback(callback)
    callback._trainer = trainer
    if any(type(cb).__name__ == "TrainerLink" and getattr(cb, "trainer", None) is trainer for cb in handler.callbacks):
        return
    # In front of everything: its on_train_end must run before any integration's on_train_end.
    handler.callbacks.insert(0, _make_link(trainer))


def trackers_of(args: Any) -> list[str]:
    """The trackers in TrainingArguments.report_to (a list; "all" expanded by transformers already)."""
    report_to = getattr(args, "report_to", None) or []
    if isinstance(report_to, str):
        report_to = [report_to]
    return [name for name in report_to if name not in ("none",)]
