"""The configuration matrix: tiny models from config in every architecture family x weights fp32 / bf16 /
fp16 x representation nas / nav / embedding x plain / PEFT LoRA / 4-bit nf4 (bf16 compute) / 8-bit x gradient
checkpointing off / on, plus the callback inside real tiny Trainer runs with bf16=True (CPU autocast).

In every cell: the measurement runs, the model is left exactly as found (parameter dtypes, training and
requires_grad flags, gradient checkpointing, use_cache, the tokenizer's padding side), and the pooled
representations and scores agree with the float32 model's within the bounds below.

Tolerances come from a measurement (tests/_precision_measure.py), not a guess: every cell of the matrix for all 13
architectures with seed 0 (glm4: plain and LoRA cells only; the run was cut by its time limit), and seed 1 for llama
(all cells) and gpt2 (plain), 32 sentence pairs (tests/_precision.sentence_pairs), hidden 64, 2 layers. Maxima over
those runs ("runs" = architecture/seed pairs; rel = max over layers of ||cell - fp32||_F / ||fp32||_F of the pooled
representations; score = largest |difference| of one per-layer weak-alignment score, 1/32 = 0.031 per sentence;
nas-entry = largest |difference| of one pooled NAS entry, where gate values near 0 flip sign):
  plain fp32: nas rel 0 score 0.000 nas-entry 0; nav rel 0 score 0.000; embedding rel 0 score 0.000  [15 runs]
  plain bf16: nas rel 0.017 score 0.062 nas-entry 0.26; nav rel 0.0041 score 0.031; embedding rel 0.006 score 0.031  [15 runs]
  plain fp16: nas rel 0.0055 score 0.031 nas-entry 0.1; nav rel 0.00053 score 0.000; embedding rel 0.00082 score 0.000  [15 runs]
  lora  fp32: nas rel 0 score 0.000 nas-entry 0; nav rel 0 score 0.000; embedding rel 0 score 0.000  [15 runs]
  lora  bf16: nas rel 0.02 score 0.031 nas-entry 0.18; nav rel 0.0078 score 0.031; embedding rel 0.011 score 0.031  [14 runs]
  lora  fp16: nas rel 0.0074 score 0.031 nas-entry 0.11; nav rel 0.0012 score 0.000; embedding rel 0.0018 score 0.000  [14 runs]
  nf4   fp32: nas rel 0.21 score 0.094 nas-entry 0.96; nav rel 0.2 score 0.094; embedding rel 0.24 score 0.094  [13 runs]
  nf4   bf16: nas rel 0.21 score 0.125 nas-entry 0.96; nav rel 0.19 score 0.094; embedding rel 0.24 score 0.094  [13 runs]
  nf4   fp16: nas rel 0.21 score 0.094 nas-entry 0.96; nav rel 0.2 score 0.094; embedding rel 0.24 score 0.094  [13 runs]
  int8  fp32: nas rel 0.027 score 0.031 nas-entry 0.26; nav rel 0.013 score 0.031; embedding rel 0.017 score 0.031  [13 runs]
  int8  bf16: nas rel 0.026 score 0.031 nas-entry 0.26; nav rel 0.015 score 0.031; embedding rel 0.018 score 0.031  [13 runs]
  int8  fp16: nas rel 0.027 score 0.062 nas-entry 0.26; nav rel 0.013 score 0.031; embedding rel 0.017 score 0.031  [13 runs]
Each bound is 2x the measured maximum (rounded up); score bounds at least two flipped sentences (2/32 = 0.0625),
because a flipped NAS sign or a rounding difference can move a sentence across the strict inequality. The float32
plain and LoRA cells are exact copies of the reference: bound 1e-6 / 0.

The default run covers every architecture once (bf16), every dtype, representation and wrapper at least once, and
one Trainer bf16=True run; the full cross product is marked slow.
"""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback.instrument.architectures import activation_modules
from neuronxa_callback.testing.tiny import TINY_MODEL_TYPES, tiny_tokenizer
from tests._precision import (
    DTYPES,
    REPRESENTATIONS,
    WRAPPERS,
    build_cell,
    compare,
    encode_cell,
    make_trainer,
    model_state,
    sentence_pairs,
    warm_up,
)

