"""The capture accumulates in float32 whatever the model computes in: bf16 / fp16 weights, and CPU autocast (what the
Trainer's bf16=True wraps the model's forward in). Regression tests: a bf16 or fp16 model raised
"Found dtype Float but expected BFloat16" for NAV, and under autocast the pooled sums were silently bf16."""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback.instrument.activations import ActivationCapture, encode, pooling_weights
from neuronxa_callback.instrument.architectures import activation_modules, decoder_layers
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

SENTENCES = corpus_sentences()[:6]
LOW = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _reference(model, tokenizer, sentences):
    """The obvious computation: keep every token's activation and layer output, convert to float32, pool by hand."""
    acts: dict[int, torch.Tensor] = {}
    hidden: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, k=k: acts.__setitem__(k, o.detach().clone()))
        for k, m in enumerate(activation_modules(model))
    ]
    handles += [
        layer.register_forward_hook(
            lambda m, i, o, k=k: hidden.__setitem__(k, (o[0] if isinstance(o, tuple) else o).detach().clone())
        )
        for k, layer in enumerate(decoder_layers(model))
    ]
    out = {"nas": [], "nav": [], "embedding": []}
    try:
        for sentence in sentences:
            ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                model(input_ids=ids)
            weights = pooling_weights(torch.tensor([[0] + [1] * (ids.shape[1] - 1)]))[0]  # <bos> weighs 0
            a = torch.stack([acts[k][0] for k in range(len(acts))]).float()
            h = torch.stack([hidden[k][0] for k in range(len(hidden))]).float()
            out["nas"].append(torch.einsum("t,ltd->ld", weights, (a > 0).float()))
            out["nav"].append(torch.einsum("t,ltd->ld", weights, a.abs()))
            out["embedding"].append(torch.einsum("t,ltd->ld", weights, h))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.stack(rows, dim=1) for name, rows in out.items()}


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("representation", ["nas", "nav", "embedding"])
def test_low_precision_model_is_encoded_in_float32(tokenizer, dtype, representation):
    model = tiny_model("llama", tokenizer=tokenizer).to(dtype)
    encoded = encode(model, tokenizer, SENTENCES, representations=(representation,), batch_size=1)
    value = encoded.representations[representation]
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    # The model's own low-precision activations, pooled in float32 by hand: same numbers (float32 summation order
    # differs, hence the float32-sized tolerance, far below one bf16 ulp ~ 4e-3 relative).
    expected = _reference(model, tokenizer, SENTENCES)[representation]
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    assert next(model.parameters()).dtype == dtype  # not cast to float32 behind the user's back


def test_capture_under_autocast_accumulates_in_float32(tokenizer):
    """Trainer(bf16=True) runs the model's forward under torch.autocast: the hooks must not be pulled into bf16."""
    model = tiny_model("llama", tokenizer=tokenizer)
    batch = tokenizer(SENTENCES[:3], return_tensors="pt", padding=True)
    weights = pooling_weights(batch["attention_mask"])
    seen: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.detach().float().clone()))
        for k, m in enumerate(activation_modules(model))
    ]
    try:
        with torch.no_grad(), ActivationCapture(model, ("nas", "nav")) as capture:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                capture.begin_batch(weights)
                model(**batch)
                sums = capture.end_batch()
    finally:
        for handle in handles:
            handle.remove()
    assert seen[0].dtype == torch.float32 and {v.dtype for v in sums.values()} == {torch.float32}
    acts = torch.stack([seen[k] for k in range(len(seen))])  # [L, B, T, d]: the bf16 activations, exactly in f32
    torch.testing.assert_close(sums["nav"], torch.einsum("bt,lbtd->lbd", weights, acts.abs()), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        sums["nas"], torch.einsum("bt,lbtd->lbd", weights, (acts > 0).float()), rtol=1e-5, atol=1e-6
    )


def test_low_precision_slices_stay_bounded(tokenizer, monkeypatch):
    """Low-precision activations are converted slice by slice into the one float32 scratch buffer (no full copy)."""
    from neuronxa_callback.instrument import activations

    model = tiny_model("llama", tokenizer=tokenizer).to(torch.bfloat16)
    whole = encode(model, tokenizer, SENTENCES, batch_size=3, representations=("nas", "nav", "embedding"))
    monkeypatch.setattr(activations, "SLICE_ELEMENTS", 3 * 64 * 2)  # 2 tokens per slice at batch 3, d_ff 64
    sizes: list[int] = []
    original = ActivationCapture._scratch_for

    def spy(self, numel, device):
        sizes.append(numel)
        return original(self, numel, device)

    monkeypatch.setattr(ActivationCapture, "_scratch_for", spy)
    sliced = encode(model, tokenizer, SENTENCES, batch_size=3, representations=("nas", "nav", "embedding"))
    assert sizes and max(sizes) <= 3 * 64 * 2
    for name in ("nas", "nav", "embedding"):
        torch.testing.assert_close(sliced.representations[name], whole.representations[name], rtol=1e-5, atol=1e-6)


