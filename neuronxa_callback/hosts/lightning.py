"""NeuronXALightningCallback: NeuronXA measurements while PyTorch Lightning fine-tunes a Hugging Face model.

Usage::

    import lightning.pytorch as pl                     # or: import pytorch_lightning as pl
    from neuronxa_callback.hosts.lightning import NeuronXALightningCallback

    class LitLM(pl.LightningModule):
        def __init__(self, model, tokenizer):
            super().__init__()
            self.model, self.tokenizer = model, tokenizer    # the callback measures self.model with self.tokenizer
        ...

    callback = NeuronXALightningCallback(languages=["isl_Latn"], eval_steps=50, quality_every=2)
    trainer = pl.Trainer(max_steps=1000, callbacks=[callback], logger=pl.loggers.CSVLogger("logs"))
    trainer.fit(LitLM(model, tokenizer))     # -> <default_root_dir>/neuronxa/metrics.jsonl

The arguments are NeuronXACallback's (see hosts/trainer.py), plus where the model and tokenizer are: ``model_attr``
(default "model", a dotted path on the LightningModule) and ``tokenizer`` (default: ``pl_module.tokenizer``), and
``output_dir`` (default: ``trainer.default_root_dir``).

When it measures: the baseline at step 0 in on_train_start (not again when resuming), every ``eval_steps`` optimizer
steps in on_train_batch_end (``trainer.global_step`` counts optimizer steps: with gradient accumulation only the batch
that stepped the optimizer measures), at each validation if ``measure_on_evaluate`` (never the sanity check), and the
final one in on_train_end. Each measurement's headline numbers go to every logger in ``trainer.loggers`` (``neuronxa/
<pair>/nasca_mean`` ..., on the measured step; report_to="none" keeps them out) and its ``eval_neuronxa_*`` metrics
into ``trainer.callback_metrics``, where ModelCheckpoint(monitor="eval_neuronxa_nasca", mode="max") finds them.
A plateau (early_stopping_*) sets ``trainer.should_stop``; every rank agrees.

Resume: the callback's state (history, plateau counters) is part of Lightning's checkpoints; ``trainer.fit(...,
ckpt_path=...)`` continues the JSONL without duplicates or gaps (records after the checkpoint's step are measured again).

DDP: every rank runs the callback (the measurement is a collective); rank 0 writes and logs.

Import: this module imports Lightning (``lightning.pytorch`` when installed, else ``pytorch_lightning``); the callback
must derive from the package your Trainer comes from, so with both installed it fits ``lightning.pytorch`` only
(``neuronxa_callback.hosts.lightning.pl`` is the package it chose). ``import neuronxa_callback`` never imports Lightning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from neuronxa_callback.hosts._scalars import HostScalarSink
from neuronxa_callback.monitor import AlignmentMonitor
from neuronxa_callback.settings import CallbackSettings

try:  # the unified package first: it is what Lightning's own documentation imports
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

logger = logging.getLogger("neuronxa_callback")

__all__ = ["NeuronXALightningCallback", "LightningLoggers", "pl"]


class LightningLoggers(HostScalarSink):
    """Rank 0: each record's headline scalars to every logger of a Lightning Trainer (logger.log_metrics)."""

    name = "Lightning loggers"

    def __init__(self, trainer: Any) -> None:
        self._loggers = list(getattr(trainer, "loggers", None) or [])
        self._last_step = 0  # the figures of the report go on the run's last measured step

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        self._last_step = step
        for item in self._loggers:
            item.log_metrics(dict(scalars), step=step)

    def log_figures(self, figures: dict[str, Any]) -> None:
        # Only TensorBoard's writer takes images through one common call; the other loggers' image APIs differ and
        # the report folder holds the PNGs anyway.
        for item in self._loggers:
            writer = getattr(item, "experiment", None) if type(item).__name__ == "TensorBoardLogger" else None
            if writer is None or not hasattr(writer, "add_image"):
                continue
            try:
                import matplotlib.image

                for name, path in figures.items():
                    image = matplotlib.image.imread(str(path))[..., :3]
                    writer.add_image(f"neuronxa/figures/{name}", image, self._last_step, dataformats="HWC")
                writer.flush()
            except Exception as error:
                logger.warning("NeuronXA: report figures to TensorBoard failed (%s: %s)", type(error).__name__, error)

    def finish(self) -> None:
        # CSVLogger buffers rows until save(); the final measurement comes after Lightning's last save of the loop.
        for item in self._loggers:
            try:
                item.save()
            except Exception as error:
                logger.warning("NeuronXA: saving %s failed (%s: %s)", type(item).__name__, type(error).__name__, error)


