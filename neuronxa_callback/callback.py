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

When it measures: at step 0 before any update (the baseline, on_train_begin), every `eval_steps` optimizer steps
(on_step_end), at each Trainer evaluation (on_evaluate, if measure_on_evaluate) and once at the end (on_train_end).
A step is never measured twice. Every measurement scores NASCA/NAVCA on all layers; every `quality_every`-th one
(counting the baseline as the 0th) and the final one also translate the scored sentences with the model and scores the translations.

The callback never changes training: it runs under torch.no_grad in eval mode, consumes no training randomness
(RNG states are saved and restored around each measurement), and puts back every training flag, the tokenizer's
padding side and config.use_cache. A failure while measuring is logged (logger.error) and training goes on, unless
strict=True. Settings are validated at construction (ValueError naming the argument); problems that need the model
or the data (unknown language, bad file, unsupported architecture) surface at on_train_begin.

Resume: the callback is an ExportableState. With TrainingArguments(restore_callback_states_from_checkpoint=True)
the Trainer rebuilds it from the checkpoint (history, plateau counters). Without it, a fresh callback rebuilds both
from the JSONL file in the output directory. Either way records measured after the checkpoint are dropped from the
JSONL and measured again, so the file has no duplicates and no gaps.

DDP: every rank encodes its share of the sentences, rank 0 gathers, scores and logs, and all ranks agree on
should_training_stop. Translations are split across ranks too (each rank translates every world-th sentence) and
gathered. FSDP and DeepSpeed ZeRO-3 are refused at on_train_begin (see distributed.check_not_sharded).
"""
from __future__ import annotations

import datetime
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

from transformers.trainer_callback import ExportableState, TrainerCallback

from .distributed import broadcast_object, check_not_sharded, gather_objects, rank_and_world
from .settings import CallbackSettings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EVAL_PREFIX = "eval_neuronxa"
_HISTORY_QUALITY_METRICS = ("chrf", "bleu", "comet", "cometkiwi")


class MeasurementError(RuntimeError):
    """A measurement failed (raised only with strict=True; otherwise logged and training continues)."""


class _RngState:
    """Every global RNG a training step might draw from, captured and put back around a measurement."""

    def __init__(self) -> None:
        import numpy as np
        import torch

        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def restore(self) -> None:
        import numpy as np
        import torch

        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


class _ModelSnapshot:
    """Training flags of every module, tokenizer padding/truncation sides and config.use_cache, to put back after."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.training = [(module, module.training) for module in model.modules()]
        self.sides = {name: getattr(tokenizer, name) for name in ("padding_side", "truncation_side") if hasattr(tokenizer, name)}
        config = getattr(model, "config", None)
        self.use_cache = getattr(config, "use_cache", None) if config is not None else None

    def restore(self) -> None:
        for module, flag in self.training:
            module.training = flag
        for name, value in self.sides.items():
            setattr(self.tokenizer, name, value)
        config = getattr(self.model, "config", None)
        if config is not None and self.use_cache is not None:
            config.use_cache = self.use_cache


