"""Tiny models in every precision / wrapper the precision matrix covers, and the numbers it compares.

Usage::

    from tests._precision import build_cell, encode_cell, compare

    model, reference = build_cell("llama", "bf16", "lora", seed=0, workdir=tmp_path)
    low = encode_cell(model, tokenizer, "nav")           # the cell's pooled NAV [L, 2n, d] and per-layer scores
    ref = encode_cell(reference, tokenizer, "nav")       # the float32 model's
    compare(low, ref)                                    # {"rel_error": ..., "max_abs": ..., "score_diff": ...}

`reference` is the float32 model the cell must agree with: the same seeded weights (and LoRA adapter) unquantized
and uncast. Used by tests/test_precision_matrix.py and by the measurement that set its tolerances
(tests/_precision_measure.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from neuronxa_callback.testing.tiny import CorpusDataset, tiny_model, tiny_tokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
REPRESENTATIONS = ("nas", "nav", "embedding")
# plain: cast weights; lora: PEFT LoRA on every linear layer (random B, so the adapter changes the model), cast;
# nf4: bitsandbytes 4-bit nf4 with bf16 compute (the paper's QLoRA set-up), other weights in the dtype;
# int8: bitsandbytes LLM.int8, other weights in the dtype.
WRAPPERS = ("plain", "lora", "nf4", "int8")
# bitsandbytes quantizes in blocks of 64: hidden 64 everywhere so every cell has the same shapes.
HIDDEN = 64
NUM_LAYERS = 2


def sentence_pairs(n: int = 32) -> tuple[list[str], list[str]]:
    """n bundled English sentences and, as "translations", the second half of each one's words, lower-cased.

    A random tiny model scores real translations near chance and near-copies near 1.0: either would hide score
    changes. Half-sentences give tiny models mid-range scores (0.2-0.7 on llama, gpt2; measured), where a
    rounding difference can move a sentence across the strict-inequality line.
    """
    from neuronxa_callback.data.loaders import load_parallel

    source = list(load_parallel("bundled", languages=["isl_Latn"], num_pairs=n).sentences("eng_Latn"))
    target = [" ".join(s.split()[len(s.split()) // 2 :]).lower() for s in source]
    return source, target


def _lora(model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)  # the adapter's random init: the same adapter for the cell and its reference
    return get_peft_model(
        model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False)
    )


def _checkpoint(model_type: str, seed: int, workdir: Path) -> Path:
    path = Path(workdir) / f"{model_type}-s{seed}"
    if not (path / "config.json").exists():
        tiny_model(
            model_type, tokenizer=tiny_tokenizer(), num_layers=NUM_LAYERS, seed=seed, hidden_size=HIDDEN
        ).save_pretrained(path)
    return path


def build_cell(
    model_type: str, dtype: str, wrapper: str, *, seed: int = 0, workdir: Path | None = None
) -> tuple[Any, Any]:
    """(model in this cell's precision and wrapper, its float32 reference); quantized cells need `workdir`."""
    tokenizer = tiny_tokenizer()
    reference = tiny_model(model_type, tokenizer=tokenizer, num_layers=NUM_LAYERS, seed=seed, hidden_size=HIDDEN)
    if wrapper in ("plain", "lora"):
        if wrapper == "lora":
            reference = _lora(reference)
        model = copy.deepcopy(reference).to(DTYPES[dtype])
        return model, reference
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if wrapper == "nf4":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    elif wrapper == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ValueError(f"build_cell: unknown wrapper {wrapper!r}; known: {WRAPPERS}")
    if workdir is None:
        raise ValueError("build_cell: quantized cells load from a checkpoint; pass workdir")
    model = AutoModelForCausalLM.from_pretrained(
        _checkpoint(model_type, seed, workdir), quantization_config=config, dtype=DTYPES[dtype], device_map="cpu"
    )
    model.eval()
    return model, reference


def warm_up(model, tokenizer) -> None:
    """One forward pass, flags put back. bitsandbytes changes a quantized model on its first forward, whoever runs it
    (Linear4bit repacks its weight for the CPU kernel and casts its bias to the input dtype; Linear8bitLt casts its
    bias): snapshot a quantized model's state after this, so the comparison sees what the measurement changes."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(**tokenizer(["A warm-up sentence."], return_tensors="pt"))
    for module, flag in flags:
        module.training = flag


def model_state(model, tokenizer) -> dict:
    """Everything a measurement must leave as it found: dtypes, training and requires_grad flags, checkpointing,
    use_cache, the tokenizer's padding side."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {
        "dtypes": [(name, p.dtype) for name, p in model.named_parameters()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "checkpointing": inner.is_gradient_checkpointing,
        "checkpointing_modules": [getattr(m, "gradient_checkpointing", None) for m in model.modules()],
        "use_cache": inner.config.use_cache,
        "padding_side": tokenizer.padding_side,
    }


def encode_cell(model, tokenizer, representation, pairs: tuple[list[str], list[str]], batch_size: int = 8) -> dict:
    """{"pooled": source + target sentences [L, 2n, d], "scores": per-layer weak alignment} for one representation
    name; for a tuple of names, {name: that dict} from a single encode() call."""
    from neuronxa_callback.alignment.scoring import cosine_matrices, weak_alignment
    from neuronxa_callback.instrument.activations import encode

    names = (representation,) if isinstance(representation, str) else tuple(representation)
    source, target = pairs
    encoded = encode(model, tokenizer, source + target, representations=names, batch_size=batch_size)
    n = len(source)
    out = {}
    for name in names:
        pooled = encoded.representations[name]
        out[name] = {"pooled": pooled, "scores": weak_alignment(cosine_matrices(pooled[:, :n], pooled[:, n:]))}
    return out[representation] if isinstance(representation, str) else out


def compare(cell: dict, reference: dict) -> dict[str, float]:
    """rel_error: max over layers of ||cell - ref||_F / ||ref||_F; max_abs: the largest |difference| of one pooled
    entry; score_diff: the largest |difference| of a per-layer score; mean_diff: of the layer mean."""
    a, b = cell["pooled"].double(), reference["pooled"].double()
    per_layer = (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-30)
    return {
        "rel_error": float(per_layer.max()),
        "max_abs": float((a - b).abs().max()),
        "score_diff": float((cell["scores"] - reference["scores"]).abs().max()),
        "mean_diff": float(abs(cell["scores"].mean() - reference["scores"].mean())),
    }


def make_trainer(
    output_dir, model, tokenizer, callbacks=(), *, max_steps: int = 3, learning_rate: float = 5e-3, **training_args
):
    """A tiny CPU Trainer (seeded; no saving, no reporting) on the tiny corpus; training_args override the defaults,
    e.g. bf16=True (CPU autocast) or gradient_checkpointing=True."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    defaults = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=learning_rate,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    defaults.update(training_args)
    return Trainer(
        model=model,
        args=TrainingArguments(**defaults),
        train_dataset=CorpusDataset(tokenizer),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
