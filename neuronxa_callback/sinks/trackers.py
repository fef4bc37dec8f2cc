"""The trackers a run reports to (W&B, trackio, TensorBoard, MLflow): one adapter per backend, and what sends each
measurement to them. Which name each number gets is decided in metric_names.py (the table is there).

Usage, attached (what ``NeuronXACallback.attach(trainer)`` sets up)::

    from neuronxa_callback.sinks.trackers import TrackerHub

    hub = TrackerHub(trainer, previous_records=jsonl.records)   # finds the Trainer's W&B/trackio/TensorBoard/MLflow
    hub.log_measurement(record)                                  # rank 0, once per measurement (the JSONL record)
    hub.log_figures({"trend/eng_Latn-isl_Latn": "trend.png"})    # the report's figures, before trackers close
    hub.finish()

Usage, W&B without a Trainer to log through (``callbacks=[callback]`` with ``report_to="wandb"``, or any loop)::

    from neuronxa_callback.sinks.trackers import WandbSink              # also exported as neuronxa_callback.WandbLogger

    sink = WandbSink(project="neuronxa")   # the active run (e.g. the Trainer's), else a run of its own
    sink.log_measurement(record)
    sink.finish()                          # finishes only a run it started

Two routes, so that every number has one name per backend whether the callback is attached or not:

- **The headline** (`metric_names.headline_scalars`: layer means, best layer, quality scores, running r, early
  stopping). Attached: ``trainer.log(trainer_scalars(record))``, floats only, the way TRL's callbacks reach every
  tracker: ``eval_neuronxa/<pair>/nasca_mean``, which the Trainer's integrations show as
  ``eval/neuronxa/<pair>/nasca_mean`` (W&B, trackio, TensorBoard) and MLflow keeps as it is; it lands in
  ``trainer.state.log_history`` on the Trainer's step, next to (never inside) the ``loss`` entries, and the console's
  progress printer shows one short line. Not attached (no ``trainer.log`` to go through), and out of band
  (``measure_in="worker"``/``"ray"``: a record arrives steps after the step it measured, and ``trainer.log`` would
  put it on the Trainer's current step): each sink writes the headline itself, on the record's step, under the name
  its Trainer integration would have given it (`metric_names.headline_for`).
- **Details and media straight to each backend** (`metric_names.detail_scalars`, `TrackerSink` subclasses): the
  per-layer series ``neuronxa/<pair>/nasca/layer_07``, p-values, correlation details, timings, the layer x step
  heatmap, the translations table and the report's figures. These never go through ``trainer.log`` (they would
  flood the console and ``log_history``); each sink writes them on the same step axis the Trainer uses for that
  backend (W&B and trackio: the ``train/global_step`` field; TensorBoard and MLflow: the step argument).

Every tracker failure is a warning: the JSONL stays the complete record.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Made in metric_names.py; importable from here too (monitor.py takes summary_line from here, hosts headline_scalars).
from neuronxa_callback.sinks.names import (  # noqa: F401
    HEADLINE_GROUPS,
    PREFIX,
    STEP_METRIC,
    backend_key,
    best_values,
    detail_scalars,
    figure_key,
    flatten_record,
    headline_for,
    headline_scalars,
    heatmap_key,
    summary_line,
    trainer_scalars,
    translation_rows,
    translations_key,
)
from neuronxa_callback.sinks.routing import MeasurementLogger

logger = logging.getLogger(__name__)

Tables = dict[str, tuple[list[str], list[list[Any]]]]


# ----- one small adapter per backend -------------------------------------------------------------------------------
class TrackerSink:
    """A backend: scalars on the Trainer's step, images (PNG paths) and tables. A `TrackerHub` (or, for W&B alone,
    the sink itself) decides what goes in; the sink only writes it."""

    name = "tracker"  # the backend, as metric_names.backend_key knows it
    label = ""  # how warnings name it (default: name)

    def log(self, step: int, scalars: dict[str, float], images: dict[str, Path], tables: Tables) -> None:
        raise NotImplementedError

    def log_report_figures(self, step: int | None, figures: dict[str, Path]) -> None:
        """The report's figures at the end of training (default: as images)."""
        self.log(step or 0, {}, figures, {})

    def summarize(self, records: Sequence[dict]) -> None:
        """After each measurement, with every record so far: a run summary where the backend has one (W&B)."""

    def finish(self) -> None:
        """At the end of the run. The Trainer's integrations own (and close) their runs: nothing by default."""


