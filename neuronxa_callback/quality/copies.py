"""Copy detection: a hypothesis that repeats a prompt example (or echoes its own source) is not a translation.

    from neuronxa_callback.quality.copies import mask_copies

    masked, report = mask_copies(hypotheses, examples=[("Safnið er lokað á mánudögum.", "The museum is closed ...")],
                                 sources=sources)
    report.rate, report.ids(ids), masked   # copies are replaced by "" before scoring

Small base models prompted with few-shot examples often answer with one of the examples (verbatim, or with a word
changed) instead of translating the sentence -- a tuned Gemma 3 270M did so for 25 of 40 sentences in one demo run.
Such an answer can still share words with the reference and earn chrF points, so a copy is flagged and scored as an
EMPTY hypothesis: it stays in the scored set (a copy counts as a failed translation, the set does not shrink) and earns
nothing. The copy rate is reported next to every quality score. With ``sources`` (the sentences being translated,
aligned with the hypotheses), an answer that merely repeats its own source sentence -- an untranslated echo, which
earns chrF points for the names and numbers it shares with the reference -- counts as a copy too ("source sentence").

A hypothesis is a copy of an example side (source or target) when, after case folding and removing everything but
letters and digits, it equals it, or their difflib similarity ratio is at least ``threshold`` (0.9: a changed word
or two in a sentence). Hypotheses shorter than ``min_chars`` normalised characters are never flagged (a one-word
answer "Yes." is not evidence of copying).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["CopyReport", "find_copies", "mask_copies", "COPY_THRESHOLD", "COPY_POLICY"]

COPY_THRESHOLD = 0.9
COPY_POLICY = "scored as empty"  # how copies enter the quality scores; recorded next to them


def _normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


@dataclass(frozen=True)
class CopyReport:
    """Which hypotheses copy a prompt example: ``flags[i]`` True for a copy, ``matches[i]`` e.g. "example 2 target"."""

    flags: tuple[bool, ...]
    matches: tuple[str | None, ...] = field(default=())

    @property
    def count(self) -> int:
        return sum(self.flags)

    @property
    def rate(self) -> float:
        return self.count / len(self.flags) if self.flags else 0.0

    def ids(self, ids: Sequence[str]) -> list[str]:
        return [str(i) for i, flag in zip(ids, self.flags) if flag]

    def to_dict(self, ids: Sequence[str] | None = None) -> dict:
        out = {"copies": self.count, "copy_rate": self.rate, "copy_policy": COPY_POLICY}
        if ids is not None:
            out["copied_ids"] = self.ids(ids)
        return out


def _similar(norm: str, other: str, threshold: float) -> bool:
    if norm == other:
        return True
    matcher = difflib.SequenceMatcher(None, norm, other, autojunk=False)
    # quick_ratio is an upper bound of ratio: skip the exact computation when it cannot reach threshold.
    return matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold


def find_copies(
    hypotheses: Sequence[str],
    examples: Sequence[Sequence[str]],
    *,
    sources: Sequence[str] | None = None,
    threshold: float = COPY_THRESHOLD,
    min_chars: int = 12,
) -> CopyReport:
    """Flag each hypothesis that equals or nearly equals (ratio >= threshold) an example's source or target, or (with
    ``sources``, aligned with ``hypotheses``) its own source sentence."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if sources is not None and len(sources) != len(hypotheses):
        raise ValueError(f"sources has {len(sources)} sentences but hypotheses has {len(hypotheses)}")
    sides = []
    for number, example in enumerate(examples, start=1):
        if isinstance(example, str) or len(example) != 2:
            raise ValueError(f"examples[{number - 1}]: expected a (source, target) pair, got {example!r}")
        for name, text in zip(("source", "target"), example):
            norm = _normalize(text)
            if norm:
                sides.append((f"example {number} {name}", norm))
    flags, matches = [], []
    for index, hypothesis in enumerate(hypotheses):
        norm = _normalize(hypothesis or "")
        match = None
        if len(norm) >= min_chars:
            match = next((label for label, side in sides if _similar(norm, side, threshold)), None)
            if match is None and sources is not None and _similar(norm, _normalize(sources[index]), threshold):
                match = "source sentence"
        flags.append(match is not None)
        matches.append(match)
    return CopyReport(tuple(flags), tuple(matches))


def mask_copies(
    hypotheses: Sequence[str],
    examples: Sequence[Sequence[str]],
    *,
    sources: Sequence[str] | None = None,
    threshold: float = COPY_THRESHOLD,
) -> tuple[list[str], CopyReport]:
    """(hypotheses with every copy replaced by "", the CopyReport): what the quality scorers should see."""
    report = find_copies(hypotheses, examples, sources=sources, threshold=threshold)
    return ["" if flag else hypothesis for hypothesis, flag in zip(hypotheses, report.flags)], report