# -- non-disturbance under mixed precision ------------------------------------------------------------------------
# The same guarantee as tests/test_callback_trainer.py's bitwise test, in the settings users train in: Trainer
# bf16=True (CPU autocast wraps the model's forward, and so every measurement's forward) and gradient checkpointing
# (the callback switches the model to eval mode and back; checkpointing must come back on and recompute identically).
# Default run: both at once (~20 s); each alone in the slow run.
@pytest.mark.parametrize(
    "training_args",
    [
        pytest.param({"bf16": True, "gradient_checkpointing": True}, id="bf16+checkpointing"),
        pytest.param({"bf16": True}, id="bf16", marks=pytest.mark.slow),
        pytest.param({"gradient_checkpointing": True}, id="checkpointing", marks=pytest.mark.slow),
    ],
)
def test_training_is_bitwise_identical_with_and_without_the_callback_in_mixed_precision(tmp_path, training_args):
    from neuronxa_callback.hosts.trainer import NeuronXACallback
    from tests._precision import make_trainer

    def run(callbacks, name):
        tokenizer = tiny_tokenizer()
        model = tiny_model("llama", tokenizer=tokenizer, seed=0)
        for layer in model.model.layers:  # dropout makes any stolen RNG draw visible in the losses
            layer.self_attn.attention_dropout = 0.2
        model.train()
        torch.manual_seed(1234)  # same global RNG state before both runs
        trainer = make_trainer(tmp_path / name, model, tokenizer, callbacks, max_steps=3, **training_args)
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        params = {k: p.detach().clone() for k, p in trainer.model.named_parameters()}
        return losses, params, trainer.model

    plain_losses, plain_params, _ = run([], "plain")
    callback = NeuronXACallback(
        eval_steps=1,
        quality_every=2,
        num_pairs=8,
        batch_size=8,
        max_length=48,
        max_new_tokens=4,
        num_fewshot=1,
        representations=("nas", "nav", "embedding"),
    )
    measured_losses, measured_params, model = run([callback], "measured")
    from neuronxa_callback.sinks.jsonl import read_jsonl

    records = read_jsonl(tmp_path / "measured" / "neuronxa" / "metrics.jsonl")
    # Every step measured (NAV too, which used to fail under autocast), quality on every other measurement.
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(len(r["pairs"]["eng_Latn-isl_Latn"]["navca"]) == 2 for r in records)
    assert "quality" in records[0]
    assert len(plain_losses) == 3 and measured_losses == plain_losses
    assert plain_params.keys() == measured_params.keys()
    assert all(torch.equal(plain_params[k], measured_params[k]) for k in plain_params)
    assert model.training
    assert model.is_gradient_checkpointing == bool(training_args.get("gradient_checkpointing"))


def test_precision_gemma_script_compares_a_bf16_copy_and_leaves_the_model_alone(tokenizer):
    """bench/precision_gemma.py's comparison (the README's Gemma table) on a tiny model: it ran bf16 on a copy."""
    import importlib.util
    from pathlib import Path

    from neuronxa_callback.data.loaders import load_parallel

    script = Path(__file__).resolve().parents[1] / "bench" / "precision_gemma.py"
    spec = importlib.util.spec_from_file_location("precision_gemma", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = tiny_model("llama", tokenizer=tokenizer)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    result = module.compare_precisions(model, tokenizer, load_parallel("bundled", languages=["deu_Latn"], num_pairs=16))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32
    for metric in ("nasca", "navca", "mexa"):
        assert len(result["fp32"][metric]) == len(result["bf16"][metric]) == 2
        assert 0.0 < result["rel_error"][metric] < 0.05  # bf16 really ran, and stayed close
    with pytest.raises(ValueError, match="float32"):
        module.compare_precisions(
            model.to(torch.bfloat16), tokenizer, load_parallel("bundled", languages=["deu_Latn"], num_pairs=4)
        )