# (wrapper, dtype) -> representation -> (max relative error of the pooled representation, max per-layer score diff).
# Derived from the measured maxima in the module docstring: relative error 2x the maximum (2 significant digits);
# score 2x the measured number of flipped sentences, at least 2 flips (2/32); float32 cells are exact copies.
BOUNDS: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("plain", "fp32"): {"nas": (1e-06, 0), "nav": (1e-06, 0), "embedding": (1e-06, 0)},
    ("plain", "bf16"): {"nas": (0.035, 0.125), "nav": (0.0083, 0.0625), "embedding": (0.012, 0.0625)},
    ("plain", "fp16"): {"nas": (0.012, 0.0625), "nav": (0.0011, 0.0625), "embedding": (0.0017, 0.0625)},
    ("lora", "fp32"): {"nas": (1e-06, 0), "nav": (1e-06, 0), "embedding": (1e-06, 0)},
    ("lora", "bf16"): {"nas": (0.041, 0.0625), "nav": (0.016, 0.0625), "embedding": (0.023, 0.0625)},
    ("lora", "fp16"): {"nas": (0.015, 0.0625), "nav": (0.0024, 0.0625), "embedding": (0.0036, 0.0625)},
    ("nf4", "fp32"): {"nas": (0.43, 0.1875), "nav": (0.4, 0.1875), "embedding": (0.49, 0.1875)},
    ("nf4", "bf16"): {"nas": (0.42, 0.25), "nav": (0.39, 0.1875), "embedding": (0.48, 0.1875)},
    ("nf4", "fp16"): {"nas": (0.43, 0.1875), "nav": (0.4, 0.1875), "embedding": (0.49, 0.1875)},
    ("int8", "fp32"): {"nas": (0.054, 0.0625), "nav": (0.027, 0.0625), "embedding": (0.035, 0.0625)},
    ("int8", "bf16"): {"nas": (0.053, 0.0625), "nav": (0.03, 0.0625), "embedding": (0.037, 0.0625)},
    ("int8", "fp16"): {"nas": (0.054, 0.125), "nav": (0.027, 0.0625), "embedding": (0.035, 0.0625)},
}


def _bound(wrapper: str, dtype: str, representation: str) -> tuple[float, float]:
    return BOUNDS[(wrapper, dtype)][representation]


def _bitsandbytes():
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # ImportError, or a RuntimeError from a broken native library
        pytest.skip(f"bitsandbytes unavailable: {error}")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def pairs():
    return sentence_pairs()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("precision-checkpoints")


@pytest.fixture(scope="module")
def references(tokenizer, pairs):
    """Float32 encodings per (model_type, reference kind, representation), computed once per module."""
    cache: dict[tuple, dict] = {}

    def get(model_type: str, lora: bool, representation: str, reference) -> dict:
        if (model_type, lora, representation) not in cache:  # all three in one pass: the cell will ask for them
            for name, value in encode_cell(reference, tokenizer, REPRESENTATIONS, pairs).items():
                cache[(model_type, lora, name)] = value
        return cache[(model_type, lora, representation)]

    return get


def check_cell(
    model_type, dtype, wrapper, representations, checkpointing, *, tokenizer, pairs, workdir, references, together=False
):
    """Build the cell, measure each representation (one encode() each, or all in one when `together`), check the
    model is left as found and the numbers agree with the float32 reference's."""
    if wrapper in ("nf4", "int8"):
        _bitsandbytes()
    model, reference = build_cell(model_type, dtype, wrapper, workdir=workdir)
    if wrapper in ("nf4", "int8"):
        warm_up(model, tokenizer)
    if checkpointing:
        model.gradient_checkpointing_enable()
        model.train()
    groups = [tuple(representations)] if together else [(r,) for r in representations]
    cells = {}
    for group in groups:
        before = model_state(model, tokenizer)
        cells.update(encode_cell(model, tokenizer, group, pairs))
        assert model_state(model, tokenizer) == before, f"{model_type}/{dtype}/{wrapper}: model not left as found"
    for representation, cell in cells.items():
        assert cell["pooled"].dtype == torch.float32 and torch.isfinite(cell["pooled"]).all()
        numbers = compare(cell, references(model_type, wrapper == "lora", representation, reference))
        rel_bound, score_bound = _bound(wrapper, dtype, representation)
        where = f"{model_type}/{dtype}/{wrapper}/{representation}/checkpointing={checkpointing}: {numbers}"
        assert numbers["rel_error"] <= rel_bound, where
        assert numbers["score_diff"] <= score_bound, where
    if checkpointing:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        assert inner.is_gradient_checkpointing and model.training


