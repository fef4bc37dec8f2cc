"""NeuronXA measurements in a LLaMA-Factory fine-tune.

LLaMA-Factory builds its Trainer inside ``llamafactory.train.tuner.run_exp``: a script can pass callbacks
(``run_exp(args, callbacks=[...])``) but never sees the Trainer, so ``NeuronXACallback.attach(trainer)`` cannot be
called, and ``llamafactory-cli train x.yaml`` takes no callback at all (see docs/hosts/llamafactory.md). This module
adds:

- ``LlamaFactoryNeuronXACallback``: NeuronXACallback that attaches itself to the Trainer it was given to (found when
  the Trainer calls ``on_init_end`` at the end of its ``__init__``), so the numbers reach every tracker in report_to
  (TensorBoard, trackio, MLflow, W&B) and the Trainer's log, as with ``attach()``::

      from llamafactory.train.tuner import run_exp
      from neuronxa_callback.hosts.llamafactory import LlamaFactoryNeuronXACallback

      run_exp(args=dict(stage="sft", model_name_or_path=..., dataset=..., output_dir="out", ...),
              callbacks=[LlamaFactoryNeuronXACallback(languages=["isl_Latn"], eval_steps=50, quality_every=2)])

- ``python -m neuronxa_callback.hosts.llamafactory config.yaml [key=value ...]``: ``llamafactory-cli train`` for one
  process (or one per GPU under ``torchrun -m``) with the NeuronXA keys read from the same YAML (the keys of the
  Axolotl plugin: ``neuronxa_languages``, ``neuronxa_eval_steps``, ``neuronxa_quality_every`` and a ``neuronxa:``
  mapping of further NeuronXACallback arguments). They are taken out before LLaMA-Factory parses the rest, which
  rejects unknown keys.

Import: ``import neuronxa_callback`` never imports this module; this module imports LLaMA-Factory only in ``main``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

# The public name: stays valid whichever module of the package defines the callback.
from neuronxa_callback import NeuronXACallback

logger = logging.getLogger(__name__)

__all__ = ["LlamaFactoryNeuronXACallback", "main", "pop_callback_kwargs"]

# YAML key -> NeuronXACallback keyword (the same keys as the Axolotl plugin's)
SHORTHANDS = {
    "neuronxa_languages": "languages",
    "neuronxa_eval_steps": "eval_steps",
    "neuronxa_quality_every": "quality_every",
}


def pop_callback_kwargs(config: dict[str, Any]) -> dict[str, Any] | None:
    """Remove the NeuronXA keys from a LLaMA-Factory config dict; NeuronXACallback's kwargs, or None if it has none."""
    present = [key for key in (*SHORTHANDS, "neuronxa") if key in config]
    if not present:
        return None
    passthrough = config.pop("neuronxa", None) or {}
    if not isinstance(passthrough, dict):
        raise TypeError(f"neuronxa: expected a mapping of NeuronXACallback arguments, got {passthrough!r}")
    kwargs = dict(passthrough)
    for key, name in SHORTHANDS.items():
        if key not in config:
            continue
        value = config.pop(key)
        if name in kwargs and kwargs[name] != value:
            raise ValueError(f"{key}={value!r} and neuronxa.{name}={kwargs[name]!r} disagree: give it once")
        kwargs[name] = value
    return kwargs


def _trainer_being_built(callback: Any) -> Any:
    """The transformers Trainer whose __init__ is running and holds `callback` (walks up the calling frames)."""
    from transformers import Trainer

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            handler = getattr(candidate, "callback_handler", None)
            if handler is not None and any(item is callback for item in handler.callbacks):
                return candidate
        frame = frame.f_back
    return None


class LlamaFactoryNeuronXACallback(NeuronXACallback):
    """NeuronXACallback that attaches itself to the Trainer it is passed to (for hosts that never hand out the
    Trainer, such as LLaMA-Factory's run_exp). Same arguments as NeuronXACallback."""

    def on_init_end(self, args, state, control, **kwargs):
        if self._trainer is None:
            trainer = _trainer_being_built(self)
            if trainer is None:
                logger.warning(
                    "LlamaFactoryNeuronXACallback: could not find the Trainer being built; the alignment "
                    "goes to the JSONL (and W&B when in report_to) only"
                )
            else:
                # attach() puts its TrainerLink at the front of the callback list while the Trainer is going through
                # that list for on_init_end: this method then runs once more, with _trainer set, and does nothing.
                self.attach(trainer)
        return control


def main(argv: list[str] | None = None) -> None:
    """``llamafactory-cli train`` for one process, with NeuronXA configured from the same YAML/JSON file."""
    from llamafactory.hparams import read_args
    from llamafactory.train.tuner import run_exp

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or not argv[0].endswith((".yaml", ".yml", ".json")):
        raise SystemExit("usage: python -m neuronxa_callback.hosts.llamafactory config.yaml [key=value ...]")
    saved = sys.argv
    sys.argv = [saved[0], *argv]  # read_args reads the file and key=value overrides from sys.argv, like the CLI
    try:
        config = read_args()
    finally:
        sys.argv = saved
    kwargs = pop_callback_kwargs(config)
    if kwargs is None:
        logger.warning("no neuronxa_* keys in %s: training without NeuronXA measurements", argv[0])
    callbacks = [] if kwargs is None else [LlamaFactoryNeuronXACallback(**kwargs)]
    run_exp(args=config, callbacks=callbacks)


if __name__ == "__main__":
    main()
