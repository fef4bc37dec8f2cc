"""The architecture table: each supported model type hooks the real MLP activation act(gate(x)), one per layer."""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback.instrument import architectures
from neuronxa_callback.instrument.architectures import (
    ARCHITECTURES,
    UnsupportedArchitectureError,
    activation_modules,
    decoder_layers,
    register_architecture,
)
from neuronxa_callback.testing.tiny import TINY_MODEL_TYPES, tiny_model, tiny_tokenizer

# Per model type: the module whose output is the pre-activation gate, and which part of that output is the gate.
# Phi-3 and GLM-4 fuse gate and up projections; the gate is the first half (modeling_phi3.py: `gate, up = chunk(2)`).
_GATE_SOURCE = {
    "phi3": ("mlp.gate_up_proj", "first_half"),
    "glm4": ("mlp.gate_up_proj", "first_half"),
    "gpt2": ("mlp.c_fc", "all"),
    "gpt_neox": ("mlp.dense_h_to_4h", "all"),
    "bloom": ("mlp.dense_h_to_4h", "all"),
}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _batch(tokenizer):
    return tokenizer(
        ["The river runs slowly.", "Fljótið rennur hægt í gegnum dalinn."], padding=True, return_tensors="pt"
    )


def test_table_covers_every_tiny_model_type():
    assert set(TINY_MODEL_TYPES) <= set(ARCHITECTURES)


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_hook_sees_activation_of_gate_projection(model_type, tokenizer):
    model = tiny_model(model_type, tokenizer=tokenizer, num_layers=2)
    acts = activation_modules(model)
    layers = decoder_layers(model)
    assert len(acts) == len(layers) == 2
    gate_path, part = _GATE_SOURCE.get(model_type, ("mlp.gate_proj", "all"))
    seen: dict[str, list[torch.Tensor]] = {"act_in": [], "act_out": [], "gate": []}

    def record_activation(module, inputs, output):  # returns None: a hook's return value would replace the output
        seen["act_in"].append(inputs[0])
        seen["act_out"].append(output)

    def record_gate(module, inputs, output):
        seen["gate"].append(output)

    handles = []
    for layer, act in zip(layers, acts):
        handles.append(act.register_forward_hook(record_activation))
        handles.append(layer.get_submodule(gate_path).register_forward_hook(record_gate))
    try:
        with torch.no_grad():
            model(**_batch(tokenizer))
    finally:
        for handle in handles:
            handle.remove()
    batch = _batch(tokenizer)["input_ids"].shape
    assert len(seen["act_out"]) == 2  # fires once per layer
    for act_in, act_out, gate in zip(seen["act_in"], seen["act_out"], seen["gate"]):
        d_ff = act_out.shape[-1]
        assert act_out.shape == (batch[0], batch[1], d_ff)
        expected_gate = gate[..., :d_ff] if part == "first_half" else gate
        if part == "first_half":
            assert gate.shape[-1] == 2 * d_ff
        torch.testing.assert_close(act_in, expected_gate)  # the activation is applied to the gate, not to `up`
        assert not torch.equal(act_out, act_in)  # and it is a nonlinearity, not an identity


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_bare_base_model_is_accepted(model_type, tokenizer):
    model = tiny_model(model_type, tokenizer=tokenizer)
    base = model.base_model  # LlamaModel / GPT2Model: the table's path without its first component
    assert [id(m) for m in activation_modules(base)] == [id(m) for m in activation_modules(model)]


def test_peft_wrapper_resolves_to_the_same_modules(tokenizer):
    peft = pytest.importorskip("peft")
    model = tiny_model("llama", tokenizer=tokenizer)
    plain = [id(m) for m in activation_modules(model)]
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert [id(m) for m in activation_modules(wrapped)] == plain
    assert len(decoder_layers(wrapped)) == 2


def _tiny_opt(tokenizer):
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        word_embed_proj_dim=32,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    return OPTForCausalLM(config).eval()


def test_unknown_architecture_explains_how_to_register(tokenizer):
    model = _tiny_opt(tokenizer)
    with pytest.raises(UnsupportedArchitectureError) as info:
        activation_modules(model)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'opt'" in message and "register_architecture" in message and "llama" in message


def test_register_architecture_extends_the_table(tokenizer, monkeypatch):
    monkeypatch.setattr(architectures, "ARCHITECTURES", dict(ARCHITECTURES))
    model = _tiny_opt(tokenizer)
    register_architecture("opt", layers_path="model.decoder.layers", activation_path="activation_fn")
    acts = activation_modules(model)
    assert [id(a) for a in acts] == [id(layer.activation_fn) for layer in model.model.decoder.layers]


def test_registered_path_that_does_not_exist_is_reported(tokenizer, monkeypatch):
    monkeypatch.setattr(architectures, "ARCHITECTURES", dict(ARCHITECTURES))
    register_architecture("opt", layers_path="model.decoder.layers", activation_path="mlp.act_fn")
    with pytest.raises(UnsupportedArchitectureError, match="'mlp'"):
        activation_modules(_tiny_opt(tokenizer))


@pytest.mark.parametrize("bad", ["", "  ", None])
def test_register_architecture_rejects_empty_paths(bad):
    with pytest.raises(ValueError, match="register_architecture"):
        register_architecture("x", layers_path=bad, activation_path="mlp.act_fn")


def test_shared_activation_module_is_refused(tokenizer, monkeypatch):
    model = tiny_model("llama", tokenizer=tokenizer)
    shared = model.model.layers[0].mlp.act_fn
    model.model.layers[1].mlp.act_fn = shared  # e.g. a model that reuses one nn.SiLU for every layer
    with pytest.raises(UnsupportedArchitectureError, match="share"):
        activation_modules(model)