# -- default run: a representative subset ---------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_every_architecture_in_bf16(model_type, tokenizer, pairs, workdir, references):
    # Checkpointing on for every other family, so both settings are in the default run on several architectures.
    checkpointing = TINY_MODEL_TYPES.index(model_type) % 2 == 1
    # One encode() for the three representations keeps this sweep cheap; one call each is covered below and slow.
    check_cell(
        model_type,
        "bf16",
        "plain",
        REPRESENTATIONS,
        checkpointing,
        tokenizer=tokenizer,
        pairs=pairs,
        workdir=workdir,
        references=references,
        together=True,
    )


@pytest.mark.parametrize(
    "model_type, dtype, wrapper, representations, checkpointing",
    [
        # With the bf16 architecture sweep above: each dtype, representation and wrapper at least once.
        ("qwen2", "fp16", "lora", ("nav",), True),
        ("llama", "bf16", "nf4", ("nas", "embedding"), True),
        ("gpt2", "fp32", "int8", ("nav",), False),
    ],
)
def test_wrappers_and_dtypes(
    model_type, dtype, wrapper, representations, checkpointing, tokenizer, pairs, workdir, references
):
    check_cell(
        model_type,
        dtype,
        wrapper,
        representations,
        checkpointing,
        tokenizer=tokenizer,
        pairs=pairs,
        workdir=workdir,
        references=references,
    )


# -- slow: the full cross product -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_full_matrix(model_type, dtype, wrapper, tokenizer, pairs, workdir, references):
    for checkpointing in (False, True):
        check_cell(
            model_type,
            dtype,
            wrapper,
            REPRESENTATIONS,
            checkpointing,
            tokenizer=tokenizer,
            pairs=pairs,
            workdir=workdir,
            references=references,
        )


