"""A sink for AlignmentMonitor that hands each measurement's headline numbers to a training framework's loggers.

Lightning's ``trainer.loggers`` and Accelerate's trackers take flat ``{name: float}`` dicts with a step. They get the
same few numbers under the same names as the Trainer's trackers (metric_names.host_scalars:
``eval/neuronxa/<pair>/nasca_mean``), on the record's step, which is the host's own optimizer-step counter. The JSONL stays the complete record; a logger that fails is a warning, never a stopped run.
"""

from __future__ import annotations

import logging
from typing import Any

from neuronxa_callback.sinks.names import host_scalars

logger = logging.getLogger("neuronxa_callback")  # the name users configure for the callback's messages


class HostScalarSink:
    """log_measurement(record) -> self.log_scalars(scalars, step) for each record with an integer step.

    A step sent again (a record completed in place) logs only the numbers that are new or changed. Subclasses
    implement log_scalars; log_figures and finish do nothing unless overridden (the report's figures
    stay under <output_dir>/neuronxa/report, and the host owns its loggers' lifetime)."""

    name = "host"
    _last: tuple[int, dict[str, float]] | None = None  # the step logged last and what was logged there

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_measurement(self, record: dict) -> None:
        step = record.get("step")
        scalars = host_scalars(record)
        if not isinstance(step, int) or not scalars:
            return
        if self._last is not None and self._last[0] == step:
            # The monitor sends a step again when it completes that record (the final quality): only what is new
            # goes out, so a CSV gets no second copy of the alignment numbers at that step.
            logged = self._last[1]
            scalars = {name: value for name, value in scalars.items() if logged.get(name) != value}
            self._last = (step, {**logged, **scalars})
        else:
            self._last = (step, dict(scalars))
        if not scalars:
            return
        try:
            self.log_scalars(scalars, step)
        except Exception as error:  # the monitor's contract: sinks never raise
            logger.warning(
                "NeuronXA: logging step %d to %s failed (%s: %s); the JSONL has it",
                step,
                self.name,
                type(error).__name__,
                error,
            )

    def log_figures(self, figures: dict[str, Any]) -> None:
        """The report's figures at the end of the run; ignored unless a subclass can show images."""

    def finish(self) -> None:
        """Called once at the end of the run."""