def _label(sink: Any) -> str:
    return getattr(sink, "label", "") or getattr(sink, "name", type(sink).__name__)


class _Measured:
    """The records measured so far, the newest one per step (a heatmap shows them all), and what each becomes."""

    def __init__(self, previous_records: Sequence[dict] = ()) -> None:
        self.records: list[dict] = sorted(
            (r for r in previous_records if isinstance(r.get("step"), int)), key=lambda r: r["step"]
        )
        self.last_added: int | None = None

    @property
    def last_step(self) -> int | None:
        return self.last_added if self.last_added is not None else (self.records[-1]["step"] if self.records else None)

    def add(self, record: dict) -> None:
        step = record["step"]
        # A resumed run re-measures steps: the newest record for a step replaces the older one.
        self.records = sorted([r for r in self.records if r["step"] != step] + [record], key=lambda r: r["step"])
        self.last_added = step

    def heatmaps(self, figure_dir: Path) -> dict[str, Path]:
        from neuronxa_callback.sinks.figures import plot_layer_heatmap

        images: dict[str, Path] = {}
        pairs = sorted({pair for r in self.records for pair in (r.get("pairs") or {})})
        for pair in pairs:
            for metric in ("nasca",):  # one heatmap per pair: each measurement's image holds every earlier one
                rows = [
                    (r["step"], r["pairs"][pair][metric])
                    for r in self.records
                    if isinstance((r.get("pairs") or {}).get(pair, {}).get(metric), list)
                ]
                if not rows:
                    continue
                path = plot_layer_heatmap(
                    [s for s, _ in rows],
                    [v for _, v in rows],
                    figure_dir / f"{metric}-heatmap-{pair}.png",
                    pair=pair,
                    metric=metric,
                )
                images[heatmap_key(pair, metric)] = path
        return images

    def publish(
        self, record: dict, sinks: Sequence[TrackerSink], *, headline: bool, heatmaps: bool, tables: bool
    ) -> None:
        """`record` (already added) to each sink: its details, media and, with `headline` (no trainer.log delivers
        it), the headline under the sink's backend names. A failing sink is a warning; the others still get it."""
        step = record["step"]
        # Every backend copies or reads an image when it is logged, so the PNGs live only for this call.
        with tempfile.TemporaryDirectory(prefix="neuronxa-trackers-") as figure_dir:
            images: dict[str, Path] = {}
            if heatmaps:
                try:
                    images = self.heatmaps(Path(figure_dir))
                except Exception as error:  # a figure is a convenience: the numbers still go out
                    logger.warning(
                        "NeuronXA: the heatmap of step %d failed (%s: %s)", step, type(error).__name__, error
                    )
            try:
                table_map = (
                    {translations_key(pair): table for pair, table in translation_rows(record).items()}
                    if tables
                    else {}
                )
                details = detail_scalars(record)
            except Exception as error:  # a malformed record: the JSONL has it as it is
                logger.warning("NeuronXA: step %d not sent to the trackers (%s: %s)", step, type(error).__name__, error)
                return
            for sink in sinks:
                try:
                    scalars = {**headline_for(record, sink.name), **details} if headline else details
                    sink.log(step, scalars, images, table_map)
                    sink.summarize(self.records)
                except Exception as error:
                    logger.warning(
                        "NeuronXA: logging step %d to %s failed (%s: %s); the JSONL has it",
                        step,
                        _label(sink),
                        type(error).__name__,
                        error,
                    )


def _report_figures(figures: dict[str, str | Path], heatmaps: bool) -> dict[str, Path]:
    """The report's figures under their names; its heatmap is the last live heatmap again: left out when those
    were logged."""
    return {
        figure_key(name): Path(path) for name, path in figures.items() if not (heatmaps and name.startswith("heatmap/"))
    }


