"""Where each architecture keeps its decoder layers and its MLP neuron activation.

Usage::

    from neuronxa_callback.instrument.architectures import activation_modules, decoder_layers, register_architecture

    acts = activation_modules(model)      # one nn.Module per decoder layer; its forward output is [batch, tokens, d_ff]
    layers = decoder_layers(model)        # the nn.ModuleList of decoder layers
    register_architecture("my_arch", layers_path="model.blocks", activation_path="ffn.act")

The "neuron activation" of NeuronXA (Huang et al., 2025, Sec. 2.2) is the output of the MLP's activation
function: act(gate(x)) in gated MLPs (SwiGLU/GeGLU), act(fc_in(x)) in un-gated ones. In every architecture below
that function is its own nn.Module per layer, so a forward hook on it sees exactly that tensor. Paths are checked
against the transformers 5 modelling code (e.g. Phi-3 and GLM-4 fuse gate and up into `gate_up_proj` but apply
`mlp.activation_fn` to the gate half only, so hooking `activation_fn` gives act(gate)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: this module is imported by the package __init__.
    from torch import nn


class UnsupportedArchitectureError(ValueError):
    """The model's architecture is not in the table; the message says how to register it."""


@dataclass(frozen=True)
class ArchitectureSpec:
    """Attribute paths, dotted, for one model_type.

    layers_path: from the *ForCausalLM model to its nn.ModuleList of decoder layers.
    activation_path: from one decoder layer to the module whose output is the MLP neuron activation.
    """

    layers_path: str
    activation_path: str


_LLAMA_LIKE = ArchitectureSpec("model.layers", "mlp.act_fn")
_FUSED_GATE_UP = ArchitectureSpec("model.layers", "mlp.activation_fn")

# model_type (config.model_type) -> spec. Extend with register_architecture().
ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "glm4": _FUSED_GATE_UP,
    "phi3": _FUSED_GATE_UP,
    "gpt2": ArchitectureSpec("transformer.h", "mlp.act"),
    "gpt_neox": ArchitectureSpec("gpt_neox.layers", "mlp.act"),
    "bloom": ArchitectureSpec("transformer.h", "mlp.gelu_impl"),
}


def register_architecture(model_type: str, layers_path: str, activation_path: str) -> None:
    """Teach NeuronXA a new architecture (or override one).

    layers_path is relative to the causal-LM model (e.g. "model.layers"); activation_path is relative to one
    decoder layer and must name an nn.Module whose output is the activation, e.g. "mlp.act_fn".
    """
    for name, value in (("model_type", model_type), ("layers_path", layers_path), ("activation_path", activation_path)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"register_architecture: {name} must be a non-empty string, got {value!r}")
    ARCHITECTURES[model_type] = ArchitectureSpec(layers_path, activation_path)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain transformers model under PEFT (PeftModel.get_base_model) and DDP/FSDP-style `.module` wrappers."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        if hasattr(model, "get_base_model") and callable(model.get_base_model):
            model = model.get_base_model()
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel", "FullyShardedDataParallel"):
            model = model.module
    return model


def architecture_spec(model: nn.Module) -> ArchitectureSpec:
    """The table entry for `model` (PEFT/DDP wrappers allowed); UnsupportedArchitectureError when there is none."""
    config = getattr(unwrap_model(model), "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    known = ", ".join(sorted(ARCHITECTURES))
    raise UnsupportedArchitectureError(
        f"neuronxa_callback.instrument.architectures: no activation hook known for model_type={model_type!r} "
        f"({type(unwrap_model(model)).__name__}). Supported: {known}. Register it with "
        f"neuronxa_callback.instrument.architectures.register_architecture({model_type!r}, layers_path='model.layers', "
        f"activation_path='mlp.act_fn') — layers_path leads from the causal-LM model to the nn.ModuleList of decoder "
        f"layers, activation_path from one layer to the nn.Module that applies the MLP activation function "
        f"(print(model) shows the names)."
    )


def _resolve(root: nn.Module, path: str, what: str) -> nn.Module:
    obj = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise UnsupportedArchitectureError(
                f"neuronxa_callback.instrument.architectures: {what} path {path!r} not found in {type(root).__name__} "
                f"(missing attribute {part!r}); fix it with register_architecture(model_type, layers_path, activation_path)"
            )
        obj = getattr(obj, part)
    return obj


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of `model`, in order. Accepts the causal LM, its PEFT/DDP wrappers, or the bare base model."""
    spec = architecture_spec(model)
    inner = unwrap_model(model)
    head, _, rest = spec.layers_path.partition(".")
    # The bare base model (LlamaModel rather than LlamaForCausalLM) has the path without its first component.
    if not hasattr(inner, head) and rest and hasattr(inner, rest.split(".")[0]):
        return _resolve(inner, rest, "layers")
    return _resolve(inner, spec.layers_path, "layers")


def activation_modules(model: nn.Module) -> list[nn.Module]:
    """One module per decoder layer whose forward output is the MLP neuron activation [batch, tokens, d_ff]."""
    spec = architecture_spec(model)
    modules = [_resolve(layer, spec.activation_path, "activation") for layer in decoder_layers(model)]
    # A hook on a module shared by several layers would fire once per layer and mix them up.
    if len({id(m) for m in modules}) != len(modules):
        raise UnsupportedArchitectureError(
            f"neuronxa_callback.instrument.architectures: layers share one {spec.activation_path!r} module, so a hook cannot tell "
            f"them apart; register a per-layer module path with register_architecture()"
        )
    return modules
