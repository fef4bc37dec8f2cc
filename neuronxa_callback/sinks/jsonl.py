"""The metrics JSONL: one complete record per measurement, written so that a crash loses nothing already measured.

Usage::

    from neuronxa_callback.sinks.jsonl import JsonlLogger, read_jsonl

    jsonl = JsonlLogger("out/neuronxa/metrics.jsonl", resume_step=state.global_step)  # drops records measured after it
    jsonl.log_measurement(record)                  # record: the JSONL schema of docs/DESIGN.md
    records = read_jsonl("out/neuronxa/metrics.jsonl")

The trackers (W&B, trackio, TensorBoard, MLflow) get a few names per record instead (trackers.py, metric_names.py);
this file is the complete record, and the one every report and resume reads.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from neuronxa_callback.sinks.routing import MeasurementLogger

logger = logging.getLogger(__name__)

__all__ = ["JsonlFormatError", "JsonlLogger", "read_jsonl"]


class JsonlFormatError(ValueError):
    """A metrics JSONL file that cannot be parsed; the message names the file and line."""


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
                logger.warning(
                    "%s:%d: dropping a truncated last line (the run was probably interrupted while writing it): %s",
                    path,
                    number,
                    error,
                )
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
                    logger.info(
                        "%s: dropping %d record(s) measured after step %d (resuming from that checkpoint)",
                        self.path,
                        len(self.records) - len(kept),
                        resume_step,
                    )
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
