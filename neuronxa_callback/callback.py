"""NeuronXACallback: measure cross-lingual alignment (NASCA/NAVCA) while the Hugging Face Trainer fine-tunes a model.

Usage::

    from transformers import EarlyStoppingCallback, Trainer
    from neuronxa_callback import NeuronXACallback

    trainer = Trainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer,
        # List NeuronXACallback BEFORE EarlyStoppingCallback: the Trainer calls callbacks in order, and
        # on_evaluate is where eval_neuronxa_* enter the evaluation metrics.
        callbacks=[NeuronXACallback(languages=["isl_Latn"], eval_steps=50, quality_every=2),
                   EarlyStoppingCallback(early_stopping_patience=3)],
    )
    trainer.train()            # -> <output_dir>/neuronxa/metrics.jsonl, one line per measurement

When it measures: at step 0 before any update (the baseline, on_train_begin; not again when resuming), every
`eval_steps` optimizer steps (on_step_end), at each Trainer evaluation (on_evaluate, if measure_on_evaluate) and once
at the end (on_epoch_end of the last epoch, whoever stopped training, before load_best_model_at_end swaps weights;
on_train_end as a fallback). A step is never measured twice. Every measurement scores NASCA/NAVCA on all layers;
every `quality_every`-th one (counting the baseline as the 0th) and the final one also translate the scored sentences
with the model and score the translations: when the run stops at a step already measured without quality (plateau,
another callback's stop), that record is completed with quality in place.

The callback never changes training: it runs under torch.no_grad in eval mode, consumes no training randomness
(RNG states are saved and restored around each measurement), and puts back every training flag, the tokenizer's
padding side and config.use_cache.

Failing early: every argument, the language codes, the data source (read at construction unless it is the hub's
FLORES+) and local COMET paths are checked where the callback is built (SettingsError naming the argument). What
needs the model or the output folder (unsupported architecture, a COMET model that will not load, an unwritable
output) is checked at on_train_begin, before the first training step: by default (strict=None) such a failure stops
the run there (MeasurementError), since a run that cannot be measured should not train for hours; strict=False
trains on without measuring and says so loudly at the end (log and <output_dir>/neuronxa/summary.json). A
measurement that fails later is logged and training goes on, unless strict=True; when metric_for_best_model names an
eval_neuronxa_* metric that a failed measurement could not provide, the evaluation gets the worst value (-inf, or
+inf when greater_is_better=False) so the Trainer goes on.

Console: each measurement is announced and summarised in one line ("NeuronXA measuring step 20 ...", "NeuronXA step
20: ..."), a plateau stop says why, and the end says how many measurements were taken. The lines go through logging
when it is configured at INFO for neuronxa_callback, else above the progress bar (stderr); never both.

A new run (step 0) into an output folder that holds an earlier run's metrics.jsonl keeps that file as
metrics.<time of its last write>.jsonl (with a warning) and starts a new one.

Resume: the callback is an ExportableState. With TrainingArguments(restore_callback_states_from_checkpoint=True)
the Trainer rebuilds it from the checkpoint (history, plateau counters). Without it, a fresh callback rebuilds both
from the JSONL file in the output directory. Either way records measured after the checkpoint are dropped from the
JSONL and measured again, so the file has no duplicates and no gaps.

DDP: every rank encodes its share of the sentences, rank 0 gathers, scores and logs, and all ranks agree on
should_training_stop. Translations are split across ranks too (each rank translates every world-th sentence) and
gathered. Under FSDP1, FSDP2 and DeepSpeed ZeRO-3 (parameters sharded) every rank joins every forward and generate
call: dummy batches even out the ranks' counts, agreed by a collective first (see sharding.py).
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any

from transformers.trainer_callback import ExportableState, TrainerCallback

from . import _sinks
from .trackers import summary_line
from ._isolation import ModelSnapshot, RngState
from ._measurement import check_without_model, prepare_inputs, run_measurement, translate_all
from ._progress import say
from ._quality_step import score_quality
from ._rank import MeasurementError, agree, attempt, report_failure
from ._records import (
    EVAL_PREFIX,
    SCHEMA_VERSION,
    add_to_history,
    build_record,
    eval_metrics,
    finish_record,
    new_history,
    new_plateau,
    rebuild_from_records,
    stop_value,
)
from .distributed import broadcast_object, rank_and_world
from .settings import CallbackSettings

logger = logging.getLogger(__name__)

# Kept importable from here (older imports and tests): the names moved to the private modules above.
_eval_metrics = eval_metrics
__all__ = ["NeuronXACallback", "MeasurementError", "SCHEMA_VERSION", "EVAL_PREFIX"]


_PIN_MEMORY_WITHOUT_ACCELERATOR = r"'pin_memory' argument is set as true but no accelerator is found"


def _tokenizer_from(kwargs: dict[str, Any]) -> Any:
    """The tokenizer the Trainer passes to callbacks (processing_class in transformers 5, tokenizer before)."""
    tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
    # A multimodal processor wraps the tokenizer.
    if tokenizer is not None and not hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer
    return tokenizer


class NeuronXACallback(TrainerCallback, ExportableState):
    """Measure NeuronXA alignment (and optionally translation quality) during Trainer fine-tuning.

    Every argument is keyword-only and JSON-serialisable (the Trainer rebuilds the callback from them on resume).
    data: "ntrex" (default: the packaged NTREX-128 subset, lines 1-100, 121 languages, CC BY-SA 4.0), "bundled" (the
        sample written for the project), "flores", a FLORES-200/NTREX directory or a .tsv/.jsonl file.
    languages: target languages (list or comma-separated string), scored against `pivot`.
    num_pairs / sample / seed: which sentence pairs to score ("first" n, or a seeded "random" subset).
    eval_steps: measure every k optimizer steps (0/None: only at train begin, evaluations and train end).
    measure_on_evaluate: also measure at each Trainer evaluation (adds eval_neuronxa_* metrics).
    representations / pooling / batch_size / max_length: passed to the NeuronXA encoder.
    quality_every: translate and score every k-th measurement (0 = never), on the first `quality_num_pairs` of the
        scored pairs (None = all of them); direction "x2en" (language -> pivot),
        "en2x" or "both"; quality_metrics ("chrf", "bleu"), comet_model / cometkiwi_model (name or local path),
        comet_device, num_fewshot (examples from the scored pairs' own source -- NTREX lines after the scored ones,
        FLORES dev for devtest, a long file's other rows -- else the bundled pool; never a scored pair; 0 = zero-shot),
        max_new_tokens, prompt ("auto", "fewshot", "chat" or a template). quality_languages: translate only these
        targets' pairs (None = all); the others, e.g. a control pair, are measured for alignment only. A hypothesis
        that copies a prompt example is scored as empty; the copy rate is logged next to every quality score.
    early_stopping_*: stop when `early_stopping_metric` of `early_stopping_pair` (default: the first pair) has not
        improved by more than min_delta for `patience` measurements (smoothing "none", "ema" with `factor`, or
        "window" of `window` values; never before `min_steps`). None = off.
    report_to: "auto" (W&B iff "wandb" in TrainingArguments.report_to), "wandb" or "none". The JSONL is always written.
    output_subdir: the JSONL goes to <args.output_dir>/<output_subdir>/metrics.jsonl (and summary.json at the end).
    strict: None (default): a callback that cannot start stops the run before training, a later failed measurement
        is logged and training goes on; True: every failure raises MeasurementError; False: never raise, even when
        nothing can be measured (the end of the run says so).
    """

    def __init__(
        self,
        *,
        data: str = "ntrex",
        languages: Any = ("isl_Latn",),
        pivot: str = "eng_Latn",
        num_pairs: int = 100,
        sample: str = "first",
        seed: int = 0,
        eval_steps: int | None = 50,
        measure_on_evaluate: bool = True,
        representations: Any = ("nas", "nav"),
        pooling: str = "weighted",
        batch_size: int = 16,
        max_length: int = 256,
        quality_every: int | None = 0,
        quality_num_pairs: int | None = None,
        quality_languages: Any = None,
        direction: str = "x2en",
        quality_metrics: Any = ("chrf",),
        comet_model: str | None = None,
        cometkiwi_model: str | None = None,
        comet_device: str | None = None,
        num_fewshot: int = 3,
        max_new_tokens: int = 64,
        prompt: str = "auto",
        early_stopping_patience: int | None = None,
        early_stopping_min_delta: float = 0.0,
        early_stopping_metric: str = "nasca",
        early_stopping_pair: str | None = None,
        early_stopping_smoothing: str = "none",
        early_stopping_window: int = 3,
        early_stopping_factor: float = 0.5,
        early_stopping_min_steps: int = 0,
        report_to: Any = "auto",
        wandb_project: str | None = None,
        output_subdir: str = "neuronxa",
        strict: bool | None = None,
    ) -> None:
        arguments = dict(locals())
        del arguments["self"]
        self.settings = CallbackSettings.from_kwargs(**arguments)
        # Language codes, the data source and local paths: wrong ones fail here, before any training.
        self._data = check_without_model(self.settings)
        self._history = new_history()
        self._plateau = new_plateau(self.settings)
        self.measurement_index = 0  # how many measurements this run has taken (the baseline is index 0)
        self.last_measured_step: int | None = None
        self._restored = False  # True when the Trainer restored our attributes from a checkpoint
        self._ready = False
        self._disabled: str | None = None  # why measuring is off for this run (a setup failure, non-strict)
        self._inputs = None  # _measurement.MeasurementInputs once set up: the data, few-shot examples, scorers
        self._jsonl = None
        self._wandb = None
        self._trainer = None  # set by attach(): the Trainer whose log() reaches every tracker in report_to
        self._trackers = None  # trackers.TrackerHub while attached (rank 0)
        self._closed_before_trackers = False  # attach()'s link already ran the train-end work
        self._last_eval_metrics: tuple[int, dict[str, float]] | None = None
        self._stop_reason: str | None = None
        # Whether the last measurement (at last_measured_step) succeeded and scored quality; every rank knows it, so
        # all of them agree on completing it with quality at the end (see _complete_final_quality).
        self._last_ok = False
        self._last_quality = False
        self._last_record: dict | None = None  # rank 0: the record of the last measurement, as logged
        self._measured_this_run = 0  # successful measurements since train begin: zero means the run measured nothing
        self._failures: list[str] = []  # why measurements of this run failed (strict=False / None goes on)

    def attach(self, trainer: Any) -> NeuronXACallback:
        """Add this callback to `trainer` and log through it, so the alignment reaches every tracker in report_to.

        Usage: ``callback = NeuronXACallback(...).attach(trainer)`` (after building the Trainer, without listing it
        in ``callbacks=``; listing it too is fine). Headline numbers go through ``trainer.log`` (every tracker,
        log_history, the console), per-layer series and media straight to W&B / trackio / TensorBoard / MLflow;
        see neuronxa_callback/trackers.py. The reference is not part of state(): a callback the Trainer rebuilds
        from a checkpoint is linked again at train begin.
        """
        from .trackers import link_to_trainer

        link_to_trainer(self, trainer)
        return self


    # ----- ExportableState -------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """{"args": the constructor kwargs, "attributes": history, plateau state, counters}; all JSON-serialisable."""
        return {
            "args": self.settings.to_json(),
            "attributes": {
                "history": self._history.state(),
                "plateau": self._plateau.state() if self._plateau is not None else None,
                "measurement_index": self.measurement_index,
                "last_measured_step": self.last_measured_step,
            },
        }

    # The Trainer restores attributes with setattr(callback, name, json_value): these setters rebuild the objects.
    @property
    def history(self):
        """The MeasurementHistory of this run (alignment per step, quality, running correlations)."""
        return self._history

    @history.setter
    def history(self, value: Any) -> None:
        from .tracking import MeasurementHistory

        self._history = value if isinstance(value, MeasurementHistory) else MeasurementHistory.from_state(value)
        self._restored = True

    @property
    def plateau(self):
        """The PlateauDetector for early stopping, or None when early stopping is off."""
        return self._plateau

    @plateau.setter
    def plateau(self, value: Any) -> None:
        from .tracking import PlateauDetector

        if value is None or isinstance(value, PlateauDetector):
            self._plateau = value if value is not None else new_plateau(self.settings)
        else:
            self._plateau = PlateauDetector.from_state(value)
        self._restored = True

    # ----- Trainer events ----------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        # The Trainer pins memory by default; on a machine without an accelerator torch then warns at every epoch
        # about something the user cannot act on (pinning is simply skipped). Only that one message is hidden.
        warnings.filterwarnings("ignore", message=_PIN_MEMORY_WITHOUT_ACCELERATOR, category=UserWarning)
        self._setup(args, state, kwargs.get("model"), _tokenizer_from(kwargs))
        # The baseline, before any update. A resumed run already has its points up to the checkpoint: measuring the
        # resume step too would make the JSONL depend on where the run was interrupted.
        if state.global_step == 0 or self.last_measured_step is None:
            self._measure("train_begin", args, state, control, kwargs)
        if 0 < state.max_steps <= state.global_step:
            # Seen with transformers 5 (tests/_fault_run.py): a resume at max_steps still trains one step more.
            logger.warning("NeuronXACallback: resuming at step %d, already max_steps=%d: the Trainer may train (and "
                           "the callback measure) one step beyond it", state.global_step, state.max_steps)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        every = self.settings.eval_steps
        if every and state.global_step % every == 0:
            self._measure("step", args, state, control, kwargs)
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._ready:  # trainer.evaluate() before train(): set up on first use
            self._setup(args, state, kwargs.get("model"), _tokenizer_from(kwargs))
        if self.settings.measure_on_evaluate:
            self._measure("evaluate", args, state, control, kwargs)
        # Mutate the dict the Trainer passed: later callbacks (EarlyStoppingCallback) and the best-model logic see it.
        if metrics is not None and self._last_eval_metrics is not None and self._last_eval_metrics[0] == state.global_step:
            metrics.update(self._last_eval_metrics[1])
        if metrics is not None:
            self._fill_missing_best_metric(args, state, metrics)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        # The Trainer calls on_epoch_end right after it leaves the step loop, whoever stopped it (max_steps, our
        # plateau detector, another callback), and before load_best_model_at_end swaps the weights: the last point
        # at which the final model can be measured.
        if control.should_training_stop:
            self._measure("train_end", args, state, control, kwargs)
            self._complete_final_quality(state, kwargs)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._closed_before_trackers:  # attached: done already, before the Trainer's integrations closed their runs
            self._closed_before_trackers = False
            return control
        try:
            self._measure("train_end", args, state, control, kwargs)
            self._complete_final_quality(state, kwargs)
            _sinks.log_report_figures_to([self._wandb, self._trackers], self._jsonl)
            if rank_and_world()[0] == 0:
                self._report_outcome(args, state)
        finally:
            if self._wandb is not None:
                self._wandb.finish()
                self._wandb = None
            self._trackers = None
        return control

    def _finish_before_trackers_close(self, args, state, control, **kwargs):
        """on_train_end's work, called by attach()'s link ahead of the integrations (trackio, TensorBoard and MLflow
        close their runs in their own on_train_end; the final measurement must reach them first)."""
        self._closed_before_trackers = False
        self.on_train_end(args, state, control, **kwargs)
        self._closed_before_trackers = True

    def _report_outcome(self, args, state) -> None:
        """Rank 0, at the end: what this run measured, in the log and in <output_dir>/<subdir>/summary.json. A run
        that measured nothing says so loudly: it must not pass for a measured one."""
        summary = _sinks.run_summary(self.settings, args, state, self._jsonl, measured=self._measured_this_run,
                                     failures=self._failures, stop_reason=self._stop_reason)
        if self._measured_this_run == 0:
            logger.error("NeuronXACallback measured NOTHING in this run (%s): it has no alignment results",
                         "; ".join(self._failures) or "no measurement was scheduled")
            return
        failed = f", {len(self._failures)} failed" if self._failures else ""
        stop = f"; stopped early: {self._stop_reason}" if self._stop_reason else ""
        say(f"done: {self._measured_this_run} measurement(s){failed}{stop}; records in {summary['metrics_file']}")

    # ----- set-up ------------------------------------------------------------------------------------------------------
    def _setup(self, args, state, model, tokenizer) -> None:
        """Load and check everything that needs the model or the data, once per train(); fail here, not hours later."""
        self._ready = True
        self._disabled = None
        self._measured_this_run, self._failures = 0, []
        # FSDP1 / FSDP2 / DeepSpeed ZeRO-3 are measured with every rank in every forward (sharding.py), not refused.
        rank, _ = rank_and_world()
        local_error = attempt(lambda: self._setup_local(args, state, model, tokenizer, rank))[1]
        # Every rank must agree whether measuring is on, and on the schedule counters (rank 0 owns the files).
        last = self._last_record
        shared = agree(local_error, {"index": self.measurement_index, "last": self.last_measured_step,
                                     "last_ok": last is not None, "last_quality": last is not None and "quality" in last}
                       if rank == 0 else None)
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

    def _setup_local(self, args, state, model, tokenizer, rank: int) -> None:
        self._inputs = prepare_inputs(self.settings, model, tokenizer, rank, data=self._data)
        if rank == 0:
            self._open_logs(args, state)

    def _open_logs(self, args, state) -> None:
        step = int(state.global_step)
        # A file this callback already wrote (trainer.evaluate() before train()) is its own, not an earlier run's.
        self._jsonl, measured = _sinks.open_jsonl(self.settings, args, step, keep_earlier=self._jsonl is None)
        self._last_record = measured[-1] if measured else None
        if step > 0:
            self._resume_from(measured, step)
        else:
            self._history, self._plateau = new_history(), new_plateau(self.settings)
            self.measurement_index, self.last_measured_step = 0, None
        attached = self._trainer is not None
        if attached:
            self._trackers = _sinks.open_trackers(self.settings, self._trainer, measured)
        if _sinks.wandb_besides_trackers(self.settings, args, attached):
            self._wandb = _sinks.open_wandb(self.settings, measured)
        _sinks.hint_attach(args, attached)

    def _resume_from(self, records: list[dict], step: int) -> None:
        """Bring history, plateau detector and counters to the checkpoint at `step`."""
        if self._restored:  # the Trainer restored our state from the checkpoint (restore_callback_states_from_checkpoint)
            self._history.truncate_after(step)
        else:  # a fresh callback: rebuild from the JSONL, which holds exactly the same numbers
            self._history, self._plateau = rebuild_from_records(records, self.settings)
            self.measurement_index = len(records)
        if records:
            self.last_measured_step = max(r["step"] for r in records)
            self.measurement_index = max(self.measurement_index, len(records))
        logger.info("NeuronXACallback: resuming at step %d with %d earlier measurement(s)", step, len(records))

    # ----- measuring ---------------------------------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        report_failure(message, self.settings.strict)

    def _measure(self, trigger: str, args, state, control, kwargs) -> None:
        step = int(state.global_step)
        if self._disabled is not None or not self._ready or step == self.last_measured_step:
            return
        model, tokenizer = kwargs.get("model"), _tokenizer_from(kwargs)
        settings = self.settings
        index = self.measurement_index
        # The final measurement always scores quality too (when quality is on): a run that stops early (plateau,
        # max_steps, a time budget) would otherwise end without the "after" point of its quality curve. A stop decided
        # by this very measurement (plateau) is completed afterwards (_complete_final_quality).
        final = trigger == "train_end" or 0 < state.max_steps <= state.global_step or bool(control.should_training_stop)
        with_quality = bool(settings.quality_every) and (index % settings.quality_every == 0 or final)
        if rank_and_world()[0] == 0:
            say(self._announcement(trigger, step, with_quality))
        rng = RngState()
        snapshot = ModelSnapshot(model, tokenizer)
        try:
            outcome = run_measurement(
                self._inputs, model, tokenizer, with_quality=with_quality,
                record=lambda report, translations, timing: self._record(trigger, state, report, translations, timing),
            )
        finally:
            snapshot.restore()
            rng.restore()
        # The step counts as measured even when it failed: retrying the same step would fail the same way.
        self.last_measured_step = step
        self.measurement_index += 1
        self._last_ok, self._last_quality = outcome["error"] is None, with_quality
        if outcome["error"] is not None:
            self._failures.append(f"step {step}: {outcome['error']}")
            self._fail(f"NeuronXACallback: measurement at step {step} ({trigger}) failed: {outcome['error']}")
            return
        self._measured_this_run += 1
        self._last_eval_metrics = (step, outcome["eval_metrics"])
        if outcome["should_stop"]:
            control.should_training_stop = True
            self._stop_reason = outcome["reason"]

    def _announcement(self, trigger: str, step: int, with_quality: bool) -> str:
        """What is about to be measured, so a long silent wait has an explanation."""
        data, settings = self._inputs.data, self.settings
        what = {"train_begin": "baseline, before training", "train_end": "final", "evaluate": "evaluation"}.get(trigger)
        text = f"measuring step {step}{f' ({what})' if what else ''}: {len(data)} pairs x {len(data.targets)} language(s)"
        if with_quality:
            from ._quality_step import directions, quality_slice

            sentences = sum(len(quality_slice(data.sentences(source), settings))
                            for source, _ in directions(data, settings))
            text += f", then translating {sentences} sentence(s)"
        return text + " ..."

    # ----- rank 0: scores, history, early stopping, logs ---------------------------------------------------------------
    def _record(self, trigger: str, state, report, translations, timing: dict[str, float]) -> dict:
        settings, inputs = self.settings, self._inputs
        step = int(state.global_step)
        report_dict = report.to_dict()
        quality = None
        if translations is not None:
            start = time.perf_counter()
            quality = score_quality(translations, inputs.data, inputs.scorers, settings, inputs.examples)
            timing["quality_seconds"] = time.perf_counter() - start
        else:
            timing["quality_seconds"] = 0.0
        record = build_record(trigger, state, report_dict, quality, measurement_index=self.measurement_index)
        record["correlation"] = add_to_history(self._history, record, settings)
        should_stop, reason = False, None
        if self._plateau is not None:
            pair = settings.early_stopping_pair or next(iter(report_dict["pairs"]))
            decision = self._plateau.update(step, stop_value(record, settings))
            record["early_stopping"] = {"metric": settings.early_stopping_metric, "pair": pair, **decision.to_dict()}
            should_stop, reason = decision.should_stop, decision.reason
            if should_stop:
                say(f"stopping training at step {step}: {pair} {settings.early_stopping_metric.upper()} {reason}")
        finish_record(record, report_dict, timing, settings, inputs.data)
        self._last_record = record
        self._jsonl.log_measurement(record)
        if self._wandb is not None:
            self._wandb.log_measurement(record)  # never raises: W&B failures are warnings, the JSONL has everything
        if self._trackers is not None:
            self._trackers.log_measurement(record)  # trainer.log + each backend's details; never raises
        say(summary_line(record))  # progress a person can follow, one line per measurement
        return {"error": None, "eval_metrics": eval_metrics(report_dict["pairs"]), "should_stop": should_stop,
                "reason": reason}

    # ----- the end of a run ------------------------------------------------------------------------------------------
    def _complete_final_quality(self, state, kwargs) -> None:
        """Give the run's last measurement its quality point when it was measured without one.

        A run can stop at a step that was already measured on the alignment-only schedule (the plateau detector, a
        time-budget callback, an evaluation at the last step): that record is completed with translations and their
        scores in place (same step, same index, one JSONL line), so every run's last measurement carries quality.
        """
        step = int(state.global_step)
        if (not self.settings.quality_every or self._disabled is not None or not self._ready
                or step != self.last_measured_step or not self._last_ok or self._last_quality):
            return
        model, tokenizer = kwargs.get("model"), _tokenizer_from(kwargs)
        rng = RngState()
        snapshot = ModelSnapshot(model, tokenizer)
        try:
            translations, error, seconds = translate_all(self._inputs, model, tokenizer)
            outcome = {"error": error}
            if rank_and_world()[0] == 0 and error is None:
                outcome = {"error": attempt(lambda: self._add_quality(translations, seconds))[1]}
            outcome = broadcast_object(outcome)
        finally:
            snapshot.restore()
            rng.restore()
        self._last_quality = True  # tried: a failure would fail the same way again
        if outcome["error"] is not None:
            self._fail(f"NeuronXACallback: final quality at step {step} failed: {outcome['error']}")

    def _add_quality(self, translations: dict, generation_seconds: float) -> None:
        """Rank 0: score `translations` and re-log the last record with them (the JSONL line of its step is replaced)."""
        settings, inputs, old = self.settings, self._inputs, self._last_record
        start = time.perf_counter()
        quality = score_quality(translations, inputs.data, inputs.scorers, settings, inputs.examples)
        record: dict[str, Any] = {}
        for key, value in old.items():  # same key order as a record measured with quality
            if key != "quality":
                record[key] = value
            if key == "pairs":
                record["quality"] = quality
        timing = dict(old.get("timing") or {})
        timing["generation_seconds"] = timing.get("generation_seconds", 0.0) + generation_seconds
        timing["quality_seconds"] = timing.get("quality_seconds", 0.0) + time.perf_counter() - start
        record["timing"] = timing
        record["correlation"] = add_to_history(self._history, record, settings)  # replaces this step's entry
        self._last_record = record
        self._jsonl.log_measurement(record)
        if self._wandb is not None:
            self._wandb.log_measurement(record)
        if self._trackers is not None:  # the same step again: its quality scalars join the alignment already logged
            self._trackers.log_measurement(record)
        say(summary_line(record))

    def _fill_missing_best_metric(self, args, state, metrics: dict) -> None:
        """A failed or skipped measurement leaves no eval_neuronxa_* metric: when the Trainer selects the best model
        by one (metric_for_best_model) it would stop on a KeyError. Put in the worst value instead (never the best;
        an EarlyStoppingCallback counts it as no improvement), so training goes on."""
        name = getattr(args, "metric_for_best_model", None)
        if not name:
            return
        key = name if name.startswith("eval_") else f"eval_{name}"
        if not key.startswith(EVAL_PREFIX) or key in metrics:
            return
        greater_is_better = getattr(args, "greater_is_better", None) is not False
        metrics[key] = float("-inf") if greater_is_better else float("inf")
        logger.warning("NeuronXACallback: no alignment measured for the evaluation at step %d; %s=%s so that the "
                       "Trainer goes on (it never counts as the best model)", state.global_step, key, metrics[key])
