"""Old home of the JSONL and W&B classes, kept so that ``from neuronxa_callback.loggers import ...`` keeps working.

New code imports from where things live now:

- ``neuronxa_callback.jsonl``: `JsonlLogger`, `read_jsonl`, `JsonlFormatError` (the metrics JSONL);
- ``neuronxa_callback.trackers``: `WandbSink` (W&B, attached to a Trainer or not; `WandbLogger` is its old name);
- ``neuronxa_callback.metric_names``: `flatten_record`, `PREFIX`, `STEP_METRIC` and every other published name.
"""
from __future__ import annotations

from ._sinks import MeasurementLogger
from .jsonl import JsonlFormatError, JsonlLogger, read_jsonl
from .metric_names import PREFIX, STEP_METRIC, flatten_record
from .trackers import WandbLogger, WandbSink

__all__ = ["JsonlFormatError", "JsonlLogger", "MeasurementLogger", "PREFIX", "STEP_METRIC", "WandbLogger", "WandbSink",
           "flatten_record", "read_jsonl"]
