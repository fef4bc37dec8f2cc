"""What a measurement must leave exactly as it found it: the global RNGs, every module's training flag, the
tokenizer's padding/truncation sides and config.use_cache.

Usage (NeuronXACallback._measure)::

    rng, snapshot = RngState(), ModelSnapshot(model, tokenizer)
    try:
        ...  # encode, translate
    finally:
        snapshot.restore()
        rng.restore()
"""
from __future__ import annotations

import random
from typing import Any


class RngState:
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


class ModelSnapshot:
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
