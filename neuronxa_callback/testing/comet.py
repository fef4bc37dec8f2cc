"""Build tiny, random, real COMET models offline (no hub), in the layout of the released ones.

Usage::

    from neuronxa_callback.testing.comet import build_tiny_comet
    model_dir = build_tiny_comet(tmp_dir / "tiny-comet", training_sentences, kind="regression")
    CometScorer(model=str(model_dir)).score(sources, hypotheses, references)

Layout written (as Unbabel/wmt22-comet-da on the hub)::

    <dir>/hparams.yaml              class_identifier + hyper-parameters; pretrained_model -> <dir>/encoder
    <dir>/checkpoints/model.ckpt    a Lightning-style checkpoint: {"state_dict", "hyper_parameters", ...}
    <dir>/encoder/                  config.json of a tiny XLM-R + a sentencepiece tokenizer trained here

The weights are random (seeded), so the scores mean nothing; they exercise the real comet code paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

TINY_HIDDEN = 32
KINDS = ("regression", "unified")


def build_tiny_encoder(directory: Path, sentences: Sequence[str], *, vocab_size: int = 300) -> Path:
    """Train a small sentencepiece unigram model on ``sentences`` and save it with a tiny XLM-R config."""
    import sentencepiece as spm
    from transformers import XLMRobertaConfig, XLMRobertaTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    # XLM-R's sentencepiece model keeps <unk>=0, <s>=1, </s>=2; the transformers converter drops those three
    # pieces and puts its own <s> <pad> </s> <unk> first, so train with the same special ids.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_prefix=str(directory / "sentencepiece.bpe"),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(directory), local_files_only=True)
    tokenizer.save_pretrained(str(directory))
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.save_pretrained(str(directory))
    return directory


def build_tiny_comet(directory: Path, sentences: Sequence[str], *, kind: str = "regression", seed: int = 0) -> Path:
    """Write a tiny COMET model of ``kind`` ("regression" = wmt22-comet-da-like, "unified" = CometKiwi-like)."""
    import torch

    from neuronxa_callback.quality._comet_compat import import_comet

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    comet = import_comet()
    directory = Path(directory)
    encoder_dir = build_tiny_encoder(directory / "encoder", sentences)
    common = dict(
        encoder_model="XLM-RoBERTa",
        pretrained_model=str(encoder_dir),
        layer_transformation="sparsemax",
        hidden_sizes=[64, 32],
        activations="Tanh",
        load_pretrained_weights=False,
        local_files_only=True,
    )
    torch.manual_seed(seed)
    if kind == "regression":
        model = comet.models.RegressionMetric(pool="avg", layer="mix", final_activation=None, **common)
    else:
        model = comet.models.UnifiedMetric(
            input_segments=["mt", "src"], sent_layer="mix", word_level_training=False, **common
        )
    # LayerwiseAttention starts with equal weights; random ones make a wrong load visible. Kept within 0.3 of
    # each other so that sparsemax keeps every layer: a sparsemax that picks only the embedding layer would give
    # CometKiwi (which reads the first token) the same score for every sentence.
    if model.layerwise_attention is not None:
        with torch.no_grad():
            for weight in model.layerwise_attention.scalar_parameters:
                weight.uniform_(0.0, 0.3)
    hparams = dict(model.hparams)
    hparams["class_identifier"] = "regression_metric" if kind == "regression" else "unified_metric"
    (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": "2.x"},
        directory / "checkpoints" / "model.ckpt",
    )
    with open(directory / "hparams.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump(_plain(hparams), handle, sort_keys=True)
    return directory


def _plain(value):
    """hparams may hold tuples / AttributeDicts; YAML wants plain lists and dicts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
