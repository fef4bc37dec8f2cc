"""Streaming capture and encode(): pooling, special tokens, padding, sharding, hook hygiene, PEFT and 4-bit models."""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback.instrument import activations
from neuronxa_callback.instrument.activations import ActivationCapture, Encoded, encode, plan_batches, pooling_weights
from neuronxa_callback.instrument.architectures import activation_modules, decoder_layers
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

SENTENCES = corpus_sentences()[:9]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def llama(tokenizer):
    return tiny_model("llama", tokenizer=tokenizer)


# -- pooling weights (golden values) -------------------------------------------------------------------------------
def test_weighted_pooling_is_position_over_triangular_number():
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 0, 1, 1]])  # row 0: <bos> + 3 tokens + pad; row 1: left padded
    weights = pooling_weights(mask, "weighted")
    expected = torch.tensor([[0, 1 / 6, 2 / 6, 3 / 6, 0], [0, 0, 0, 1 / 3, 2 / 3]])
    torch.testing.assert_close(weights, expected)
    assert weights.dtype == torch.float32


def test_mean_and_last_pooling():
    mask = torch.tensor([[0, 1, 1, 1, 1, 0]])
    torch.testing.assert_close(pooling_weights(mask, "mean"), torch.tensor([[0, 0.25, 0.25, 0.25, 0.25, 0]]))
    torch.testing.assert_close(pooling_weights(mask, "last"), torch.tensor([[0.0, 0, 0, 0, 1, 0]]))


def test_pooling_rejects_empty_rows_and_unknown_modes():
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        pooling_weights(torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="pooling"):
        pooling_weights(torch.tensor([[1, 1]]), "max")


# -- batching plan -------------------------------------------------------------------------------------------------
def test_plan_batches_sorts_by_length_and_is_deterministic():
    lengths = [5, 9, 5, 2, 9, 7, 1]
    plan = plan_batches(lengths, 3)
    assert plan == [[1, 4, 5], [0, 2, 3], [6]]
    assert plan_batches(lengths, 3) == plan
    assert sorted(i for batch in plan_batches(lengths, 2) for i in batch) == list(range(len(lengths)))
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(lengths, 0)


# -- encode against a naive reference ------------------------------------------------------------------------------
def _reference(model, tokenizer, sentences, pooling_positions):
    """Keep every token activation (one sentence at a time) and pool by hand: the slow, obvious computation."""
    store: dict[int, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, k=k: store.__setitem__(k, o.detach().clone()))
        for k, module in enumerate(activation_modules(model))
    ]
    nas, nav = [], []
    try:
        for sentence in sentences:
            ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                model(input_ids=ids)
            positions = pooling_positions(ids.shape[1])
            weights = torch.zeros(ids.shape[1])
            for rank, position in enumerate(positions, start=1):
                weights[position] = rank / (len(positions) * (len(positions) + 1) / 2)
            acts = torch.stack([store[k][0] for k in range(len(store))])  # [L, T, d]
            nas.append(torch.einsum("t,ltd->ld", weights, (acts > 0).float()))
            nav.append(torch.einsum("t,ltd->ld", weights, acts.abs()))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(nas, dim=1), torch.stack(nav, dim=1)


