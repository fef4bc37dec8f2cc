"""What a measurement must leave exactly as it found it: the global RNGs, every module's training and gradient
checkpointing flags, each model config's use_cache, and the tokenizer's padding/truncation sides.

Usage::

    with left_as_found(model, tokenizer, rng=True):     # the monitor, around a whole measurement
        ...                                             # encode, translate: may switch modes freely
    with left_as_found(model):                          # encode / generate, around their own mode switches
        model.eval()
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any


class RngState:
    """Every global RNG a training step might draw from, captured and put back around a measurement."""

    def __init__(self) -> None:
        import numpy as np
        import torch

        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )

    def restore(self) -> None:
        import numpy as np
        import torch

        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


class ModelState:
    """The model and tokenizer settings a measurement may change, captured to be put back exactly.

    Gradient checkpointing is captured as each module's `gradient_checkpointing` flag (what generation flips, rather
    than gradient_checkpointing_disable()/enable(), which would drop PEFT's input-require-grads hook and reset the
    checkpoint function's kwargs)."""

    def __init__(self, model: Any, tokenizer: Any = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        modules = list(model.modules())
        self.training = [(module, module.training) for module in modules]
        self.checkpointing = [
            (module, module.gradient_checkpointing)
            for module in modules
            if isinstance(getattr(module, "gradient_checkpointing", None), bool)
        ]
        configs = {
            id(config): config
            for config in (getattr(module, "config", None) for module in modules)
            if config is not None and hasattr(config, "use_cache")
        }
        self.use_cache = [(config, config.use_cache) for config in configs.values()]
        self.sides = {
            name: getattr(tokenizer, name)
            for name in ("padding_side", "truncation_side")
            if tokenizer is not None and hasattr(tokenizer, name)
        }

    def configs(self) -> list[Any]:
        """Every model config that has a use_cache setting (a PEFT wrapper and its base model may hold two)."""
        return [config for config, _ in self.use_cache]

    def checkpointing_modules(self) -> list[Any]:
        return [module for module, _ in self.checkpointing]

    def restore(self) -> None:
        for module, flag in self.training:
            module.training = flag
        for module, flag in self.checkpointing:
            module.gradient_checkpointing = flag
        for config, value in self.use_cache:
            config.use_cache = value
        for name, value in self.sides.items():
            setattr(self.tokenizer, name, value)


@contextlib.contextmanager
def left_as_found(model: Any, tokenizer: Any = None, *, rng: bool = False) -> Iterator[ModelState]:
    """Everything ModelState captures (and with rng=True the global RNGs) put back on exit, whatever happened."""
    random_state = RngState() if rng else None
    state = ModelState(model, tokenizer)
    try:
        yield state
    finally:
        state.restore()
        if random_state is not None:
            random_state.restore()
