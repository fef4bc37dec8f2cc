"""The few-shot example pool for prompting base models to translate.

    examples = load_fewshot_examples("isl_Latn", "eng_Latn", k=3, exclude=scored_sources)

Examples come from `data/bundled_fewshot.jsonl`, written for this project and disjoint from the bundled evaluation and
training sentences, so a run never prompts with (or trains on) the pairs it scores.
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Iterable

FEWSHOT_FILE = "bundled_fewshot.jsonl"


def load_fewshot_examples(source_lang: str, target_lang: str, *, k: int = 3,
                          exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Return up to `k` (source, target) example pairs, skipping any whose source or target is in `exclude`."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return []
    from .data import normalize_language

    source_lang, target_lang = normalize_language(source_lang), normalize_language(target_lang)
    excluded = set(exclude)
    path = resources.files("neuronxa_callback") / "data" / FEWSHOT_FILE
    examples: list[tuple[str, str]] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        missing = [lang for lang in (source_lang, target_lang) if lang not in record]
        if missing:
            available = sorted(key for key in record if key != "id")
            raise ValueError(f"{path}:{line_number}: the few-shot pool has no {', '.join(missing)}; "
                             f"it has {', '.join(available)}. Pass examples explicitly for other languages.")
        source, target = record[source_lang], record[target_lang]
        if source in excluded or target in excluded:
            continue
        examples.append((source, target))
        if len(examples) == k:
            break
    return examples