class NeuronXALightningCallback(pl.Callback):
    """Measure NeuronXA alignment (and optionally translation quality) during Lightning fine-tuning.

    Keyword arguments: NeuronXACallback's (CallbackSettings' fields), plus model_attr, tokenizer and output_dir
    (see the module docstring).
    """

    def __init__(
        self, *, model_attr: str = "model", tokenizer: Any = None, output_dir: str | Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        self.monitor = AlignmentMonitor(CallbackSettings.from_kwargs(**kwargs))
        self.model_attr = model_attr
        self.tokenizer = tokenizer
        self.output_dir = output_dir
        self._seen_step: int | None = None  # trainer.global_step at the last batch end: a change = an optimizer step
        self._epoch: float | None = None  # the fractional epoch at the last batch end (Lightning's counts whole ones)

    @property
    def settings(self) -> CallbackSettings:
        return self.monitor.settings

    @property
    def state_key(self) -> str:
        # Two callbacks writing to different subfolders keep separate states in one checkpoint.
        return self._generate_state_key(output_subdir=self.settings.output_subdir)

    # ----- Lightning checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state_dict)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Every rank builds the checkpoint; Lightning took state_dict() just before this hook. Out of band, the
        # measurements in flight are written now and the checkpoint gets the state that includes them.
        self.monitor.before_checkpoint(step=int(trainer.global_step))
        if self.state_key in checkpoint.get("callbacks", {}):
            checkpoint["callbacks"][self.state_key] = self.state_dict()
        if self.monitor.should_stop:  # a result written here asked to stop
            trainer.should_stop = True

    # ----- Lightning events ------------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._begin(trainer, pl_module)
        step = int(trainer.global_step)
        self._seen_step, self._epoch = step, None
        # A resumed run already has its points up to the checkpoint; measuring the resume step again would make
        # the JSONL depend on where the run was interrupted.
        if step == 0 or self.monitor.last_measured_step is None:
            self._measure(trainer, pl_module, "train_begin")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if step == self._seen_step:  # gradient accumulation: this batch did not step the optimizer
            return
        self._seen_step, self._epoch = step, _epoch(trainer, batch_idx)
        if self.monitor.due(step):
            self._measure(trainer, pl_module, "step")
        elif self.monitor.should_stop:  # out of band: a result that arrived at this step asked to stop
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self.settings.measure_on_evaluate:
            return
        if not self.monitor.ready:  # trainer.validate() before fit(): set up on first use
            self._begin(trainer, pl_module)
        self._measure(trainer, pl_module, "evaluate")

    def on_train_end(self, trainer, pl_module) -> None:
        # Measured here rather than inside monitor.end() so that callback_metrics get the final numbers too; end()
        # then finds the step measured and completes the run (quality, figures, summary, sinks closed) regardless.
        try:
            self._measure(trainer, pl_module, "train_end")
        finally:
            model, tokenizer = self._model_and_tokenizer(pl_module)
            self.monitor.end(model, tokenizer, step=int(trainer.global_step), epoch=self._current_epoch(trainer))

    # ----- Lightning's side of a measurement --------------------------------------------------------------------------
    def _model_and_tokenizer(self, pl_module) -> tuple[Any, Any]:
        model = pl_module
        for name in self.model_attr.split("."):
            if not hasattr(model, name):
                raise AttributeError(
                    f"NeuronXALightningCallback: {type(pl_module).__name__} has no {self.model_attr!r}"
                    " (the Hugging Face model to measure); pass model_attr=<its attribute>"
                )
            model = getattr(model, name)
        tokenizer = self.tokenizer if self.tokenizer is not None else getattr(pl_module, "tokenizer", None)
        if tokenizer is None:
            raise AttributeError(
                f"NeuronXALightningCallback: no tokenizer; pass tokenizer= or set {type(pl_module).__name__}.tokenizer"
            )
        # A multimodal processor wraps the tokenizer.
        if not hasattr(tokenizer, "pad_token_id") and hasattr(tokenizer, "tokenizer"):
            tokenizer = tokenizer.tokenizer
        return model, tokenizer

    def _begin(self, trainer, pl_module) -> None:
        model, tokenizer = self._model_and_tokenizer(pl_module)
        output_dir = self.output_dir if self.output_dir is not None else trainer.default_root_dir
        sinks = None if self.settings.report_to == "none" else (lambda measured: [LightningLoggers(trainer)])
        self.monitor.begin(model, tokenizer, output_dir=output_dir, step=int(trainer.global_step), sinks=sinks)

    def _current_epoch(self, trainer) -> float:
        # At train end Lightning has already counted the interrupted epoch as done: the last batch's value is right.
        return self._epoch if self._epoch is not None else float(trainer.current_epoch)

    def _measure(self, trainer, pl_module, trigger: str) -> None:
        model, tokenizer = self._model_and_tokenizer(pl_module)
        step = int(trainer.global_step)
        # The last step always scores quality too (when quality is on): the "after" point of the quality curve.
        final = 0 < (trainer.max_steps or 0) <= step
        measured = self.monitor.measure(
            model, tokenizer, step=step, trigger=trigger, final=final, epoch=self._current_epoch(trainer)
        )
        last = self.monitor.last_eval_metrics
        if measured and last is not None and last[0] == step:
            import torch

            trainer.callback_metrics.update({name: torch.tensor(value) for name, value in last[1].items()})
        if self.monitor.should_stop:
            trainer.should_stop = True


def _epoch(trainer, batch_idx: int) -> float:
    """The fractional epoch at the end of batch `batch_idx` (the Trainer's convention), or the epoch number."""
    batches = getattr(trainer, "num_training_batches", None)
    if isinstance(batches, int) and batches > 0:
        return trainer.current_epoch + (batch_idx + 1) / batches
    return float(trainer.current_epoch)
