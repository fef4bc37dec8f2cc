"""NeuronXAPlugin: NeuronXA measurements in an Axolotl fine-tune, switched on from the YAML config.

Usage (Axolotl config)::

    plugins:
      - neuronxa_callback.hosts.axolotl.NeuronXAPlugin
    neuronxa_languages: [isl_Latn]        # or "isl_Latn,deu_Latn"
    neuronxa_eval_steps: 50               # measure at step 0, every 50 optimizer steps and at the end
    neuronxa_quality_every: 2             # translate + chrF++ at every 2nd measurement (0 = never)
    neuronxa:                             # any other NeuronXACallback keyword (help(NeuronXACallback))
      data: ntrex
      quality_num_pairs: 20
      early_stopping_patience: 5

then ``axolotl train config.yml`` as usual -> ``<output_dir>/neuronxa/metrics.jsonl``.

The three flat keys are shorthands for the ``neuronxa:`` entries of the same name; giving one both ways is an error.
The keys are declared as Axolotl declares plugin arguments (``get_input_args`` names the pydantic model
``NeuronXAArgs``, which Axolotl merges into its config schema): without the plugin listed, Axolotl's validation would
drop them.

How it hooks in (Axolotl 0.19, axolotl/core/builders/base.py):

- ``register(cfg)`` (when Axolotl loads the config, before the model): builds the NeuronXACallback, so a bad
  argument, an unknown language code or a missing data file stops ``axolotl train`` before the model loads.
- ``add_callbacks_pre_trainer(cfg, model)``: the callback goes into ``Trainer(callbacks=...)``, ahead of the
  callbacks Axolotl adds after building the Trainer (its EarlyStoppingCallback among them), so ``eval_neuronxa_*``
  are in the evaluation metrics before EarlyStoppingCallback reads them.
- ``add_callbacks_post_trainer(cfg, trainer)``: ``callback.attach(trainer)`` (the numbers reach every tracker in
  Axolotl's report_to: W&B, MLflow, TensorBoard, trackio, ...). It returns no callback: the Trainer holds it already.

Import: this module needs axolotl; ``import neuronxa_callback`` never imports it.
"""

from __future__ import annotations

from typing import Any

try:
    from axolotl.integrations.base import BasePlugin
except ImportError as error:  # pragma: no cover - exercised only without axolotl
    raise ImportError(
        "neuronxa_callback.hosts.axolotl is the Axolotl plugin and needs axolotl (pip install axolotl); "
        f"importing it failed: {error}. `import neuronxa_callback` and NeuronXACallback work without axolotl."
    ) from error

from pydantic import BaseModel, Field

# The public name: stays valid whichever module of the package defines the callback.
from neuronxa_callback import NeuronXACallback

__all__ = ["NeuronXAArgs", "NeuronXAPlugin", "callback_kwargs"]

# flat Axolotl key -> NeuronXACallback keyword
SHORTHANDS = {
    "neuronxa_languages": "languages",
    "neuronxa_eval_steps": "eval_steps",
    "neuronxa_quality_every": "quality_every",
}


class NeuronXAArgs(BaseModel):
    """The plugin's keys in the Axolotl config (merged into Axolotl's config schema)."""

    neuronxa_languages: list[str] | str | None = Field(
        default=None,
        json_schema_extra={
            "description": "NeuronXA: target languages scored against the pivot (eng_Latn), "
            "a list or a comma-separated string"
        },
    )
    neuronxa_eval_steps: int | None = Field(
        default=None,
        json_schema_extra={
            "description": "NeuronXA: measure alignment every k optimizer steps "
            "(0 = only at train begin, evaluations and train end)"
        },
    )
    neuronxa_quality_every: int | None = Field(
        default=None,
        json_schema_extra={"description": "NeuronXA: translate and score every k-th measurement (0 = never)"},
    )
    neuronxa: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={"description": "NeuronXA: further NeuronXACallback keyword arguments"},
    )


def _get(cfg: Any, key: str) -> Any:
    getter = getattr(cfg, "get", None)
    return getter(key) if getter is not None else getattr(cfg, key, None)


def callback_kwargs(cfg: Any) -> dict[str, Any]:
    """NeuronXACallback's keyword arguments from an Axolotl config (a dict or Axolotl's DictDefault)."""
    passthrough = _get(cfg, "neuronxa")
    if passthrough is None:
        passthrough = {}
    if not isinstance(passthrough, dict):
        raise TypeError(f"neuronxa: expected a mapping of NeuronXACallback arguments, got {passthrough!r}")
    kwargs = dict(passthrough)
    for key, name in SHORTHANDS.items():
        value = _get(cfg, key)
        if value is None:
            continue
        if name in kwargs and kwargs[name] != value:
            raise ValueError(f"{key}={value!r} and neuronxa.{name}={kwargs[name]!r} disagree: give it once")
        kwargs[name] = value
    return kwargs


class NeuronXAPlugin(BasePlugin):
    """Axolotl plugin that adds NeuronXACallback to Axolotl's Trainer and attaches it (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.callback: NeuronXACallback | None = None
        self._attached_to: Any = None

    def get_input_args(self) -> str:
        return f"{__name__}.NeuronXAArgs"

    def register(self, cfg: dict) -> None:
        # The raw config, before Axolotl validates it: building the callback here checks every argument, the
        # language codes and the data source before the model is loaded.
        self.callback = NeuronXACallback(**callback_kwargs(cfg))
        self._attached_to = None

    def on_config_validation_error(self, cfg: dict) -> None:
        self.callback = None

    def _callback_for(self, cfg: Any) -> NeuronXACallback:
        if self.callback is None:  # used without Axolotl's load_cfg (register never ran)
            self.callback = NeuronXACallback(**callback_kwargs(cfg))
        return self.callback

    def add_callbacks_pre_trainer(self, cfg: Any, model: Any) -> list:
        return [self._callback_for(cfg)]

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list:
        callback = self._callback_for(cfg)
        if self._attached_to is not trainer:
            callback.attach(trainer)  # already in trainer.callback_handler (pre-trainer): only the tracker link
            self._attached_to = trainer
        return []