def _attempt(function: Callable[[], Any]) -> tuple[Any, str | None]:
    """(result, None) or (None, "Type: message"): errors become data so every DDP rank still reaches each collective."""
    try:
        return function(), None
    except Exception as error:  # noqa: BLE001 - reported by the caller (logged, or raised when strict)
        logger.debug("neuronxa measurement step failed", exc_info=True)
        return None, f"{type(error).__name__}: {error}"


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
    data: "bundled" (the packaged sample), "flores", a FLORES-200/NTREX directory or a .tsv/.jsonl file.
    languages: target languages (list or comma-separated string), scored against `pivot`.
    num_pairs / sample / seed: which sentence pairs to score ("first" n, or a seeded "random" subset).
    eval_steps: measure every k optimizer steps (0/None: only at train begin, evaluations and train end).
    measure_on_evaluate: also measure at each Trainer evaluation (adds eval_neuronxa_* metrics).
    representations / pooling / batch_size / max_length: passed to the NeuronXA encoder.
    quality_every: translate and score every k-th measurement (0 = never), on the first `quality_num_pairs` of the
        scored pairs (None = all of them); direction "x2en" (language -> pivot),
        "en2x" or "both"; quality_metrics ("chrf", "bleu"), comet_model / cometkiwi_model (name or local path),
        comet_device, num_fewshot (examples from the bundled few-shot pool, never the scored pairs),
        max_new_tokens, prompt ("auto", "fewshot", "chat" or a template).
    early_stopping_*: stop when `early_stopping_metric` of `early_stopping_pair` (default: the first pair) has not
        improved by more than min_delta for `patience` measurements (smoothing "none", "ema" with `factor`, or
        "window" of `window` values; never before `min_steps`). None = off.
    report_to: "auto" (W&B iff "wandb" in TrainingArguments.report_to), "wandb" or "none". The JSONL is always written.
    output_subdir: the JSONL goes to <args.output_dir>/<output_subdir>/metrics.jsonl.
    strict: raise on a failed measurement instead of logging it and training on.
    """

    def __init__(
        self,
        *,
        data: str = "bundled",
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
        strict: bool = False,
    ) -> None:
        arguments = dict(locals())
        del arguments["self"]
        self.settings = CallbackSettings.from_kwargs(**arguments)
        self._history = self._new_history()
        self._plateau = self._new_plateau()
        self.measurement_index = 0  # how many measurements this run has taken (the baseline is index 0)
        self.last_measured_step: int | None = None
        self._restored = False  # True when the Trainer restored our attributes from a checkpoint
        self._ready = False
        self._disabled: str | None = None  # why measuring is off for this run (a setup failure, non-strict)
        self._data = None
        self._examples: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._scorers: list[Any] = []
        self._jsonl = None
        self._wandb = None
        self._last_eval_metrics: tuple[int, dict[str, float]] | None = None
        self._stop_reason: str | None = None

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
            self._plateau = value if value is not None else self._new_plateau()
        else:
            self._plateau = PlateauDetector.from_state(value)
        self._restored = True

    def _new_history(self):
        from .tracking import MeasurementHistory

        return MeasurementHistory(quality_metrics=_HISTORY_QUALITY_METRICS)

    def _new_plateau(self):
        settings = self.settings
        if settings.early_stopping_patience is None:
            return None
        from .tracking import PlateauDetector

        return PlateauDetector(
            patience=settings.early_stopping_patience,
            min_delta=settings.early_stopping_min_delta,
            smoothing=settings.early_stopping_smoothing,
            smoothing_factor=settings.early_stopping_factor,
            window=settings.early_stopping_window,
            min_steps=settings.early_stopping_min_steps,
        )

    # ----- Trainer events ----------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._setup(args, state, kwargs.get("model"), _tokenizer_from(kwargs))
        self._measure("train_begin", args, state, control, kwargs)
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
        return control

    def on_train_end(self, args, state, control, **kwargs):
        try:
            self._measure("train_end", args, state, control, kwargs)
            self._log_report_figures()
        finally:
            if self._wandb is not None:
                self._wandb.finish()
                self._wandb = None
        return control

    def _log_report_figures(self) -> None:
        """The report's figures (as `neuronxa report` writes them) into the W&B run, before it is finished."""
        if self._wandb is None or self._jsonl is None:
            return
        from .report import write_report

        try:
            written = write_report(self._jsonl.path)
        except Exception as error:  # figures are a convenience: the JSONL already holds everything
            logger.warning("NeuronXACallback: report figures for W&B failed (%s: %s)", type(error).__name__, error)
            return
        self._wandb.log_figures({name: path for name, path in written.items() if str(path).endswith(".png")})

    # ----- set-up ------------------------------------------------------------------------------------------------------
    def _setup(self, args, state, model, tokenizer) -> None:
        """Load and check everything that needs the model or the data, once per train(); fail here, not hours later."""
        self._ready = True
        self._disabled = None
        # Sharded training is a configuration the callback cannot serve at all: always an error.
        check_not_sharded(args, model)
        rank, _ = rank_and_world()
        local_error = _attempt(lambda: self._setup_local(args, state, model, tokenizer, rank))[1]
        # Every rank must agree whether measuring is on, and on the schedule counters (rank 0 owns the files).
        errors = gather_objects(local_error)
        shared = None
        if rank == 0:
            error = next((e for e in errors if e), None)
            shared = {"error": error, "index": self.measurement_index, "last": self.last_measured_step}
        shared = broadcast_object(shared)
        self.measurement_index, self.last_measured_step = shared["index"], shared["last"]
        error = shared["error"]
        if error is not None:
            self._fail(f"NeuronXACallback could not start: {error}")
            self._disabled = error

    def _setup_local(self, args, state, model, tokenizer, rank: int) -> None:
        from .architectures import activation_modules
        from .data import load_parallel

        settings = self.settings
        if model is None:
            raise ValueError("the Trainer passed no model to the callback")
        if tokenizer is None:
            raise ValueError("the Trainer has no tokenizer: pass processing_class=tokenizer to Trainer(...)")
        activation_modules(model)  # UnsupportedArchitectureError (with how-to-register) now, not at the first measurement
        self._data = load_parallel(
            settings.data,
            pivot=settings.pivot,
            languages=settings.languages,
            num_pairs=settings.num_pairs,
            sample=settings.sample,
            seed=settings.seed,
        )
        if settings.early_stopping_pair is not None:
            pairs = [self._data.pair_name(lang) for lang in self._data.targets]
            if settings.early_stopping_pair not in pairs:
                raise ValueError(f"early_stopping_pair={settings.early_stopping_pair!r} is not one of the pairs {pairs}")
        if settings.quality_every:
            self._examples = self._fewshot_examples()
            if rank == 0:
                self._scorers = self._load_scorers()
        if rank == 0:
            self._open_logs(args, state)

    def _fewshot_examples(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(source_lang, target_lang) -> few-shot examples from the bundled pool, never the scored sentences."""
        from .fewshot import load_fewshot_examples

        scored = {text for lang in self._data.languages for text in self._data.sentences(lang)}
        examples = {}
        for source_lang, target_lang in self._directions():
            try:
                examples[(source_lang, target_lang)] = load_fewshot_examples(
                    source_lang, target_lang, k=self.settings.num_fewshot, exclude=scored
                )
            except (ValueError, OSError) as error:  # no pool or no such language: zero-shot rather than leak
                logger.warning("NeuronXACallback: no few-shot examples for %s->%s (%s); translating zero-shot",
                               source_lang, target_lang, error)
                examples[(source_lang, target_lang)] = []
        return examples

    def _load_scorers(self) -> list[tuple[str, Any]]:
        """[(metric key, scorer)]. A COMET model that cannot load is an error now (strict) or dropped (logged)."""
        from .quality import make_scorers

        settings = self.settings
        scorers = [(name, scorer) for name, scorer in zip(settings.quality_metrics, make_scorers(settings.quality_metrics))]
        device = settings.comet_device or "cpu"
        for key, argument, model_name in (
            ("comet", "comet_model", settings.comet_model),
            ("cometkiwi", "cometkiwi_model", settings.cometkiwi_model),
        ):
            if model_name is None:
                continue
            try:
                (scorer,) = make_scorers([key], **{argument: model_name}, device=device)
                scorer.model  # noqa: B018 - loads now, so a bad path fails at train begin, not at the first score
                scorers.append((key, scorer))
            except Exception as error:
                self._fail(f"NeuronXACallback: {argument}={model_name!r} could not be loaded ({type(error).__name__}: {error})")
        return scorers

    def _open_logs(self, args, state) -> None:
        from .loggers import JsonlLogger, WandbLogger

        settings = self.settings
        path = Path(args.output_dir) / settings.output_subdir / "metrics.jsonl"
        step = int(state.global_step)
        # A fresh run (step 0) starts a fresh file; a resumed one keeps what was measured up to its checkpoint.
        self._jsonl = JsonlLogger(path, resume_step=step if step > 0 else -1)
        measured = [r for r in self._jsonl.records if r.get("event", "measurement") == "measurement"]
        if step > 0:
            self._resume_from(measured, step)
        else:
            self._history, self._plateau = self._new_history(), self._new_plateau()
            self.measurement_index, self.last_measured_step = 0, None
        if self._use_wandb(args):
            self._wandb = WandbLogger(
                project=settings.wandb_project, config={"neuronxa": settings.to_json()}, previous_records=measured
            )

    def _resume_from(self, records: list[dict], step: int) -> None:
        """Bring history, plateau detector and counters to the checkpoint at `step`."""
        if self._restored:  # the Trainer restored our state from the checkpoint (restore_callback_states_from_checkpoint)
            self._history.truncate_after(step)
        else:  # a fresh callback: rebuild from the JSONL, which holds exactly the same numbers
            self._history, self._plateau = self._new_history(), self._new_plateau()
            for record in records:
                self._add_to_history(record)
                decision_value = self._stop_value(record)
                if self._plateau is not None and decision_value is not None:
                    self._plateau.update(record["step"], decision_value)
            self.measurement_index = len(records)
        if records:
            self.last_measured_step = max(r["step"] for r in records)
            self.measurement_index = max(self.measurement_index, len(records))
        logger.info("NeuronXACallback: resuming at step %d with %d earlier measurement(s)", step, len(records))

    def _use_wandb(self, args) -> bool:
        report_to = self.settings.report_to
        if report_to == "auto":
            trainer_report = getattr(args, "report_to", None) or []
            if isinstance(trainer_report, str):
                trainer_report = [trainer_report]
            return "wandb" in trainer_report or "all" in trainer_report
        return report_to == "wandb"

    def _directions(self) -> list[tuple[str, str]]:
        """(source_lang, target_lang) for every translation direction scored."""
        pivot = self._data.pivot
        out = []
        for lang in self._data.targets:
            for direction in self.settings.pairs_direction:
                out.append((lang, pivot) if direction == "x2en" else (pivot, lang))
        return out

    # ----- measuring ---------------------------------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        if self.settings.strict:
            raise MeasurementError(message)
        logger.error("%s; training continues without it (strict=False)", message)

    def _measure(self, trigger: str, args, state, control, kwargs) -> None:
        step = int(state.global_step)
        if self._disabled is not None or not self._ready or step == self.last_measured_step:
            return
        model, tokenizer = kwargs.get("model"), _tokenizer_from(kwargs)
        rng = _RngState()
        snapshot = _ModelSnapshot(model, tokenizer)
        try:
            outcome = self._run_measurement(trigger, args, state, model, tokenizer)
        finally:
            snapshot.restore()
            rng.restore()
        # The step counts as measured even when it failed: retrying the same step would fail the same way.
        self.last_measured_step = step
        self.measurement_index += 1
        if outcome["error"] is not None:
            self._fail(f"NeuronXACallback: measurement at step {step} ({trigger}) failed: {outcome['error']}")
            return
        self._last_eval_metrics = (step, outcome["eval_metrics"])
        if outcome["should_stop"]:
            control.should_training_stop = True
            self._stop_reason = outcome["reason"]

    def _run_measurement(self, trigger: str, args, state, model, tokenizer) -> dict:
        """The collective part: every rank runs the same sequence of gathers and broadcasts, errors travel as data."""
        rank, world = rank_and_world()
        shard = (rank, world) if world > 1 else None
        settings = self.settings
        index = self.measurement_index
        # The final measurement always scores quality too (when quality is on): a run that stops early (plateau,
        # max_steps, a time budget) would otherwise end without the "after" point of its quality curve.
        final = trigger == "train_end" or 0 < state.max_steps <= state.global_step
        with_quality = bool(settings.quality_every) and (index % settings.quality_every == 0 or final)

        start = time.perf_counter()
        local, error = _attempt(lambda: self._encode_all(model, tokenizer, shard))
        gathered = gather_objects((local, error))
        report = None
        if rank == 0:
            error = next((e for _, e in gathered if e), None)
            if error is None:
                report, error = _attempt(lambda: self._score([part for part, _ in gathered], model))
        alignment_seconds = time.perf_counter() - start

        translations, generation_seconds = None, 0.0
        if with_quality:
            start = time.perf_counter()
            mine, local_error = _attempt(lambda: self._translate_share(model, tokenizer, rank, world))
            gathered = gather_objects((mine, local_error))
            if rank == 0:
                error = error or next((e for _, e in gathered if e), None)
                if error is None:
                    translations = _merge_translations([part for part, _ in gathered])
            generation_seconds = time.perf_counter() - start

        outcome = {"error": error, "eval_metrics": {}, "should_stop": False, "reason": None}
        if rank == 0 and error is None:
            timing = {"alignment_seconds": alignment_seconds, "generation_seconds": generation_seconds}
            result, error = _attempt(lambda: self._record(trigger, state, report, translations, timing))
            outcome = result if error is None else {**outcome, "error": error}
        return broadcast_object(outcome)

    def _encode_all(self, model, tokenizer, shard) -> Any:
        """Every language's sentences in one encode() call (the pivot once for all pairs); this rank's shard under DDP."""
        from .activations import encode
        from .alignment import parallel_sentences

        settings = self.settings
        return encode(
            model,
            tokenizer,
            parallel_sentences(self._data),
            representations=settings.representations,
            pooling=settings.pooling,
            batch_size=settings.batch_size,
            max_length=settings.max_length,
            shard=shard,
        )

    def _score(self, parts: list[Any], model) -> Any:
        """Rank 0: merge the ranks' rows (sentence order) and score every pair: an AlignmentReport."""
        from .alignment import score_encoded
        from .distributed import merge_encoded

        settings = self.settings
        total = len(self._data) * len(self._data.languages)
        encoded = parts[0] if len(parts) == 1 else merge_encoded(parts, total)
        config = getattr(model, "config", None)
        return score_encoded(
            encoded,
            self._data,
            pooling=settings.pooling,
            model_name=getattr(config, "_name_or_path", None) or type(model).__name__,
            batch_size=settings.batch_size,
            max_length=settings.max_length,
        )

    def _translate_share(self, model, tokenizer, rank: int, world: int) -> dict[tuple[str, str], list[tuple[int, str]]]:
        """This rank's translations: sentence i goes to rank i % world. {(src, tgt): [(i, hypothesis), ...]}."""
        from .generation import translate

        out = {}
        for source_lang, target_lang in self._directions():
            sources = self._quality_slice(self._data.sentences(source_lang))
            mine = list(range(rank, len(sources), world))
            hypotheses = translate(
                model,
                tokenizer,
                [sources[i] for i in mine],
                source_lang=source_lang,
                target_lang=target_lang,
                prompt=self.settings.prompt,
                examples=self._examples.get((source_lang, target_lang), []),
                batch_size=self.settings.batch_size,
                max_new_tokens=self.settings.max_new_tokens,
            ) if mine else []
            out[(source_lang, target_lang)] = list(zip(mine, hypotheses))
        return out

    # ----- rank 0: scores, history, early stopping, logs ---------------------------------------------------------------
    def _record(self, trigger: str, state, report, translations, timing: dict[str, float]) -> dict:
        settings = self.settings
        step = int(state.global_step)
        report_dict = report.to_dict()
        quality = None
        if translations is not None:
            start = time.perf_counter()
            quality = self._score_quality(translations)
            timing["quality_seconds"] = time.perf_counter() - start
        else:
            timing["quality_seconds"] = 0.0
        record = {
            "schema": SCHEMA_VERSION,
            "event": "measurement",
            "step": step,
            "epoch": state.epoch,
            "trigger": trigger,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "measurement_index": self.measurement_index,
            "pairs": report_dict["pairs"],
        }
        if quality is not None:
            record["quality"] = quality
        record["correlation"] = self._add_to_history(record)
        should_stop, reason = False, None
        if self._plateau is not None:
            pair = settings.early_stopping_pair or next(iter(report_dict["pairs"]))
            decision = self._plateau.update(step, self._stop_value(record))
            record["early_stopping"] = {"metric": settings.early_stopping_metric, "pair": pair, **decision.to_dict()}
            should_stop, reason = decision.should_stop, decision.reason
            if should_stop:
                logger.info("NeuronXACallback: stopping training at step %d: %s %s: %s",
                            step, pair, settings.early_stopping_metric, reason)
        record["timing"] = {**timing, "alignment_forward_seconds": report_dict.get("timing", {}).get("forward_seconds")}
        record["settings"] = settings.to_json()
        record["data"] = {"origin": self._data.origin, "ids": list(self._data.ids)}
        self._jsonl.log_measurement(record)
        if self._wandb is not None:
            self._wandb.log_measurement(record)  # never raises: W&B failures are warnings, the JSONL has everything
        return {"error": None, "eval_metrics": _eval_metrics(report_dict["pairs"]), "should_stop": should_stop,
                "reason": reason}

    def _stop_value(self, record: dict) -> float | None:
        pairs = record.get("pairs") or {}
        if not pairs:
            return None
        pair = self.settings.early_stopping_pair or next(iter(pairs))
        value = (pairs.get(pair) or {}).get(f"{self.settings.early_stopping_metric}_mean")
        return float(value) if value is not None else None

    def _add_to_history(self, record: dict) -> dict:
        """Add one JSONL record to the history and return the running correlations (the record's "correlation")."""
        pairs = record.get("pairs") or {}
        metric = "nasca" if "nas" in self.settings.representations else "navca"
        means = {pair: scores[f"{metric}_mean"] for pair, scores in pairs.items() if scores.get(f"{metric}_mean") is not None}
        per_layer = {pair: scores[metric] for pair, scores in pairs.items() if pair in means}
        quality = {pair: {m: q.get(m) for m in _HISTORY_QUALITY_METRICS} for pair, q in (record.get("quality") or {}).items()}
        if not means:
            return {}
        return self._history.append(int(record["step"]), means, per_layer, quality or None)

    def _quality_slice(self, sentences):
        """The sentences translated for quality: the first quality_num_pairs of the scored ones (all when None)."""
        limit = self.settings.quality_num_pairs
        return sentences if limit is None else sentences[:limit]

    def _score_quality(self, translations: dict[tuple[str, str], list[str]]) -> dict[str, dict]:
        """{pair: {"direction", metric values, "signatures", "translations"}}; with direction="both" each direction is
        under "directions" and the pair's metric values are the mean over the two directions."""
        data = self._data
        per_pair: dict[str, list[dict]] = {}
        for (source_lang, target_lang), hypotheses in translations.items():
            other = target_lang if source_lang == data.pivot else source_lang
            sources = self._quality_slice(data.sentences(source_lang))
            references = self._quality_slice(data.sentences(target_lang))
            entry: dict[str, Any] = {"direction": f"{source_lang}->{target_lang}"}
            signatures = {}
            for name, scorer in self._scorers:
                try:
                    score = scorer.score(list(sources), list(hypotheses), list(references))
                    entry[name] = _finite(score.system)
                    signatures[name] = getattr(score, "signature", None)
                except Exception as error:  # one broken metric must not cost the others
                    self._fail(f"NeuronXACallback: quality metric {name} failed ({type(error).__name__}: {error})")
                    entry[name] = None
            entry["signatures"] = signatures
            entry["translations"] = [
                {"id": data.ids[i], "source": sources[i], "hypothesis": hypotheses[i], "reference": references[i]}
                for i in range(len(sources))
            ]
            per_pair.setdefault(data.pair_name(other), []).append(entry)
        out = {}
        for pair, entries in per_pair.items():
            if len(entries) == 1:
                out[pair] = entries[0]
                continue
            names = [k for k in entries[0] if k not in ("direction", "signatures", "translations")]
            combined: dict[str, Any] = {"direction": "both"}
            for name in names:
                values = [e.get(name) for e in entries]
                combined[name] = sum(values) / len(values) if all(v is not None for v in values) else None
            combined["directions"] = {e["direction"]: e for e in entries}
            out[pair] = combined
        return out


def _merge_translations(parts: list[dict]) -> dict[tuple[str, str], list[str]]:
    """The ranks' (index, hypothesis) lists merged into one list per direction, in sentence order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for direction in parts[0]:
        rows = sorted(row for part in parts for row in part[direction])
        merged[direction] = [hypothesis for _, hypothesis in rows]
    return merged


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _eval_metrics(pairs: dict[str, dict]) -> dict[str, float]:
    """eval_neuronxa_nasca (mean over pairs of the layer mean), eval_neuronxa_navca, eval_neuronxa_<pair>_nasca."""
    metrics: dict[str, float] = {}
    for metric in ("nasca", "navca"):
        values = [scores[f"{metric}_mean"] for scores in pairs.values() if scores.get(f"{metric}_mean") is not None]
        if values:
            metrics[f"{EVAL_PREFIX}_{metric}"] = float(sum(values) / len(values))
        for pair, scores in pairs.items():
            if scores.get(f"{metric}_mean") is not None:
                metrics[f"{EVAL_PREFIX}_{pair}_{metric}"] = float(scores[f"{metric}_mean"])
    return metrics
