"""What an out-of-band measurement copies out of the training process, and how the worker rebuilds the model.

Usage::

    base = base_copy(model, tokenizer)         # collective; rank 0: everything the worker needs to build the model
    snapshot = take_snapshot(model)            # collective; rank 0: {"kind": "peft"|"full", "state": {...}}
    write_snapshot(snapshot, path); snapshot = read_snapshot(path)
    model = build_model(base)                  # in the worker: the same class, config, dtype, weights (PEFT too)
    apply_snapshot(model, snapshot)            # the weights of the measured step

A PEFT model sends its adapter weights only (``peft.get_peft_model_state_dict``, cloned to the CPU); a fully
fine-tuned model its whole state dict on the CPU. DDP: rank 0 copies its own replica (``.module`` unwrapped). FSDP1,
FSDP2 and DeepSpeed ZeRO-3 (``sharding.sharding_engine``): every rank takes part in gathering the full state dict
through the engine's own API, then rank 0 holds it. Other ranks get None.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from neuronxa_callback.parallel.collectives import rank_and_world
from neuronxa_callback.parallel.sharding import sharding_engine


def unwrap(model: Any) -> Any:
    """The module inside DDP / DataParallel / FSDP1 wrappers (FSDP2 and ZeRO-3 keep the model's own class)."""
    import torch

    wrappers = [torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel]
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrappers.append(FullyShardedDataParallel)
    except ImportError:  # torch built without distributed
        pass
    while isinstance(model, tuple(wrappers)):
        model = model.module
    return model


def _peft_model(model: Any) -> Any | None:
    try:
        from peft import PeftModel
    except ImportError:
        return None
    inner = unwrap(model)
    return inner if isinstance(inner, PeftModel) else None


def _cpu_copy(state: dict) -> dict:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _full_state_dict(model: Any) -> dict | None:
    """Collective under FSDP / ZeRO-3: the unwrapped model's full state dict on the CPU, on rank 0 (None elsewhere)."""
    kind, rank = sharding_engine(model), rank_and_world()[0]
    if kind in ("fsdp1", "fsdp2"):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # cpu_offload only for accelerator weights: FSDP1 with cpu_offload=True on CPU weights crashed rank 0
        # (SIGSEGV, torch 2.13, gloo); _cpu_copy below puts the full tensors on the CPU either way.
        on_accelerator = any(parameter.device.type != "cpu" for parameter in model.parameters())
        options = StateDictOptions(full_state_dict=True, cpu_offload=on_accelerator)
        state = get_model_state_dict(model, options=options)
        return _cpu_copy(state) if rank == 0 else None
    if kind == "zero3":
        import deepspeed

        inner = unwrap(model)
        with deepspeed.zero.GatheredParameters(list(inner.parameters()), modifier_rank=None):
            return _cpu_copy(inner.state_dict()) if rank == 0 else None
    return _cpu_copy(unwrap(model).state_dict()) if rank == 0 else None


def take_snapshot(model: Any) -> dict | None:
    """Collective: the weights a worker needs to score `model` as it is now; rank 0 gets
    {"kind": "peft", "state": adapter weights} or {"kind": "full", "state": the state dict}, other ranks None."""
    peft_model = _peft_model(model)
    sharded = sharding_engine(model) is not None
    if peft_model is not None and not sharded:
        if rank_and_world()[0] != 0:
            return None
        from peft import get_peft_model_state_dict

        return {"kind": "peft", "state": _cpu_copy(get_peft_model_state_dict(peft_model))}
    state = _full_state_dict(model)
    if state is None:
        return None
    if peft_model is not None:
        from peft import get_peft_model_state_dict

        return {"kind": "peft", "state": _cpu_copy(get_peft_model_state_dict(peft_model, state_dict=state))}
    return {"kind": "full", "state": state}


def _model_class(model: Any) -> type:
    """The model's own class: FSDP2 swaps in a subclass made inside torch (FSDP<Name>), skipped here."""
    for cls in type(model).__mro__:
        if not cls.__module__.startswith("torch."):
            return cls
    return type(model)


def base_copy(model: Any, tokenizer: Any) -> dict | None:
    """Collective: what a worker needs to build the model once (rank 0; None elsewhere): its class, config,
    generation config, dtype, PEFT configs, every weight on the CPU, and the tokenizer."""
    import torch

    state = _full_state_dict(model)
    if state is None:
        return None
    inner = unwrap(model)
    peft_model = _peft_model(model)
    base = peft_model.get_base_model() if peft_model is not None else inner
    cls = _model_class(base)
    dtype = next((p.dtype for p in inner.parameters() if p.is_floating_point()), torch.float32)
    return {
        "model_class": f"{cls.__module__}:{cls.__qualname__}",
        "config": base.config,
        "generation_config": getattr(base, "generation_config", None),
        "dtype": str(dtype).removeprefix("torch."),
        "peft_config": dict(peft_model.peft_config) if peft_model is not None else None,
        "active_adapter": getattr(peft_model, "active_adapter", None) if peft_model is not None else None,
        "state": state,
        "tokenizer": tokenizer,
    }


def build_model(base: dict, device: str = "cpu") -> Any:
    """In the worker: the model of `base` (base_copy) with its weights, on `device`, in eval mode."""
    import torch

    module_name, _, class_name = base["model_class"].partition(":")
    cls = importlib.import_module(module_name)
    for part in class_name.split("."):
        cls = getattr(cls, part)
    model = cls._from_config(base["config"], dtype=getattr(torch, base["dtype"]))
    if base.get("generation_config") is not None:
        model.generation_config = base["generation_config"]
    if base.get("peft_config"):
        from peft import get_peft_model

        configs = dict(base["peft_config"])
        first = base.get("active_adapter") if base.get("active_adapter") in configs else next(iter(configs))
        model = get_peft_model(model, configs.pop(first), adapter_name=first)
        for name, config in configs.items():
            model.add_adapter(name, config)
        model.set_adapter(first)
    model.load_state_dict(base["state"], strict=True)
    return model.to(device).eval()


def apply_snapshot(model: Any, snapshot: dict) -> None:
    """In the worker: load a snapshot's weights into `model` (built by build_model)."""
    if snapshot["kind"] == "peft":
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, snapshot["state"])
        unexpected = list(getattr(result, "unexpected_keys", None) or [])
        if unexpected:
            raise ValueError(f"snapshot has weights the worker's PEFT model lacks: {unexpected[:5]}")
    else:
        model.load_state_dict(snapshot["state"], strict=True)


def write_snapshot(snapshot: dict, path: Path) -> Path:
    """torch.save to `path` through a temporary name: a reader never sees half a file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(snapshot, partial)
    os.replace(partial, path)
    return path


def read_snapshot(path: Path) -> dict:
    """A file write_snapshot wrote (by this package: it holds a config and tokenizer, so not weights_only)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def snapshot_bytes(snapshot: dict) -> int:
    """Bytes of tensor data in a snapshot (what crosses to the worker at each measurement)."""
    return sum(t.numel() * t.element_size() for t in snapshot["state"].values())
