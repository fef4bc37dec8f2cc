"""The few-shot example pool for prompting base models to translate.

    examples = load_fewshot_examples("isl_Latn", "eng_Latn", k=3, exclude=scored_sources)

Examples come from `data/bundled_fewshot.jsonl`, written for this project and disjoint from the bundled evaluation and
training sentences, so a run never prompts with (or trains on) the pairs it scores.
"""
from __future__ import annotations

from typing import Iterable


def load_fewshot_examples(source_lang: str, target_lang: str, *, k: int = 3,
                          exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Return up to `k` (source, target) example pairs, skipping any whose source or target is in `exclude`."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return []
    from .data import load_parallel

    # The bundled loader already parses the pool (errors name file:line; a missing language lists those it has).
    pool = load_parallel("bundled", split="fewshot", pivot=source_lang, languages=(target_lang,), num_pairs=None)
    excluded = set(exclude)
    examples = [(source, target) for source, target in zip(pool.sentences(source_lang), pool.sentences(target_lang))
                if source not in excluded and target not in excluded]
    return examples[:k]
