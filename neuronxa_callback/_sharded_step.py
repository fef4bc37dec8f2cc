"""The callback's measurement steps under parameter sharding (FSDP1, FSDP2, DeepSpeed ZeRO-3): the sharded
counterparts of _measurement.encode_all and _quality_step.translate_share (see sharding.py for the rules).

Usage (_measurement.run_measurement)::

    if sharding_engine(model) is not None:
        local = encode_all_sharded(inputs, model, tokenizer)          # collective, every rank
        mine = translate_share_sharded(model, tokenizer, data, settings, examples)   # collective, every rank
"""
from __future__ import annotations

from typing import Any

from ._quality_step import directions, example_pairs, quality_slice


def encode_all_sharded(inputs: Any, model: Any, tokenizer: Any) -> Any:
    """This rank's rows of every language's sentences (as encode_all), all ranks making the same number of forwards."""
    from .alignment import parallel_sentences
    from .sharding import encode_sharded

    return encode_sharded(model, tokenizer, parallel_sentences(inputs.data), **inputs.settings.encode_options())


def translate_share_sharded(model: Any, tokenizer: Any, data: Any, settings: Any,
                            examples: dict[tuple[str, str], Any]) -> dict[tuple[str, str], list]:
    """This rank's translations {(src, tgt): [(i, hypothesis)]}, sentence i on rank i % world (as translate_share),
    with the same number of synced generate calls on every rank."""
    from .sharding import translate_sharded

    out = {}
    for source_lang, target_lang in directions(data, settings):
        out[(source_lang, target_lang)] = translate_sharded(
            model,
            tokenizer,
            quality_slice(data.sentences(source_lang), settings),
            source_lang=source_lang,
            target_lang=target_lang,
            examples=example_pairs(examples, (source_lang, target_lang)),
            **settings.translate_options(),
        )
    return out
