"""Where measurements go: a JSONL file (always) and Weights & Biases (when the run reports there).

Usage::

    from neuronxa_callback.loggers import JsonlLogger, WandbLogger, read_jsonl

    jsonl = JsonlLogger("out/neuronxa/metrics.jsonl", resume_step=state.global_step)  # drops records measured after it
    loggers = [jsonl]
    if WandbLogger.active():                       # the Trainer's W&B run, or pass project=... to start one
        loggers.append(WandbLogger(previous_records=jsonl.records))
    for logger in loggers:
        logger.log_measurement(record)             # record: the JSONL schema of docs/DESIGN.md
    ...
    for logger in loggers:
        logger.finish()

    records = read_jsonl("out/neuronxa/metrics.jsonl")
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

PREFIX = "neuronxa"
STEP_METRIC = "train/global_step"  # the Trainer's WandbCallback step axis; sharing it keeps one x axis per run


class JsonlFormatError(ValueError):
    """A metrics JSONL file that cannot be parsed; the message names the file and line."""


class MeasurementLogger:
    """The interface every backend implements; the defaults do nothing."""

    def log_measurement(self, record: dict) -> None:
        """Store one measurement record (docs/DESIGN.md, "JSONL record")."""

    def log_figures(self, figures: dict[str, str | Path]) -> None:
        """Attach figures (name -> PNG path)."""

    def finish(self) -> None:
        """Flush and release resources; called once at the end of training."""


def _parse_lines(path: Path, *, tolerate_truncated_tail: bool) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    # A file written by JsonlLogger ends with "\n"; a last piece without one was cut off mid-write.
    unterminated_tail = not text.endswith("\n") and text != ""
    records: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_tail = number == len(lines) and unterminated_tail
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if is_tail and tolerate_truncated_tail:
                logger.warning("%s:%d: dropping a truncated last line (the run was probably interrupted while "
                               "writing it): %s", path, number, error)
                continue
            raise JsonlFormatError(f"{path}:{number}: not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise JsonlFormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a metrics JSONL file. A truncated last line (crash mid-write) is dropped with a warning;
    any other malformed line raises JsonlFormatError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    return _parse_lines(path, tolerate_truncated_tail=True)


def _atomic_write(path: Path, records: Sequence[dict]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonlLogger(MeasurementLogger):
    """Appends one JSON line per measurement and fsyncs it, so a crash loses nothing already measured.

    Usage: ``JsonlLogger(Path(args.output_dir) / "neuronxa" / "metrics.jsonl", resume_step=state.global_step)``.

    On an existing file the records are read back (``.records``). With resume_step, records with step > resume_step
    are dropped (they were measured after the checkpoint and will be measured again) and the file is rewritten
    atomically, as it is when a truncated last line had to be dropped. Logging a step that is already in the file
    replaces that record, so the file never holds two measurements of one step.
    """

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = []
        if self.path.exists():
            raw = self.path.read_text(encoding="utf-8")
            self.records = _parse_lines(self.path, tolerate_truncated_tail=True)
            kept = self.records
            if resume_step is not None:
                kept = [r for r in self.records if not isinstance(r.get("step"), int) or r["step"] <= resume_step]
                if len(kept) < len(self.records):
                    logger.info("%s: dropping %d record(s) measured after step %d (resuming from that checkpoint)",
                                self.path, len(self.records) - len(kept), resume_step)
            rewritten = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
            self.records = kept
            if rewritten != raw:
                _atomic_write(self.path, kept)

    def log_measurement(self, record: dict) -> None:
        """Append `record`; a record for a step already in the file replaces the old one (one line per step)."""
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        step = record.get("step")
        if isinstance(step, int) and any(r.get("step") == step for r in self.records):
            logger.info("%s: replacing the record of step %d with a new measurement", self.path, step)
            # One atomic rewrite with the new record in: a crash leaves the old file or the new one, never neither.
            kept = [r for r in self.records if r.get("step") != step]
            _atomic_write(self.path, [*kept, record])
            self.records = [*kept, record]
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(record)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def flatten_record(record: dict) -> dict[str, float]:
    """Flat scalar metrics of one record, named as in docs/DESIGN.md.

    Usage: ``flatten_record(record)["neuronxa/eng_Latn-isl_Latn/nasca/layer_07"]``. None values are left out.
    """
    flat: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            flat[name] = number

    for pair, scores in (record.get("pairs") or {}).items():
        for metric in ("nasca", "navca", "mexa"):
            put(f"{PREFIX}/{pair}/{metric}_mean", scores.get(f"{metric}_mean"))
            put(f"{PREFIX}/{pair}/{metric}_pvalue", scores.get(f"{metric}_pvalue"))
            per_layer = scores.get(metric)
            if isinstance(per_layer, list):
                for layer, value in enumerate(per_layer):
                    put(f"{PREFIX}/{pair}/{metric}/layer_{layer:02d}", value)
    for pair, quality in (record.get("quality") or {}).items():
        # copy_rate / copies: hypotheses that repeated a prompt example, scored as empty (copies.py), next to the scores.
        for metric in ("chrf", "bleu", "comet", "cometkiwi", "copy_rate", "copies"):
            put(f"{PREFIX}/{pair}/{metric}", quality.get(metric))
    for pair, by_metric in (record.get("correlation") or {}).items():
        for metric, entry in by_metric.items():
            put(f"{PREFIX}/{pair}/r_{metric}", entry.get("pearson"))
            put(f"{PREFIX}/{pair}/r_{metric}_pvalue", entry.get("pearson_pvalue"))
            put(f"{PREFIX}/{pair}/rho_{metric}", entry.get("spearman"))
            put(f"{PREFIX}/{pair}/best_layer_{metric}", entry.get("best_layer"))
            put(f"{PREFIX}/{pair}/n_{metric}", entry.get("n"))
    stopping = record.get("early_stopping")
    if stopping:
        for key in ("value", "smoothed", "best", "bad_measurements"):
            put(f"{PREFIX}/early_stopping/{key}", stopping.get(key))
        flat[f"{PREFIX}/early_stopping/should_stop"] = float(bool(stopping.get("should_stop")))
    for key, value in (record.get("timing") or {}).items():
        put(f"{PREFIX}/timing/{key}", value)
    return flat


_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey", "credential")


def _without_secrets(config: dict) -> dict:
    """config minus keys that name credentials (e.g. an HF `token=` in the callback's settings), at any depth."""
    cleaned = {}
    for key, value in config.items():
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            continue
        cleaned[key] = _without_secrets(value) if isinstance(value, dict) else value
    return cleaned


class WandbLogger(MeasurementLogger):
    """Logs measurements to Weights & Biases on the Trainer's step axis.

    Usage::

        WandbLogger()                                   # inside a Trainer run with report_to="wandb"
        WandbLogger(project="neuronxa", name="demo")    # no active run: starts (and later finishes) its own

    Scalars go through ``wandb.log({..., "train/global_step": step})`` with
    ``define_metric("neuronxa/*", step_metric="train/global_step")`` -- never ``step=`` -- so measurements taken at
    steps the Trainer already logged do not trip W&B's "step must increase" check. Per measurement it also logs a
    layer x step NASCA heatmap per pair, the translations as a table, and keeps the best scores in the run summary.
    Every W&B failure is caught and logged as a warning: the JSONL file stays the complete record.
    """

    def __init__(self, *, project: str | None = None, name: str | None = None, dir: str | Path | None = None,
                 config: dict | None = None, init: bool = True, previous_records: Sequence[dict] = (),
                 heatmaps: bool = True, tables: bool = True) -> None:
        self.heatmaps = heatmaps
        self.tables = tables
        self._records: list[dict] = [r for r in previous_records if isinstance(r.get("step"), int)]
        self._best: dict[str, tuple[float, int]] = {}
        self._owns_run = False
        self._run = None
        self._figure_dir = Path(tempfile.mkdtemp(prefix="neuronxa-wandb-"))
        for record in self._records:
            self._update_best(record)
        try:
            import wandb

            self._wandb = wandb
            if wandb.run is None and init:
                self._run = wandb.init(project=project, name=name, dir=str(dir) if dir is not None else None,
                                       config=_without_secrets(config or {}))
                self._owns_run = True
            else:
                self._run = wandb.run
            if self._run is None:
                logger.warning("WandbLogger: no active wandb run and init=False; nothing will be logged to W&B")
                return
            self._run.define_metric(STEP_METRIC)
            self._run.define_metric(f"{PREFIX}/*", step_metric=STEP_METRIC)
        except Exception as error:  # W&B problems must never stop training
            logger.warning("WandbLogger: could not set up W&B (%s: %s); measurements stay in the JSONL only",
                           type(error).__name__, error)
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
        return self._run

    def _update_best(self, record: dict) -> None:
        flat = flatten_record(record)
        for pair in (record.get("pairs") or {}):
            for metric in ("nasca_mean", "navca_mean", "chrf", "bleu", "comet", "cometkiwi"):
                value = flat.get(f"{PREFIX}/{pair}/{metric}")
                key = f"{PREFIX}/{pair}/{metric}"
                if value is not None and (key not in self._best or value > self._best[key][0]):
                    self._best[key] = (value, record["step"])

    def log_measurement(self, record: dict) -> None:
        if self._run is None:
            return
        step = record.get("step")
        if not isinstance(step, int):
            logger.warning("WandbLogger: record without an int 'step' skipped")
            return
        # A resumed run re-measures steps: the newest record for a step replaces the older one.
        self._records = [r for r in self._records if r["step"] != step] + [record]
        self._records.sort(key=lambda r: r["step"])
        self._update_best(record)
        try:
            payload: dict[str, Any] = dict(flatten_record(record))
            if self.tables:
                payload.update(self._tables(record))
            if self.heatmaps:
                payload.update(self._heatmaps())
            payload[STEP_METRIC] = step
            self._run.log(payload)
            # One update, not one assignment per key: each assignment is a separate record in the run file.
            summary: dict[str, Any] = {}
            for key, (value, best_step) in self._best.items():
                summary[f"{key}_best"] = value
                summary[f"{key}_best_step"] = best_step
            self._run.summary.update(summary)
        except Exception as error:
            logger.warning("WandbLogger: logging step %s to W&B failed (%s: %s); the JSONL has it",
                           step, type(error).__name__, error)

    def _tables(self, record: dict) -> dict[str, Any]:
        tables = {}
        for pair, quality in (record.get("quality") or {}).items():
            rows = quality.get("translations") or []
            if not rows:
                continue
            table = self._wandb.Table(columns=["step", "id", "source", "hypothesis", "reference"])
            for row in rows:
                table.add_data(record["step"], str(row.get("id", "")), row.get("source", ""),
                               row.get("hypothesis", ""), row.get("reference", ""))
            tables[f"{PREFIX}/{pair}/translations"] = table
        return tables

    def _heatmaps(self) -> dict[str, Any]:
        from neuronxa_callback.plots import plot_layer_heatmap

        images = {}
        pairs = {pair for r in self._records for pair in (r.get("pairs") or {})}
        for pair in sorted(pairs):
            rows = [(r["step"], r["pairs"][pair]["nasca"]) for r in self._records
                    if isinstance((r.get("pairs") or {}).get(pair, {}).get("nasca"), list)]
            if not rows:
                continue
            path = plot_layer_heatmap([s for s, _ in rows], [v for _, v in rows],
                                      self._figure_dir / f"heatmap-{pair}.png", pair=pair)
            images[f"{PREFIX}/{pair}/nasca_heatmap"] = self._wandb.Image(str(path))
        return images

    def log_figures(self, figures: dict[str, str | Path]) -> None:
        if self._run is None or not figures:
            return
        try:
            payload: dict[str, Any] = {f"{PREFIX}/figures/{name}": self._wandb.Image(str(path))
                                       for name, path in figures.items()}
            if self._records:
                payload[STEP_METRIC] = self._records[-1]["step"]
            self._run.log(payload)
        except Exception as error:
            logger.warning("WandbLogger: logging figures failed (%s: %s)", type(error).__name__, error)

    def finish(self) -> None:
        if self._run is None:
            return
        try:
            if self._owns_run:
                self._run.finish()
        except Exception as error:
            logger.warning("WandbLogger: finishing the W&B run failed (%s: %s)", type(error).__name__, error)
        finally:
            self._run = None