def test_encode_matches_naive_pooling_and_skips_bos(llama, tokenizer):
    encoded = encode(llama, tokenizer, SENTENCES, batch_size=4)
    assert isinstance(encoded, Encoded)
    assert encoded.indices == list(range(len(SENTENCES))) and encoded.num_layers == 2
    assert encoded.representations["nas"].shape == (2, len(SENTENCES), 64)
    assert encoded.representations["nas"].dtype == torch.float32 and encoded.forward_seconds > 0
    nas, nav = _reference(llama, tokenizer, SENTENCES, lambda length: range(1, length))  # position 0 is <bos>
    torch.testing.assert_close(encoded.representations["nav"], nav, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(encoded.representations["nas"], nas, rtol=1e-5, atol=1e-6)
    # Pooling <bos> as well would give something else: the comparison above can tell.
    _, nav_with_bos = _reference(llama, tokenizer, SENTENCES[:2], lambda length: range(0, length))
    assert not torch.allclose(encoded.representations["nav"][:, :2], nav_with_bos, atol=1e-4)


def test_nas_is_a_weighted_fraction(llama, tokenizer):
    nas = encode(llama, tokenizer, SENTENCES, representations=("nas",)).representations["nas"]
    assert float(nas.min()) >= 0.0 and float(nas.max()) <= 1.0 + 1e-6
    assert list(encode(llama, tokenizer, SENTENCES[:2], representations=("nas",)).representations) == ["nas"]


def test_embedding_is_the_pooled_layer_output(llama, tokenizer):
    store: dict[int, torch.Tensor] = {}
    layers = decoder_layers(llama)
    handles = [
        layer.register_forward_hook(
            lambda m, i, o, k=k: store.__setitem__(k, (o[0] if isinstance(o, tuple) else o).clone())
        )
        for k, layer in enumerate(layers)
    ]
    try:
        ids = tokenizer(SENTENCES[0], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            llama(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    weights = pooling_weights(torch.tensor([[0] + [1] * (ids.shape[1] - 1)]))[0]
    expected = torch.stack([weights @ store[k][0] for k in range(len(layers))])
    embedding = encode(llama, tokenizer, SENTENCES[:1], representations=("embedding",)).representations["embedding"]
    assert embedding.shape == (2, 1, 32)
    torch.testing.assert_close(embedding[:, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "bloom"])
def test_padding_side_and_batch_size_do_not_change_nav(model_type, tokenizer):
    model = tiny_model(model_type, tokenizer=tokenizer)
    results = []
    for side, batch_size in (("left", 4), ("right", 4), ("left", 1)):
        local = tiny_tokenizer(padding_side=side)
        results.append(encode(model, local, SENTENCES, representations=("nav", "embedding"), batch_size=batch_size))
    for other in results[1:]:
        for name in ("nav", "embedding"):
            torch.testing.assert_close(
                other.representations[name], results[0].representations[name], rtol=1e-5, atol=1e-5
            )


def test_long_activations_are_read_in_slices(llama, tokenizer, monkeypatch):
    whole = encode(llama, tokenizer, SENTENCES, batch_size=4)
    monkeypatch.setattr(activations, "SLICE_ELEMENTS", 4 * 64 * 3)  # 3 tokens per slice at batch 4, d_ff 64
    sliced = encode(llama, tokenizer, SENTENCES, batch_size=4)
    for name in ("nas", "nav"):
        torch.testing.assert_close(sliced.representations[name], whole.representations[name], rtol=1e-5, atol=1e-6)


def test_same_weights_give_identical_scores_twice(llama, tokenizer):
    first = encode(llama, tokenizer, SENTENCES, batch_size=4)
    second = encode(llama, tokenizer, SENTENCES, batch_size=4)
    assert all(torch.equal(first.representations[k], second.representations[k]) for k in ("nas", "nav"))


def test_shards_union_equals_unsharded_bit_for_bit(llama, tokenizer):
    full = encode(llama, tokenizer, SENTENCES, batch_size=2, representations=("nas", "nav", "embedding"))
    parts = [
        encode(llama, tokenizer, SENTENCES, batch_size=2, shard=(rank, 3), representations=("nas", "nav", "embedding"))
        for rank in range(3)
    ]
    indices = [i for part in parts for i in part.indices]
    assert sorted(indices) == list(range(len(SENTENCES))) and len(set(indices)) == len(indices)
    assert all(part.indices == sorted(part.indices) for part in parts)
    for name in ("nas", "nav", "embedding"):
        joined = torch.cat([part.representations[name] for part in parts], dim=1)
        order = torch.tensor(indices).argsort()
        assert torch.equal(joined[:, order], full.representations[name])


def test_shard_without_batches_gives_empty_rows_of_the_right_width(llama, tokenizer):
    empty = encode(llama, tokenizer, SENTENCES[:2], batch_size=4, shard=(1, 2), representations=("nav", "embedding"))
    assert empty.indices == []
    assert empty.representations["nav"].shape == (2, 0, 64) and empty.representations["embedding"].shape == (2, 0, 32)


# -- hygiene: hooks, model state, no full logits -------------------------------------------------------------------
def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_encode_leaves_model_and_tokenizer_as_found(tokenizer):
    model = tiny_model("llama", tokenizer=tokenizer)
    model.train()
    model.model.layers[1].eval()  # mixed flags must come back exactly
    flags = [m.training for m in model.modules()]
    use_cache = model.config.use_cache
    side = tokenizer.padding_side
    encode(model, tokenizer, SENTENCES[:3])
    assert [m.training for m in model.modules()] == flags
    assert model.config.use_cache == use_cache and tokenizer.padding_side == side
    assert _hook_count(model) == 0


def test_hooks_are_removed_and_state_restored_when_forward_raises(tokenizer):
    model = tiny_model("llama", tokenizer=tokenizer)
    model.train()

    def explode(module, inputs):
        raise RuntimeError("boom in layer 1")

    handle = model.model.layers[1].register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        encode(model, tokenizer, SENTENCES[:3])
    handle.remove()
    assert _hook_count(model) == 0 and model.training and all(m.training for m in model.modules())


def test_capture_context_removes_hooks_on_exception(llama):
    with pytest.raises(KeyError):
        with ActivationCapture(llama, ("nas", "nav", "embedding")):
            assert _hook_count(llama) == 2 + 2  # one per activation module, one per layer
            raise KeyError("inside the block")
    assert _hook_count(llama) == 0


def test_only_the_last_position_reaches_the_lm_head(llama, tokenizer):
    widths = []
    handle = llama.lm_head.register_forward_hook(lambda m, i, o: widths.append(i[0].shape[1]) and None)
    try:
        encode(llama, tokenizer, SENTENCES, batch_size=4)
    finally:
        handle.remove()
    assert widths and set(widths) == {1}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"representations": ("nas", "mexa")}, "representations"),
        ({"representations": ()}, "representations"),
        ({"pooling": "max"}, "pooling"),
        ({"shard": (2, 2)}, "shard"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_encode_rejects_bad_arguments(llama, tokenizer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode(llama, tokenizer, SENTENCES[:2], **kwargs)


def test_encode_rejects_sentence_without_tokens(llama, tokenizer):
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        encode(llama, tokenizer, ["A sentence.", ""])


# -- wrapped and quantized models ----------------------------------------------------------------------------------
def test_peft_lora_model_is_measured_through_the_adapter(tokenizer):
    peft = pytest.importorskip("peft")
    model = tiny_model("llama", tokenizer=tokenizer)
    base = encode(model, tokenizer, SENTENCES, batch_size=4)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["gate_proj"], lora_dropout=0.0))
    untouched = encode(wrapped, tokenizer, SENTENCES, batch_size=4)  # LoRA B starts at zero: same model
    torch.testing.assert_close(untouched.representations["nav"], base.representations["nav"], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.5)
    tuned = encode(wrapped, tokenizer, SENTENCES, batch_size=4)
    assert not torch.allclose(tuned.representations["nav"], base.representations["nav"], atol=1e-3)
    assert _hook_count(wrapped) == 0


def test_bitsandbytes_4bit_tiny_llama(tokenizer, tmp_path):
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # ImportError, or a RuntimeError from a broken native library
        pytest.skip(f"bitsandbytes unavailable: {error}")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = tiny_model("llama", tokenizer=tokenizer, hidden_size=64)  # 4-bit blocks are 64 wide
    model.save_pretrained(tmp_path)
    reference = encode(model, tokenizer, SENTENCES, batch_size=4)
    quantized = AutoModelForCausalLM.from_pretrained(
        tmp_path,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32),
        device_map="cpu",
    )
    assert quantized.is_quantized
    encoded = encode(quantized, tokenizer, SENTENCES, batch_size=4)
    nav, expected = encoded.representations["nav"], reference.representations["nav"]
    assert nav.shape == expected.shape and torch.isfinite(nav).all()
    # 4-bit weights move activations a little, not the picture: per-sentence NAV vectors still point the same way.
    cosine = torch.nn.functional.cosine_similarity(nav, expected, dim=-1)
    assert float(cosine.min()) > 0.9
    assert not torch.equal(nav, expected)  # it really ran the quantized weights
