"""NeuronXACallback: measure cross-lingual alignment (NASCA/NAVCA) while the Hugging Face Trainer fine-tunes a model.

The Trainer's events drive an AlignmentMonitor (monitor.py), which does the work; this module maps events onto it,
adds the Trainer's own outputs (eval_neuronxa_* metrics, should_training_stop, the Trainer's trackers) and makes the
monitor's state part of the Trainer's checkpoints.

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

import inspect
import logging
import warnings
from typing import Any

from transformers.trainer_callback import ExportableState, TrainerCallback

from neuronxa_callback.measure.record import EVAL_PREFIX, SCHEMA_VERSION
from neuronxa_callback.monitor import AlignmentMonitor
from neuronxa_callback.parallel.agreement import MeasurementError
from neuronxa_callback.settings import CallbackSettings
from neuronxa_callback.sinks import routing as _sinks

logger = logging.getLogger(__name__)

__all__ = ["NeuronXACallback", "MeasurementError", "SCHEMA_VERSION", "EVAL_PREFIX"]

_PIN_MEMORY_WITHOUT_ACCELERATOR = r"'pin_memory' argument is set as true but no accelerator is found"
# The attributes of state() the Trainer restores one by one with setattr on a callback rebuilt from a checkpoint.
_STATE_ATTRIBUTES = ("history", "plateau", "measurement_index", "last_measured_step")


def _tokenizer_from(kwargs: dict[str, Any]) -> Any:
    """The tokenizer the Trainer passes to callbacks (processing_class in transformers 5, tokenizer before)."""
    tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
    # A multimodal processor wraps the tokenizer.
    if tokenizer is not None and not hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer
    return tokenizer


def _reject_unknown_arguments(kwargs: dict[str, Any]) -> None:
    """A misspelt keyword is a TypeError, as for any Python function, with the nearest known name."""
    import difflib

    known = CallbackSettings.__dataclass_fields__
    for name in kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"NeuronXACallback got an unexpected keyword argument {name!r}{hint}")


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
        "window" of `window` values; never before `min_steps`). None = off. early_stopping_criterion="paired_test"
        (default "min_delta"): improvement = a paired test over sentences against the best measurement with
        p < early_stopping_alpha (0.05) and a change above min_delta (docs/guide/statistics.md).
    report_to: "auto" (W&B iff "wandb" in TrainingArguments.report_to), "wandb" or "none". The JSONL is always written.
    output_subdir: the JSONL goes to <args.output_dir>/<output_subdir>/metrics.jsonl (and summary.json at the end).
    strict: None (default): a callback that cannot start stops the run before training, a later failed measurement
        is logged and training goes on; True: every failure raises MeasurementError; False: never raise, even when
        nothing can be measured (the end of the run says so).
    measure_in: "process" (default: training waits for each measurement), "worker" (a process on this machine scores
        snapshots of the weights while training goes on) or "ray" (a Ray actor). worker_device ("cpu", "cuda:1"),
        worker_threads, worker_max_in_flight (snapshots awaiting results before training waits; the wait is recorded),
        worker_timeout (seconds), ray_address (None: a local Ray instance). See docs/guide/out-of-band.md.
    """

    def __init__(self, **kwargs: Any) -> None:
        # The arguments are CallbackSettings' fields, declared once there (see __signature__ below).
        _reject_unknown_arguments(kwargs)
        self.monitor = AlignmentMonitor(CallbackSettings.from_kwargs(**kwargs))
        self._trainer = None  # set by attach(): the Trainer whose log() reaches every tracker in report_to
        self._closed_before_trackers = False  # attach()'s link already ran the train-end work

    @property
    def settings(self) -> CallbackSettings:
        return self.monitor.settings

    def attach(self, trainer: Any) -> NeuronXACallback:
        """Add this callback to `trainer` and log through it, so the alignment reaches every tracker in report_to.

        Usage: ``callback = NeuronXACallback(...).attach(trainer)`` (after building the Trainer, without listing it
        in ``callbacks=``; listing it too is fine). Headline numbers go through ``trainer.log`` (every tracker,
        log_history, the console), per-layer series and media straight to W&B / trackio / TensorBoard / MLflow;
        see neuronxa_callback/sinks/trackers.py. The reference is not part of state(): a callback the Trainer rebuilds
        from a checkpoint is linked again at train begin.
        """
        from neuronxa_callback.sinks.trackers import link_to_trainer

        link_to_trainer(self, trainer)
        return self

    # ----- ExportableState: the monitor's state inside the Trainer's checkpoints -----------------------------------
    def state(self) -> dict:
        """{"args": the constructor kwargs, "attributes": history, plateau state, counters}; all JSON-serialisable."""
        return {"args": self.settings.to_json(), "attributes": self.monitor.state_dict()}

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found normally: the monitor's state, readable as the callback's own.
        if name in _STATE_ATTRIBUTES and "monitor" in self.__dict__:
            return getattr(self.monitor, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _STATE_ATTRIBUTES:  # the Trainer restoring a checkpoint's callback state
            self.monitor.restore(name, value)
        else:
            super().__setattr__(name, value)

    # ----- Trainer events ----------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        # The Trainer pins memory by default; on a machine without an accelerator torch then warns at every epoch
        # about something the user cannot act on (pinning is simply skipped). Only that one message is hidden.
        warnings.filterwarnings("ignore", message=_PIN_MEMORY_WITHOUT_ACCELERATOR, category=UserWarning)
        self._begin(args, state, kwargs)
        # The baseline, before any update. A resumed run already has its points up to the checkpoint: measuring the
        # resume step too would make the JSONL depend on where the run was interrupted.
        if state.global_step == 0 or self.monitor.last_measured_step is None:
            self._measure("train_begin", args, state, control, kwargs)
        if 0 < state.max_steps <= state.global_step:
            # Seen with transformers 5 (tests/_fault_run.py): a resume at max_steps still trains one step more.
            logger.warning(
                "NeuronXACallback: resuming at step %d, already max_steps=%d: the Trainer may train (and "
                "the callback measure) one step beyond it",
                state.global_step,
                state.max_steps,
            )
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.monitor.due(state.global_step):
            self._measure("step", args, state, control, kwargs)
        self._before_checkpoint(state, control)
        if self.monitor.should_stop:  # out of band: a result that arrived at this step asked to stop
            control.should_training_stop = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.monitor.ready:  # trainer.evaluate() before train(): set up on first use
            self._begin(args, state, kwargs)
        if self.settings.measure_on_evaluate:
            self._measure("evaluate", args, state, control, kwargs)  # at a step already measured: waits for it
        elif self.monitor.last_measured_step == state.global_step:  # out of band, this step's result may be in flight
            self.monitor.wait_for_results(step=int(state.global_step), reason="evaluate")
        # Mutate the dict the Trainer passed: later callbacks (EarlyStoppingCallback) and the best-model logic see it.
        last = self.monitor.last_eval_metrics
        if metrics is not None and last is not None and last[0] == state.global_step:
            metrics.update(last[1])
        if metrics is not None:
            self._fill_missing_best_metric(args, state, metrics)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        # The Trainer calls on_epoch_end right after it leaves the step loop, whoever stopped it (max_steps, our
        # plateau detector, another callback), and before load_best_model_at_end swaps the weights: the last point
        # at which the final model can be measured.
        if control.should_training_stop:
            self._measure("train_end", args, state, control, kwargs)
            self.monitor.complete_final_quality(
                kwargs.get("model"), _tokenizer_from(kwargs), step=int(state.global_step)
            )
        self._before_checkpoint(state, control)
        return control

    def on_save(self, args, state, control, **kwargs):
        # A save requested after this callback's on_step_end (by a later callback, or save_strategy="best" after an
        # evaluation) was not drained before it: the checkpoint's monitor state may lack what was in flight, but the
        # JSONL gets it now, and a resume rebuilds what the state lacks from the JSONL.
        self.monitor.before_checkpoint(step=int(state.global_step))
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._closed_before_trackers:  # attached: done already, before the Trainer's integrations closed their runs
            self._closed_before_trackers = False
            return control
        self.monitor.end(kwargs.get("model"), _tokenizer_from(kwargs), step=int(state.global_step), epoch=state.epoch)
        return control

    def _finish_before_trackers_close(self, args, state, control, **kwargs):
        """on_train_end's work, called by attach()'s link ahead of the integrations (trackio, TensorBoard and MLflow
        close their runs in their own on_train_end; the final measurement must reach them first)."""
        self._closed_before_trackers = False
        self.on_train_end(args, state, control, **kwargs)
        self._closed_before_trackers = True

    # ----- the Trainer's side of a measurement -------------------------------------------------------------------------
    def _begin(self, args, state, kwargs) -> None:
        self.monitor.begin(
            kwargs.get("model"),
            _tokenizer_from(kwargs),
            output_dir=args.output_dir,
            step=int(state.global_step),
            sinks=lambda measured: self._sinks(args, measured),
        )

    def _sinks(self, args, measured: list[dict]) -> list[Any]:
        """Rank 0: where records go besides the JSONL. Attached: the Trainer's trackers (W&B among them when in
        report_to). Not attached: W&B alone when asked for, and a hint that attach() reaches the others."""
        attached = self._trainer is not None
        sinks: list[Any] = []
        if attached:
            sinks.append(_sinks.open_trackers(self.settings, self._trainer, measured))
        if _sinks.wandb_besides_trackers(self.settings, args, attached):
            sinks.append(_sinks.open_wandb(self.settings, measured))
        _sinks.hint_attach(args, attached)
        return sinks

    def _measure(self, trigger: str, args, state, control, kwargs) -> None:
        # The final measurement always scores quality too (when quality is on): a run that stops early (plateau,
        # max_steps, a time budget) would otherwise end without the "after" point of its quality curve.
        final = 0 < state.max_steps <= state.global_step or bool(control.should_training_stop)
        self.monitor.measure(
            kwargs.get("model"),
            _tokenizer_from(kwargs),
            step=int(state.global_step),
            epoch=state.epoch,
            trigger=trigger,
            final=final,
        )
        if self.monitor.should_stop:
            control.should_training_stop = True

    def _before_checkpoint(self, state, control) -> None:
        """The Trainer saves a checkpoint right after on_step_end / on_epoch_end when control.should_save (decided
        by DefaultFlowCallback, which runs first) and takes this callback's state() inside that save, before it
        calls on_save: measurements in flight are written now, so the checkpoint's state and the JSONL hold them."""
        if control.should_save:
            self.monitor.before_checkpoint(step=int(state.global_step))

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
        logger.warning(
            "NeuronXACallback: no alignment measured for the evaluation at step %d; %s=%s so that the "
            "Trainer goes on (it never counts as the best model)",
            state.global_step,
            key,
            metrics[key],
        )


# help(NeuronXACallback) and IDEs show the keyword arguments and defaults that CallbackSettings declares.
# inspect reads __signature__ from any function; typeshed's FunctionType does not declare it.
NeuronXACallback.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [
        inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default)
        for field in CallbackSettings.__dataclass_fields__.values()
    ]
)