def _send_figures(sinks: Sequence[TrackerSink], step: int | None, figures: dict[str, Path]) -> None:
    for sink in sinks:
        try:
            sink.log_report_figures(step, figures)
        except Exception as error:
            logger.warning("NeuronXA: report figures to %s failed (%s: %s)", _label(sink), type(error).__name__, error)


_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey", "credential")


def _without_secrets(config: dict) -> dict:
    """config minus keys that name credentials (e.g. an HF `token=` in the callback's settings), at any depth."""
    cleaned = {}
    for key, value in config.items():
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            continue
        cleaned[key] = _without_secrets(value) if isinstance(value, dict) else value
    return cleaned


class WandbSink(TrackerSink, MeasurementLogger):
    """Weights & Biases, attached to a Trainer or not: the package's one W&B implementation. ``WandbLogger`` (the
    name ``neuronxa_callback`` exports) is this class under its old name.

    Usage::

        WandbSink()                                  # inside a run with report_to="wandb": joins the active run
        WandbSink(project="neuronxa", name="demo")   # no active run: starts (and later finishes) its own
        WandbSink(follow_active_run=True)            # what a TrackerHub uses: whichever run is active when it logs

    On its own (``log_measurement``) it logs per measurement the headline under the names the Trainer's W&B
    integration gives it (``eval/neuronxa/<pair>/nasca_mean``: the same series as when the callback is attached),
    the details (``neuronxa/<pair>/nasca/layer_07`` ...), a layer x step NASCA heatmap per pair and the translations
    as a table. Driven by a TrackerHub (``log``) it gets the details and media only: ``trainer.log`` delivers the
    headline. Either way the run summary keeps the best headline values (``eval/neuronxa/<pair>/nasca_mean_best``,
    ``..._best_step``). Everything goes through ``run.log({..., "train/global_step": step})`` with
    ``define_metric(..., step_metric="train/global_step")`` -- never ``step=`` -- so measurements taken at steps the
    Trainer already logged do not trip W&B's "step must increase" check. Every W&B failure is a warning: the JSONL
    stays the complete record.
    """

    name = "wandb"
    label = "W&B"

    def __init__(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        dir: str | Path | None = None,
        config: dict | None = None,
        init: bool = True,
        previous_records: Sequence[dict] = (),
        heatmaps: bool = True,
        tables: bool = True,
        follow_active_run: bool = False,
    ) -> None:
        self.heatmaps, self.tables = heatmaps, tables
        self._measured = _Measured(previous_records)
        self._run = None
        self._owns_run = False
        self._follow = follow_active_run
        self._defined = None
        self._wandb = None
        if follow_active_run:
            import wandb  # an ImportError here tells TrackerHub that W&B is not available

            self._wandb = wandb
            return
        try:
            import wandb

            self._wandb = wandb
            if wandb.run is None and init:
                self._run = wandb.init(
                    project=project,
                    name=name,
                    dir=str(dir) if dir is not None else None,
                    config=_without_secrets(config or {}),
                )
                self._owns_run = True
            else:
                self._run = wandb.run
            if self._run is None:
                logger.warning("NeuronXA: no active wandb run and init=False; nothing will be logged to W&B")
                return
            self._define(self._run)
        except Exception as error:  # W&B problems must never stop training
            logger.warning(
                "NeuronXA: could not set up W&B (%s: %s); measurements stay in the JSONL only",
                type(error).__name__,
                error,
            )
            self._run = None

    @staticmethod
    def active() -> bool:
        """True when a W&B run is active in this process (e.g. started by the Trainer's WandbCallback)."""
        try:
            import wandb
        except ImportError:
            return False
        return wandb.run is not None

    @property
    def run(self):
        """The run this sink logs to (None when there is none)."""
        return self._current_run()

    def _current_run(self):
        if self._wandb is None:
            return None
        run = self._wandb.run if self._follow else self._run
        if run is not None and self._defined is not run:
            self._define(run)
        return run

    def _define(self, run) -> None:
        """Every series of ours on the Trainer's step axis (WandbCallback declares "*" on it too; this also covers
        a run the user or this sink started)."""
        self._defined = run
        try:
            run.define_metric(STEP_METRIC)
            for group in (f"{PREFIX}/", *HEADLINE_GROUPS):
                run.define_metric(backend_key(group, self.name) + "*", step_metric=STEP_METRIC)
        except Exception as error:
            logger.warning("NeuronXA: W&B step axis not declared (%s: %s)", type(error).__name__, error)

    # ----- as a TrackerSink: a TrackerHub (or log_measurement below) decides what goes in ------------------------
    def log(self, step, scalars, images, tables):
        run = self._current_run()
        if run is None:
            return
        payload: dict[str, Any] = dict(scalars)
        payload.update({key: self._wandb.Image(str(path)) for key, path in images.items()})
        payload.update({key: self._wandb.Table(columns=columns, data=rows) for key, (columns, rows) in tables.items()})
        payload[STEP_METRIC] = step
        run.log(payload)

    def summarize(self, records):
        run = self._current_run()
        best = best_values(records, self.name) if run is not None else {}
        if best:
            # One update, not one assignment per key: each assignment is a separate record in the run file.
            run.summary.update(best)

    def log_report_figures(self, step, figures):
        run = self._current_run()
        if run is None or not figures:
            return
        payload: dict[str, Any] = {key: self._wandb.Image(str(path)) for key, path in figures.items()}
        if step is not None:
            payload[STEP_METRIC] = step
        run.log(payload)

    # ----- as a MeasurementLogger on its own (no Trainer to log the headline through) ----------------------------
    def log_measurement(self, record: dict) -> None:
        if self._current_run() is None:
            return
        if not isinstance(record.get("step"), int):
            logger.warning("NeuronXA: record without an int 'step' not logged to W&B")
            return
        self._measured.add(record)
        self._measured.publish(record, [self], headline=True, heatmaps=self.heatmaps, tables=self.tables)

    def log_figures(self, figures: dict[str, str | Path]) -> None:
        if figures and self._current_run() is not None:
            _send_figures([self], self._measured.last_step, _report_figures(figures, self.heatmaps))

    def finish(self) -> None:
        """Finishes the run if this sink started it; a run it joined (the Trainer's) is left open."""
        if self._follow or self._run is None:
            return
        try:
            if self._owns_run:
                self._run.finish()
        except Exception as error:
            logger.warning("NeuronXA: finishing the W&B run failed (%s: %s)", type(error).__name__, error)
        finally:
            self._run = None
            self._owns_run = False


