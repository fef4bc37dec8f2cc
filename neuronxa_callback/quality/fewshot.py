"""The few-shot example pool for prompting base models to translate.

    examples = load_fewshot_examples("isl_Latn", "eng_Latn", k=3, exclude=scored_sources)

    chosen = select_fewshot_examples("ntrex", "ita_Latn", "eng_Latn", k=3, scored=data)  # same source, unscored lines

load_fewshot_examples: the bundled pool, `data/bundled_fewshot.jsonl`, written for this project and disjoint from the
bundled evaluation and training sentences, so a run never prompts with (or trains on) the pairs it scores.
select_fewshot_examples: the scored pairs' own source first (see its docstring), the bundled pool otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def load_fewshot_examples(
    source_lang: str, target_lang: str, *, k: int = 3, exclude: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Return up to `k` (source, target) example pairs, skipping any whose source or target is in `exclude`."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return []
    from neuronxa_callback.data.loaders import load_parallel

    # The bundled loader already parses the pool (errors name file:line; a missing language lists those it has).
    pool = load_parallel("bundled", split="fewshot", pivot=source_lang, languages=(target_lang,), num_pairs=None)
    excluded = set(exclude)
    examples = [
        (source, target)
        for source, target in zip(pool.sentences(source_lang), pool.sentences(target_lang))
        if source not in excluded and target not in excluded
    ]
    return examples[:k]


# --------------------------------------------------------------------------------------------------------------
# Examples from the same source as the scored pairs: a model prompted with examples of the very data it is
# scored on (same domain, same translators, same style) is measured fairly, and every language the source can score
# can also be prompted -- the bundled pool has only five languages.


class FewShotError(ValueError):
    """No few-shot examples can be found for a translation direction without using the scored sentences."""


@dataclass(frozen=True)
class FewShotExamples:
    """Prompt examples with where they came from: ``pairs`` [(source, target)], ``origin`` (the data set and split)
    and ``ids`` (the example sentences' ids in that source; recorded so a reader can check they are not scored)."""

    pairs: tuple[tuple[str, str], ...]
    origin: str
    ids: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"origin": self.origin, "ids": list(self.ids)}


_FLORES_OTHER_SPLIT = {"devtest": "dev", "dev": "devtest"}


def _candidate_tables(spec: Any, source_lang: str, target_lang: str, split: str, token: str | None):
    """[(table, same_split)] from the scored pairs' own source, most preferred first.

    same_split: the table is the scored split itself (its ids can be compared with the scored ids); FLORES' other split
    and the packaged few-shot split have their own ids.
    """
    from neuronxa_callback.data import loaders as _data

    wanted = [source_lang, target_lang]
    if isinstance(spec, str) and spec.strip().lower() == "bundled":
        return [(_data._bundled_table("fewshot"), False)]
    if _data._is_packaged_ntrex(spec):
        # Unscored lines 1-100 first (when fewer are scored), then the held-out lines 101-105.
        return [(_data._packaged_ntrex_table(split), True), (_data._packaged_ntrex_table("fewshot"), False)]
    if isinstance(spec, str) and spec.strip().lower() in ("flores", "flores+", "flores_plus", "floresplus"):
        return [(_data._flores_plus_table(wanted, _FLORES_OTHER_SPLIT.get(split, "dev"), token), False)]
    path = Path(spec).expanduser()
    if path.is_dir() and _data._ntrex_files_dir(path) is None and _data._is_flores200_dir(path):
        return [(_data._flores200_table(path, wanted, _FLORES_OTHER_SPLIT.get(split, "dev")), False)]
    # An NTREX-128 directory, a .tsv or .jsonl file: the lines that are not scored.
    return [(_data._load_table(spec, None if _data._is_one_table(spec) else wanted, split, token, None), True)]


def _pick(
    table, source_lang: str, target_lang: str, k: int, scored_ids: set[str], scored_texts: set[str], same_split: bool
) -> list[int]:
    if source_lang not in table.columns or target_lang not in table.columns:
        return []
    source, target = table.columns[source_lang], table.columns[target_lang]
    positions = [i for i, row_id in enumerate(table.ids) if not (same_split and row_id in scored_ids)]
    positions = [i for i in positions if source[i] not in scored_texts and target[i] not in scored_texts]
    # The lines right after the last scored one first (lines 101-103 when lines 1-100 are scored), then the rest.
    last = max((i for i, row_id in enumerate(table.ids) if row_id in scored_ids), default=-1) if same_split else -1
    positions.sort(key=lambda i: (i <= last, i))
    return positions[:k]


def select_fewshot_examples(
    spec: Any,
    source_lang: str,
    target_lang: str,
    *,
    k: int = 3,
    scored: Any = None,
    split: str = "devtest",
    token: str | None = None,
) -> FewShotExamples:
    """k prompt examples for source_lang -> target_lang from the source of the scored pairs, never a scored line.

        data = load_parallel(ntrex_dir, languages=("ita",), num_pairs=100)
        select_fewshot_examples(ntrex_dir, "ita_Latn", "eng_Latn", scored=data).ids   # ('101', '102', '103')

    Where the source has more lines than are scored, the examples are the first unscored lines after the scored ones
    (an NTREX-128 directory, the packaged NTREX-128 subset's held-out lines 101-105, a long .tsv/.jsonl file); for
    FLORES scored on devtest they come from dev (and vice versa). Otherwise, or when that gives fewer than k, from the
    bundled few-shot pool (five languages). A pair that is in neither raises FewShotError, which says what to do
    (num_fewshot=0 for zero-shot prompts, fewer scored pairs, a source with more lines). `scored` (a ParallelSet):
    its ids and every sentence it holds are excluded.
    """
    from neuronxa_callback.data import loaders as _data

    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    source_lang, target_lang = _data.normalize_language(source_lang), _data.normalize_language(target_lang)
    if k == 0:
        return FewShotExamples((), "none (zero-shot)", ())
    scored_ids = set(scored.ids) if scored is not None else set()
    scored_texts = (
        {text for lang in scored.languages for text in scored.sentences(lang)} if scored is not None else set()
    )
    tried = []
    tables = _candidate_tables(spec, source_lang, target_lang, split, token)
    if not (isinstance(spec, str) and spec.strip().lower() == "bundled"):
        tables.append((_data._bundled_table("fewshot"), False))
    chosen: list[tuple[str, str]] = []
    for table, same_split in tables:
        picked = _pick(table, source_lang, target_lang, k, scored_ids, scored_texts, same_split)
        tried.append(f"{table.origin}: {len(picked)}")
        if len(picked) >= k:
            chosen = [(table.columns[source_lang][i], table.columns[target_lang][i]) for i in picked]
            return FewShotExamples(tuple(chosen), table.origin, tuple(table.ids[i] for i in picked))
    raise FewShotError(
        f"no {k} few-shot examples for {source_lang} -> {target_lang} outside the scored sentences "
        f"(usable examples found: {'; '.join(tried)}). Score fewer pairs so that unscored lines remain, use a source "
        f"with more lines (an NTREX-128 or FLORES-200 directory), or translate zero-shot (num_fewshot=0 / "
        f"--num-fewshot 0)"
    )