# -- the callback inside a real Trainer run with bf16=True (CPU autocast) ------------------------------------------
class _StateSpy:
    """A TrainerCallback that records model_state() at train begin and end (listed before and after NeuronXA)."""

    def __new__(cls, tokenizer, log):
        from transformers import TrainerCallback

        class Spy(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                log.append(("begin", model_state(model, tokenizer)))

            def on_train_end(self, args, state, control, model=None, **kwargs):
                log.append(("end", model_state(model, tokenizer)))

        return Spy()


def _pairs_tsv(path, pairs):
    # The "translations" are English half-sentences (see sentence_pairs), filed under isl_Latn for the loader.
    source, target = pairs
    path.write_text("eng_Latn\tisl_Latn\n" + "".join(f"{s}\t{t}\n" for s, t in zip(source, target)), encoding="utf-8")
    return path


def run_trainer_cell(tmp_path, monkeypatch, model_type, dtype, wrapper, checkpointing, *, tokenizer, pairs, workdir):
    """The callback measures at train begin and end of a 1-step bf16=True Trainer run at learning rate 0 (weights
    unchanged), under CPU autocast; its pooled sums and scores are compared with the float32 reference's."""
    from neuronxa_callback.hosts.trainer import NeuronXACallback
    from neuronxa_callback.instrument.activations import ActivationCapture
    from neuronxa_callback.sinks.jsonl import read_jsonl
    from tests._precision import _lora

    quantized = wrapper == "qlora"
    if quantized:
        _bitsandbytes()
    model, reference = build_cell(model_type, dtype, "nf4" if quantized else wrapper, workdir=workdir)
    if quantized:  # QLoRA: LoRA on the 4-bit model; the reference gets the same adapter (same seed) unquantized
        if any(type(m).__name__ == "Linear4bit" and m.bias is not None for m in model.modules()):
            # Seen 2026-12-02 (gpt2): on the CPU, bitsandbytes 0.50 repacks a 4-bit weight for its inference kernel at
            # the first eval-mode forward (the callback's step-0 measurement is one); a later TRAINING forward of a
            # Linear4bit with a bias then fails in bnb ("a view of a leaf Variable that requires grad is being used in
            # an in-place operation", result += bias). CPU only (packing_format_for_cpu); Llama-like models have no
            # biases. Checked: the same LoRA training step runs when no eval forward came first. Not fixed in the
            # callback yet (it measures in eval mode).
            pytest.xfail("bitsandbytes CPU: training a biased Linear4bit after an eval forward fails (bnb bug)")
        model, reference = _lora(model), _lora(reference)
        warm_up(model, tokenizer)
    model.train()
    batches: list[tuple[bool, dict]] = []
    original = ActivationCapture.end_batch

    def spy(self):
        sums = original(self)
        batches.append((True, {k: v.clone() for k, v in sums.items()}))
        return sums

    monkeypatch.setattr(ActivationCapture, "end_batch", spy)
    settings = dict(batch_size=8, max_length=256)
    reference_scores = {}  # the reference, outside any Trainer: float32, no autocast; its batches in plan order
    expected: dict[str, list] = {}
    for representation in REPRESENTATIONS:
        reference_scores[representation] = encode_cell(
            reference, tokenizer, representation, pairs, batch_size=settings["batch_size"]
        )["scores"]
        expected[representation] = [sums[representation] for _, sums in batches]
        batches.clear()

    states: list = []
    callback = NeuronXACallback(
        data=str(_pairs_tsv(tmp_path / "pairs.tsv", pairs)),
        languages=["isl_Latn"],
        num_pairs=len(pairs[0]),
        eval_steps=0,
        representations=REPRESENTATIONS,
        **settings,
    )
    trainer = make_trainer(
        tmp_path / "out",
        model,
        tokenizer,
        [_StateSpy(tokenizer, states), callback, _StateSpy(tokenizer, states)],
        max_steps=1,
        learning_rate=0.0,
        bf16=True,
        gradient_checkpointing=checkpointing,
    )
    # Inside the forward (where autocast is on): was it on, and what dtype did the activation come out in?
    # Measurement forwards run without gradients; training forwards (and checkpointing's recomputation) with them.
    inside: list[tuple[bool, bool, torch.dtype]] = []
    probe = activation_modules(model)[0].register_forward_hook(
        lambda m, i, o: inside.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), o.dtype))
    )
    try:
        trainer.train()
    finally:
        probe.remove()
    records = read_jsonl(tmp_path / "out" / "neuronxa" / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1], records
    # The measurements really ran under autocast (bf16 activations), and the sums stayed float32.
    measured = [(autocast, dtype) for grad, autocast, dtype in inside if not grad]
    assert len(measured) == len(batches) and set(measured) == {(True, torch.bfloat16)}, set(measured)
    assert all(v.dtype == torch.float32 for _, sums in batches for v in sums.values())
    # The callback left the model as it found it, at both measurements.
    assert states[0][1] == states[1][1] and states[2][1] == states[3][1]
    # Pooled sums: each measurement's batches against the reference's (same batch plan), per representation.
    per_measurement = len(batches) // 2
    assert per_measurement == len(expected["nas"])
    for m, record in enumerate(records):
        got = [sums for _, sums in batches[m * per_measurement : (m + 1) * per_measurement]]
        for representation in REPRESENTATIONS:
            a = torch.cat([g[representation] for g in got], dim=1).double()
            b = torch.cat(expected[representation], dim=1).double()
            rel = float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())
            # Autocast rounds every matmul's inputs to bf16, as bf16 weights do: the bf16 cells' bounds apply.
            rel_bound, score_bound = _bound("nf4" if quantized else wrapper, "bf16", representation)
            metric = {"nas": "nasca", "nav": "navca", "embedding": "mexa"}[representation]
            scores = torch.tensor(record["pairs"]["eng_Latn-isl_Latn"][metric], dtype=torch.float64)
            score_diff = float((scores - reference_scores[representation]).abs().max())
            where = (
                f"{model_type}/{dtype}/{wrapper}/checkpointing={checkpointing} step {record['step']} {representation}"
            )
            assert rel <= rel_bound, f"{where}: rel {rel}"
            assert score_diff <= score_bound, f"{where}: score diff {score_diff}"


def test_callback_in_a_bf16_trainer_run(tmp_path, monkeypatch, tokenizer, pairs, workdir):
    run_trainer_cell(
        tmp_path, monkeypatch, "llama", "fp32", "plain", True, tokenizer=tokenizer, pairs=pairs, workdir=workdir
    )


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-ckpt", "ckpt"])
@pytest.mark.parametrize("dtype, wrapper", [("fp32", "plain"), ("bf16", "plain"), ("fp32", "lora"), ("bf16", "qlora")])
@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "phi3"])
def test_callback_in_bf16_trainer_runs(
    tmp_path, monkeypatch, model_type, dtype, wrapper, checkpointing, tokenizer, pairs, workdir
):
    run_trainer_cell(
        tmp_path,
        monkeypatch,
        model_type,
        dtype,
        wrapper,
        checkpointing,
        tokenizer=tokenizer,
        pairs=pairs,
        workdir=workdir,
    )
