"""AlignmentMonitor: NeuronXA measurements during training, for any training loop.

One object owns what a run's measurements need: the settings, the scored pairs, the schedule, the running history
(correlations), the plateau detector and where records go (the JSONL always, plus any sinks the host adds). A host
calls it at a few points of its loop:

    from neuronxa_callback import AlignmentMonitor

    monitor = AlignmentMonitor(languages=["isl_Latn"], eval_steps=50, quality_every=2)
    monitor.begin(model, tokenizer, output_dir="out")            # checks, opens out/neuronxa/metrics.jsonl
    monitor.measure(model, tokenizer, step=0, trigger="train_begin")     # the baseline
    for step in range(1, max_steps + 1):
        ...                                                       # forward, backward, optimizer.step()
        if monitor.due(step):
            monitor.measure(model, tokenizer, step=step)
        if monitor.should_stop:                                   # plateau; every rank agrees
            break
    monitor.end(model, tokenizer, step=step)                      # final measurement with quality, figures, summary
    state = monitor.state_dict()                                  # save next to a checkpoint; load_state_dict to resume

Under torch.distributed every rank calls the same methods in the same order (they are collectives); rank 0 scores
and writes. NeuronXACallback is this object driven by the Hugging Face Trainer's events.

Out of band (measure_in="worker" or "ray"): measure() snapshots the weights and returns; a worker scores the
snapshot and the record is written when its result arrives (due() and measure() collect what has arrived, in step
order; at most worker_max_in_flight in flight; end() waits for the rest). See neuronxa_callback/worker/.

Guarantees: a step is measured at most once; a measurement leaves the model, tokenizer and RNG as it found them; a
failed measurement is logged and the run goes on unless strict=True; a monitor that cannot start raises in begin()
unless strict=False (then it measures nothing and says so in end()).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from neuronxa_callback.instrument.isolation import left_as_found
from neuronxa_callback.measure.measurement import (
    MeasurementInputs,
    check_without_model,
    prepare_inputs,
    record_pieces,
    run_measurement,
    score_translations,
    translate_all,
)
from neuronxa_callback.measure.record import (
    add_to_history,
    eval_metrics,
    measurement_record,
    new_history,
    new_plateau,
    rebuild_from_records,
)
from neuronxa_callback.parallel.agreement import MeasurementError, agree, attempt, report_failure
from neuronxa_callback.parallel.collectives import broadcast_object, rank_and_world
from neuronxa_callback.settings import CallbackSettings
from neuronxa_callback.sinks import routing as _sinks
from neuronxa_callback.sinks.console import say
from neuronxa_callback.sinks.trackers import summary_line

if TYPE_CHECKING:
    from neuronxa_callback.sinks.jsonl import JsonlLogger
    from neuronxa_callback.worker.dispatch import OutOfBand

logger = logging.getLogger("neuronxa_callback")  # the name users configure for the callback's messages

# A sink receives every record once it is written to the JSONL: log_measurement(record), log_figures({name: png})
# before the run ends, finish() at the end. A factory builds them once the JSONL's earlier records are known.
SinkFactory = Callable[[list[dict]], Sequence[Any]]

# Why training waits for out-of-band results (wait_for_results), in the failure of one with no result in time.
_WAIT_REASONS = {"checkpoint": "before a checkpoint", "evaluate": "for an evaluation"}


@dataclass(frozen=True)
class Schedule:
    """When the monitor measures and when a measurement also translates; hosts and budgets read it.

    Usage: ``schedule = monitor.schedule; schedule.measures_at(100); schedule.translates(index=2, final=False)``.
    """

    eval_steps: int  # measure every k optimizer steps (0: only at begin, evaluations and end)
    quality_every: int  # translate every k-th measurement, the baseline being the 0th (0: never)

    def measures_at(self, step: int) -> bool:
        """Whether the schedule measures at optimizer step `step` (the baseline at 0 and the final one aside)."""
        return bool(self.eval_steps) and step % self.eval_steps == 0

    def translates(self, index: int, *, final: bool = False) -> bool:
        """Whether the measurement number `index` scores quality; the final one always does when quality is on,
        so that every run ends with the "after" point of its quality curve."""
        return bool(self.quality_every) and (index % self.quality_every == 0 or final)


class AlignmentMonitor:
    """NeuronXA measurements on a schedule, for any training loop (see the module docstring).

    Arguments: the keyword arguments of NeuronXACallback (`settings=CallbackSettings` instead is fine too).
    """

    def __init__(self, settings: CallbackSettings | None = None, **kwargs: Any) -> None:
        if settings is not None and kwargs:
            raise TypeError("AlignmentMonitor: pass settings= or keyword arguments, not both")
        self.settings = settings if settings is not None else CallbackSettings.from_kwargs(**kwargs)
        self.schedule = Schedule(eval_steps=self.settings.eval_steps, quality_every=self.settings.quality_every)
        # Language codes, the data source and local paths: wrong ones fail here, before any training.
        self._data = check_without_model(self.settings)
        self.history = new_history()
        self.plateau = new_plateau(self.settings)
        self.measurement_index = 0  # measurements of this run so far, the baseline being index 0
        self.last_measured_step: int | None = None
        self.restored = False  # load_state_dict() brought history and plateau from a checkpoint
        self.should_stop = False  # the plateau detector asked to stop; every rank agrees
        self.stop_reason: str | None = None
        self.last_eval_metrics: tuple[int, dict[str, float]] | None = None  # (step, eval_neuronxa_* metrics)
        self._ready = False
        self._disabled: str | None = None  # why measuring is off for this run (a start failure with strict=False)
        self._inputs: MeasurementInputs | None = None  # once begun
        self._jsonl: JsonlLogger | None = None  # rank 0, once begun
        self._output_dir: Path | None = None  # <output_dir>/<output_subdir>: the JSONL and summary.json
        self._sinks: list[Any] = []
        # Whether the last measurement (at last_measured_step) succeeded and scored quality; every rank knows it, so
        # all of them agree on completing it with quality at the end (complete_final_quality).
        self._last_ok = False
        self._last_quality = False
        self._last_record: dict | None = None  # rank 0: the record of the last measurement, as written
        self._measured_this_run = 0
        self._failures: list[str] = []
        self._out_of_band: OutOfBand | None = None  # when measurements run outside this process

    # ----- state for resume ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """History, plateau state and counters; JSON-serialisable."""
        return {
            "history": self.history.state(),
            "plateau": self.plateau.state() if self.plateau is not None else None,
            "measurement_index": self.measurement_index,
            "last_measured_step": self.last_measured_step,
        }

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            self.restore(name, value)

    def restore(self, name: str, value: Any) -> None:
        """One entry of state_dict() (the Trainer restores a callback's state one attribute at a time)."""
        from neuronxa_callback.measure.history import MeasurementHistory, PlateauDetector

        if name == "history":
            self.history = value if isinstance(value, MeasurementHistory) else MeasurementHistory.from_state(value)
            self.restored = True
        elif name == "plateau":
            if value is None or isinstance(value, PlateauDetector):
                self.plateau = value if value is not None else new_plateau(self.settings)
            else:
                self.plateau = PlateauDetector.from_state(value)
            self.restored = True
        elif name in ("measurement_index", "last_measured_step"):
            setattr(self, name, value)
        else:
            raise KeyError(f"AlignmentMonitor.load_state_dict: unknown entry {name!r}")

    # ----- the run -----------------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def jsonl_path(self) -> Path | None:
        return self._jsonl.path if self._jsonl is not None else None

    def due(self, step: int) -> bool:
        """Whether the schedule (every eval_steps optimizer steps) measures at `step`. Out of band it also writes
        the records whose results have arrived (a collective then: every rank calls due() at every step)."""
        if self._out_of_band is not None and self._disabled is None:
            self._collect(step)
        return self.schedule.measures_at(step) and step != self.last_measured_step

    def begin(
        self, model: Any, tokenizer: Any, *, output_dir: str | Path, step: int = 0, sinks: SinkFactory | None = None
    ) -> None:
        """Check what needs the model, open the JSONL (and the host's sinks), and bring the history to `step` when
        resuming. Collective. Raises MeasurementError when that fails, unless strict=False."""
        self._ready = True
        self._disabled = None
        self._measured_this_run, self._failures = 0, []
        self.should_stop, self.stop_reason = False, None
        rank, _ = rank_and_world()
        self._output_dir = Path(output_dir) / self.settings.output_subdir
        local_error = attempt(lambda: self._begin_local(model, tokenizer, step, sinks, rank))[1]
        if self.settings.measure_in != "process":  # the worker must be able to start now, not at the first step
            from neuronxa_callback.worker.dispatch import OutOfBand

            self._close_out_of_band()
            self._out_of_band = OutOfBand(self.settings, self._output_dir / "snapshots")
            local_error = self._out_of_band.start(model, tokenizer, local_error)
        # Every rank must agree whether measuring is on, and on the schedule counters (rank 0 owns the files).
        last = self._last_record
        shared = agree(
            local_error,
            {
                "index": self.measurement_index,
                "last": self.last_measured_step,
                "last_ok": last is not None,
                "last_quality": last is not None and "quality" in last,
            }
            if rank == 0
            else None,
        )
        self.measurement_index, self.last_measured_step = shared["index"], shared["last"]
        self._last_ok, self._last_quality = bool(shared.get("last_ok")), bool(shared.get("last_quality"))
        error = shared["error"]
        if error is not None:
            self._disabled = error
            self._failures.append(f"could not start: {error}")
            message = f"NeuronXACallback could not start: {error}"
            if self.settings.strict is not False:  # only an explicit strict=False trains without measuring
                raise MeasurementError(f"{message} (pass strict=False to train without alignment measurements)")
            logger.error("%s; training goes on WITHOUT alignment measurements (strict=False)", message)

    def _begin_local(self, model, tokenizer, step: int, sinks: SinkFactory | None, rank: int) -> None:
        self._inputs = prepare_inputs(
            self.settings, model, tokenizer, rank, data=self._data, scorers=self.settings.measure_in == "process"
        )
        if rank != 0:
            return
        # A file this monitor already wrote (an evaluation before training) is its own, not an earlier run's.
        output_dir = cast(Path, self._output_dir)  # begin() sets it first
        self._jsonl, measured = _sinks.open_jsonl(output_dir, step, keep_earlier=self._jsonl is None)
        self._last_record = measured[-1] if measured else None
        if step > 0:
            self._resume_from(measured, step)
        else:
            self.history, self.plateau = new_history(), new_plateau(self.settings)
            self.measurement_index, self.last_measured_step = 0, None
        self._sinks = [sink for sink in (sinks(measured) if sinks is not None else ()) if sink is not None]

    @property
    def _begun_inputs(self) -> MeasurementInputs:
        """The inputs begin() prepared; read only while measuring is on (begun and not disabled)."""
        return cast(MeasurementInputs, self._inputs)

    def _resume_from(self, records: list[dict], step: int) -> None:
        """Bring history, plateau detector and counters to the checkpoint at `step`."""
        if self.restored:  # load_state_dict() brought our state from the checkpoint
            self.history.truncate_after(step)
        # A fresh monitor, or a checkpoint state older than the JSONL (out of band, a save that came before results
        # in flight were written): rebuild from the JSONL, which holds exactly the same numbers.
        if not self.restored or {r["step"] for r in records} - set(self.history.steps):
            self.history, self.plateau = rebuild_from_records(records, self.settings)
            self.measurement_index = len(records)
        if records:
            self.last_measured_step = max(r["step"] for r in records)
            self.measurement_index = max(self.measurement_index, len(records))
        logger.info("NeuronXACallback: resuming at step %d with %d earlier measurement(s)", step, len(records))

    def measure(
        self,
        model: Any,
        tokenizer: Any,
        *,
        step: int,
        epoch: float | None = None,
        trigger: str = "step",
        final: bool = False,
    ) -> bool:
        """Measure at `step` (collective); True when a measurement was taken and succeeded. The final measurement
        (final=True, or trigger "train_end") always scores quality when quality is on; so does every
        quality_every-th one. A step already measured, or a monitor that did not begin, measures nothing (out of band,
        an evaluation at a step already measured waits for that step's result: wait_for_results)."""
        if self._disabled is not None or not self._ready:
            return False
        if step == self.last_measured_step:
            if trigger == "evaluate":  # out of band its result may be in flight: the evaluation needs its metrics
                self.wait_for_results(step=step, reason="evaluate")
            return False
        index = self.measurement_index
        with_quality = self.schedule.translates(index, final=final or trigger == "train_end")
        if rank_and_world()[0] == 0:
            say(self._announcement(trigger, step, with_quality))
        if self._out_of_band is not None:
            return self._measure_out_of_band(model, step=step, epoch=epoch, trigger=trigger, with_quality=with_quality)
        with left_as_found(model, tokenizer, rng=True):
            outcome = run_measurement(
                self._begun_inputs,
                model,
                tokenizer,
                with_quality=with_quality,
                record=lambda *measured: self._record(
                    trigger, step, epoch, index, record_pieces(self._begun_inputs, *measured)
                ),
            )
        # The step counts as measured even when it failed: retrying the same step would fail the same way.
        self.last_measured_step = step
        self.measurement_index += 1
        self._last_quality = with_quality
        return self._settle(step, trigger, outcome)

    def _settle(self, step: int, trigger: str, outcome: dict) -> bool:
        """Every rank: the outcome of the measurement at `step` (broadcast by rank 0) into the counters, the
        failure list and the stop flag. True when it succeeded."""
        if step == self.last_measured_step:
            self._last_ok = outcome["error"] is None
        if outcome["error"] is not None:
            self._failures.append(f"step {step}: {outcome['error']}")
            report_failure(
                f"NeuronXACallback: measurement at step {step} ({trigger}) failed: {outcome['error']}",
                self.settings.strict,
            )
            return False
        self._measured_this_run += 1
        self.last_eval_metrics = (step, outcome["eval_metrics"])
        if outcome["should_stop"]:
            self.should_stop = True
            self.stop_reason = outcome["reason"]
        return True

    def end(self, model: Any, tokenizer: Any, *, step: int, epoch: float | None = None) -> None:
        """The end of the run (collective): the final measurement (or quality for a last step measured without it),
        the report's figures to the sinks, the run summary, and the sinks finished."""
        try:
            self.measure(model, tokenizer, step=step, epoch=epoch, trigger="train_end")
            if self._out_of_band is not None and self._disabled is None:
                self._collect(step, wait=True)  # every measurement in flight, at most worker_timeout
            self.complete_final_quality(model, tokenizer, step=step)
            if rank_and_world()[0] == 0:
                _sinks.log_report_figures_to(self._sinks, self._jsonl)
                self._report_outcome(step)
        finally:
            for sink in self._sinks:
                sink.finish()
            self._sinks = []
            self._close_out_of_band()

    def complete_final_quality(self, model: Any, tokenizer: Any, *, step: int) -> None:
        """Give the run's last measurement its quality point when it was measured without one (collective).

        A run can stop at a step that was already measured on the alignment-only schedule (the plateau detector, a
        time-budget callback, an evaluation at the last step): that record is completed with translations and their
        scores in place (same step, same index, one JSONL line), so every run's last measurement carries quality.
        """
        if self._out_of_band is not None and self._disabled is None and self._ready:
            self._collect(step, wait=True)  # the last measurement's result decides whether quality is missing
        if (
            not self.settings.quality_every
            or self._disabled is not None
            or not self._ready
            or step != self.last_measured_step
            or not self._last_ok
            or self._last_quality
        ):
            return
        self._last_quality = True  # tried: a failure would fail the same way again
        if self._out_of_band is not None:
            self._measure_out_of_band(model, step=step, epoch=None, trigger="train_end", kind="quality")
            self._collect(step, wait=True)
            return
        with left_as_found(model, tokenizer, rng=True):
            translations, error, seconds = translate_all(self._begun_inputs, model, tokenizer)
            outcome = {"error": error}
            if rank_and_world()[0] == 0 and error is None:
                # Rank 0 gets the translations whenever no rank failed (translate_all).
                translated = cast(dict, translations)
                outcome = {
                    "error": attempt(
                        lambda: self._add_quality(*score_translations(self._begun_inputs, translated), seconds)
                    )[1]
                }
            outcome = broadcast_object(outcome)
        self._settle_quality(step, outcome)

    def _settle_quality(self, step: int, outcome: dict) -> None:
        if outcome["error"] is not None:
            self._failures.append(f"final quality at step {step}: {outcome['error']}")
            report_failure(
                f"NeuronXACallback: final quality at step {step} failed: {outcome['error']}", self.settings.strict
            )

    # ----- out of band: snapshots to a worker, records when results arrive (neuronxa_callback/worker/) -------------
    def _measure_out_of_band(
        self,
        model: Any,
        *,
        step: int,
        epoch: float | None,
        trigger: str,
        with_quality: bool = True,
        kind: str = "measure",
    ) -> bool:
        """Collective: snapshot `model` for the worker (waiting while worker_max_in_flight are in flight), then
        write what has arrived. True when the snapshot was handed over (its record comes later)."""
        job = {"kind": kind, "step": step, "epoch": epoch, "trigger": trigger, "index": self.measurement_index}
        job["with_quality"] = with_quality
        error = cast("OutOfBand", self._out_of_band).submit(model, job)  # callers check it is set
        if kind == "measure":
            self.last_measured_step = step
            self.measurement_index += 1
            self._last_ok, self._last_quality = False, with_quality  # _last_ok: when its result arrives
        if error is not None:
            outcome = {"error": f"snapshot for the worker failed: {error}"}
            if kind == "measure":
                self._settle(step, trigger, outcome)
            else:
                self._settle_quality(step, outcome)
            return False
        if trigger == "evaluate":  # an evaluation hands its metrics to the host now (eval_neuronxa_*): wait for it
            self.wait_for_results(step=step, reason="evaluate")
        else:
            self._collect(step)
        return True

    def before_checkpoint(self, *, step: int) -> None:
        """Call right before the host saves a checkpoint at training step `step` (collective; every rank).

        Out of band, training waits here for every measurement in flight (wait_for_results), so that state_dict()
        and the JSONL are complete at this step: a run resumed from the checkpoint loses none of them. The record
        training waited for last carries the wait as timing.checkpoint_wait_seconds. In process (nothing is ever in
        flight) it does nothing."""
        self.wait_for_results(step=step, reason="checkpoint")

    def wait_for_results(self, *, step: int, reason: str) -> None:
        """Out of band: wait at training step `step` for every measurement in flight (all of them were taken at or
        before `step`) and write their records (collective; every rank). In process it does nothing.

        Usage: ``monitor.wait_for_results(step=step, reason="evaluate")`` before reading last_eval_metrics.
        `reason`: "checkpoint" (before_checkpoint) or "evaluate" (an evaluation at a step whose result may still be
        in flight needs its eval_neuronxa_* metrics now). The wait is at most worker_timeout; a measurement with no
        result by then has failed. The record training waited for last carries the wait as
        timing.<reason>_wait_seconds."""
        if reason not in _WAIT_REASONS:
            raise ValueError(f"wait_for_results: reason={reason!r}; expected one of {sorted(_WAIT_REASONS)}")
        if self._out_of_band is not None and self._disabled is None and self._ready:
            self._collect(step, wait=True, wait_timing=f"{reason}_wait_seconds", when=_WAIT_REASONS[reason])

    def _collect(
        self, step: int, *, wait: bool = False, wait_timing: str | None = None, when: str = "at the end"
    ) -> None:
        """Collective: rank 0 writes the records of the results that have arrived (in step order; wait=True: all of
        them, at most worker_timeout); every rank then settles them. `step`: the training step now, where a stop
        that one of them asks for takes effect (recorded as early_stopping.applied_at_step). `wait_timing`: the
        timing key under which the last measurement written records how long training waited here; `when`: what
        the wait was for, in the failure of a measurement with no result in time."""
        arrived = []
        if rank_and_world()[0] == 0:
            out_of_band = cast("OutOfBand", self._out_of_band)  # callers check it is set
            start = time.perf_counter()
            done = out_of_band.finished(wait=wait, when=when)
            measured = [job for _, job, _ in done if job["kind"] == "measure"]
            if wait_timing is not None and measured:
                measured[-1]["timing"][wait_timing] = time.perf_counter() - start
            for job_id, job, result in done:
                arrived.append((job, self._write_result(job, result, step)))
                out_of_band.release(job_id)
        for job, outcome in broadcast_object(arrived):
            if job["kind"] == "quality":
                self._settle_quality(job["step"], outcome)
            else:
                self._settle(job["step"], job["trigger"], outcome)

    def _write_result(self, job: dict, result: dict, applied_at_step: int) -> dict:
        """Rank 0: a worker's result as a record (or its quality added to the last record); the outcome."""
        failed: dict[str, Any] = {
            "error": result.get("error"),
            "eval_metrics": {},
            "should_stop": False,
            "reason": None,
        }
        if result.get("error") is not None:
            return failed
        if job["kind"] == "quality":
            scored = (result["quality"], result["quality_seconds"], result["generation_seconds"])
            return {"error": attempt(lambda: self._add_quality(*scored))[1]}
        pieces = result["pieces"]
        pieces["timing"].update(job["timing"])
        outcome, error = attempt(
            lambda: self._record(
                job["trigger"], job["step"], job["epoch"], job["index"], pieces, applied_at_step=applied_at_step
            )
        )
        return outcome if error is None else {**failed, "error": error}

    def _close_out_of_band(self) -> None:
        if self._out_of_band is not None:
            self._out_of_band.close()
            self._out_of_band = None

    # ----- rank 0: scores, history, early stopping, sinks --------------------------------------------------------------
    def _record(
        self,
        trigger: str,
        step: int,
        epoch: float | None,
        index: int,
        pieces: dict,
        *,
        applied_at_step: int | None = None,
    ) -> dict:
        """Rank 0: one measurement's pieces (measurement.record_pieces, scored here or in a worker) as a written
        record; returns the outcome every rank settles. applied_at_step: out of band, the training step at which
        the result arrived (a stop it asks for takes effect there)."""
        settings, report_dict = self.settings, pieces["report_dict"]
        record, decision = measurement_record(
            trigger,
            step,
            epoch,
            index=index,
            report_dict=report_dict,
            quality=pieces["quality"],
            likelihood=pieces.get("likelihood"),
            timing=pieces["timing"],
            settings=settings,
            data=self._begun_inputs.data,
            history=self.history,
            plateau=self.plateau,
        )
        should_stop, reason = (decision.should_stop, decision.reason) if decision is not None else (False, None)
        if applied_at_step is not None and "early_stopping" in record:
            record["early_stopping"]["applied_at_step"] = applied_at_step
        if should_stop:
            pair = record["early_stopping"]["pair"]
            at = step if applied_at_step is None else applied_at_step
            late = f" (measured at step {step})" if at != step else ""
            say(f"stopping training at step {at}{late}: {pair} {settings.early_stopping_metric.upper()} {reason}")
        self._write(record)
        return {
            "error": None,
            "eval_metrics": eval_metrics(report_dict["pairs"]),
            "should_stop": should_stop,
            "reason": reason,
        }

    def _add_quality(self, quality: dict, quality_seconds: float, generation_seconds: float) -> None:
        """Rank 0: write the last record again with `quality` (its JSONL line is replaced; the sinks get the same
        step again, so its quality joins the alignment already logged there)."""
        # Called only after a measurement that succeeded, whose record this is.
        settings, old = self.settings, cast(dict, self._last_record)
        record: dict[str, Any] = {}
        for key, value in old.items():  # same key order as a record measured with quality
            if key != "quality":
                record[key] = value
            if key == "pairs":
                record["quality"] = quality
        timing = dict(old.get("timing") or {})
        timing["generation_seconds"] = timing.get("generation_seconds", 0.0) + generation_seconds
        timing["quality_seconds"] = timing.get("quality_seconds", 0.0) + quality_seconds
        record["timing"] = timing
        record["correlation"] = add_to_history(self.history, record, settings)  # replaces this step's entry
        self._write(record)

    def _write(self, record: dict) -> None:
        """The JSONL first (the complete record), then every sink; sinks never raise."""
        self._last_record = record
        cast("JsonlLogger", self._jsonl).log_measurement(record)  # rank 0 writes, and begin() opened it there
        for sink in self._sinks:
            sink.log_measurement(record)
        say(summary_line(record))  # progress a person can follow, one line per measurement

    # ----- what a person sees --------------------------------------------------------------------------------------
    def _announcement(self, trigger: str, step: int, with_quality: bool) -> str:
        """What is about to be measured, so a long silent wait has an explanation."""
        data, settings = self._begun_inputs.data, self.settings
        what = {"train_begin": "baseline, before training", "train_end": "final", "evaluate": "evaluation"}.get(trigger)
        text = (
            f"measuring step {step}{f' ({what})' if what else ''}: {len(data)} pairs x {len(data.targets)} language(s)"
        )
        if with_quality:
            from neuronxa_callback.measure.quality_step import directions, quality_slice

            sentences = sum(
                len(quality_slice(data.sentences(source), settings)) for source, _ in directions(data, settings)
            )
            text += f", then translating {sentences} sentence(s)"
        return text + " ..."

    def _report_outcome(self, step: int) -> None:
        """Rank 0, at the end: what this run measured, in the log and in summary.json next to the JSONL. A run that
        measured nothing says so loudly: it must not pass for a measured one."""
        summary = _sinks.run_summary(
            cast(Path, self._output_dir),  # begin() sets it
            self._jsonl,
            step=step,
            measured=self._measured_this_run,
            failures=self._failures,
            stop_reason=self.stop_reason,
        )
        if self._measured_this_run == 0:
            logger.error(
                "NeuronXACallback measured NOTHING in this run (%s): it has no alignment results",
                "; ".join(self._failures) or "no measurement was scheduled",
            )
            return
        failed = f", {len(self._failures)} failed" if self._failures else ""
        stop = f"; stopped early: {self.stop_reason}" if self.stop_reason else ""
        say(f"done: {self._measured_this_run} measurement(s){failed}{stop}; records in {summary['metrics_file']}")