WandbLogger = WandbSink  # the old name, exported by neuronxa_callback; the same class


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
    label = "TensorBoard"

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
    """The active MLflow run (MLflowCallback's): scalars with ``step=``, images and tables as run artifacts."""

    name = "mlflow"
    label = "MLflow"

    def __init__(self) -> None:
        import mlflow

        self._mlflow = mlflow

    def log(self, step, scalars, images, tables):
        if self._mlflow.active_run() is None:
            return
        if scalars:
            self._mlflow.log_metrics({backend_key(key, self.name): value for key, value in scalars.items()}, step=step)
        for key, path in images.items():
            self._mlflow.log_artifact(str(path), artifact_path=f"{key.rsplit('/', 1)[0]}/step_{step:06d}")
        for key, (columns, rows) in tables.items():
            self._mlflow.log_table(
                {column: [row[i] for row in rows] for i, column in enumerate(columns)},
                artifact_file=f"{key}/step_{step:06d}.json",
            )

    def log_report_figures(self, step, figures):
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


_SINK_BY_CALLBACK = {
    "WandbCallback": "wandb",
    "TrackioCallback": "trackio",
    "TensorBoardCallback": "tensorboard",
    "MLflowCallback": "mlflow",
}


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
                sinks.append(WandbSink(follow_active_run=True))
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
    """Sends each measurement to every tracker of a Trainer (see the module docstring). Rank 0 only.

    With ``trainer=None`` (and explicit `sinks`) there is no ``trainer.log``: each sink then also gets the headline,
    under the names its Trainer integration would have given it. So it does with ``on_measured_step=True``
    (out-of-band measurement, whose records arrive steps after the step they measured): ``trainer.log`` would put
    the headline on the Trainer's current step, each sink puts it on the record's own step. Trackers without a sink
    here (comet_ml, clearml, ...) then get nothing (said once), nor does ``trainer.state.log_history``."""

    def __init__(
        self,
        trainer: Any,
        *,
        previous_records: Sequence[dict] = (),
        heatmaps: bool = True,
        tables: bool = True,
        sinks: Sequence[TrackerSink] | None = None,
        on_measured_step: bool = False,
    ) -> None:
        self._trainer = trainer
        self.sinks = list(sinks) if sinks is not None else sinks_for(trainer)
        self.heatmaps, self.tables = heatmaps, tables
        self._measured = _Measured(previous_records)
        self._through_trainer = trainer is not None and not on_measured_step
        if trainer is not None and on_measured_step:
            covered = {sink.name for sink in self.sinks}
            missed = [name for name in trackers_of(getattr(trainer, "args", None)) if name not in covered]
            if missed:
                logger.warning(
                    "NeuronXA: measured out of band, the alignment goes to W&B, trackio, TensorBoard and MLflow on "
                    "the measured step; %s get(s) none of it (the JSONL has every record)",
                    ", ".join(missed),
                )

    def log_measurement(self, record: dict) -> None:
        step = record.get("step")
        if not isinstance(step, int):
            return
        self._measured.add(record)
        if self._through_trainer:
            scalars = trainer_scalars(record)
            if scalars:
                self._log_through_trainer(step, scalars)
        if self.sinks:
            self._measured.publish(
                record, self.sinks, headline=not self._through_trainer, heatmaps=self.heatmaps, tables=self.tables
            )

    def _log_through_trainer(self, step: int, scalars: dict[str, float]) -> None:
        """trainer.log adds "epoch" and the step to a copy in log_history and dispatches on_log to the integrations,
        which log on state.global_step (== the record's step). The Trainer's CallbackHandler.on_log also sets
        control.should_log = False: called from on_step_end at a logging step, that would silently drop the loss
        the Trainer is about to log, so the flag is put back."""
        control = getattr(self._trainer, "control", None)
        should_log = bool(getattr(control, "should_log", False))
        # TRL's trainers average their own train metrics (entropy, mean_token_accuracy, ...) in `_metrics` and merge
        # them into whichever log() call comes next, then clear them: held back here, they stay with the loss entry.
        pending = getattr(self._trainer, "_metrics", None)
        held = (
            {mode: dict(values) for mode, values in pending.items() if isinstance(values, dict)}
            if isinstance(pending, dict)
            else {}
        )
        for mode in held:
            pending[mode].clear()
        try:
            self._trainer.log(dict(scalars))
        except Exception as error:
            logger.warning(
                "NeuronXA: trainer.log of step %d failed (%s: %s); the JSONL has it", step, type(error).__name__, error
            )
        finally:
            for mode, values in held.items():
                pending[mode].update(values)
            if should_log:
                for current in {
                    id(c): c for c in (control, getattr(self._trainer, "control", None)) if c is not None
                }.values():
                    current.should_log = True

    def log_figures(self, figures: dict[str, str | Path]) -> None:
        if not figures or not self.sinks:
            return
        step = self._measured.last_added
        if step is None:
            step = int(getattr(getattr(self._trainer, "state", None), "global_step", 0) or 0)
        _send_figures(self.sinks, step, _report_figures(figures, self.heatmaps))

    def finish(self) -> None:
        """The Trainer's integrations own (and close) their runs; a sink that started a run of its own closes it."""
        for sink in self.sinks:
            try:
                sink.finish()
            except Exception as error:
                logger.warning("NeuronXA: closing %s failed (%s: %s)", _label(sink), type(error).__name__, error)


# ----- attaching the callback to a Trainer ---------------------------------------------------------------------------
def _trainer_callback_base():
    from transformers.trainer_callback import TrainerCallback

    return TrainerCallback


def _is_neuronxa(callback: Any) -> bool:
    # isinstance, not the class name: a user's subclass must stay linked too. Imported here because hosts/trainer.py
    # imports this module.
    from neuronxa_callback.hosts.trainer import NeuronXACallback

    return isinstance(callback, NeuronXACallback)


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
