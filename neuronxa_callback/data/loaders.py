"""Parallel sentence sets: a fixed, recorded choice of aligned sentences in a pivot language and targets.

Usage::

    from neuronxa_callback.data.loaders import load_parallel, load_training_pairs
    data = load_parallel("bundled", languages=("isl_Latn", "deu_Latn"), num_pairs=100)
    data = load_parallel("../shared/data/ntrex128", languages=("isl",), num_pairs=100, sample="random", seed=1)
    data = load_parallel("flores+", languages=("isl_Latn",), split="devtest", token=None)  # gated hub dataset
    data.sentences("isl_Latn"), data.ids, data.origin, data.pair_name("isl_Latn")  # -> "eng_Latn-isl_Latn"
    pairs = load_training_pairs("../shared/data/ntrex128", "isl_Latn", "eng_Latn", start=101, stop=1997)

Sources (``spec``): "ntrex" (the default: an NTREX-128 subset shipped with the package, CC BY-SA 4.0; lines 1-100
in every language for evaluation, lines 101-105 for few-shot prompts, English-Icelandic lines 106-1997 for training),
"bundled" (package data, written for this project), "flores"/"flores+" (hub dataset
openlanguagedata/flores_plus, gated), a FLORES-200 directory, an NTREX-128 directory, a ``.tsv`` file (header
row of language codes, or no header and the columns given by pivot + languages) or a ``.jsonl`` file (objects
with language-code keys and an optional "id"). Two aligned text files: ``load_file_pair``.

Ids record which sentences were chosen: 1-based line numbers (as strings) for text files, TSV data rows and NTREX-128
(the packaged subset keeps the line numbers of the NTREX-128 files),
the "id" field for JSONL and the bundled sample, the FLORES id for FLORES+/FLORES-200.
"""

from __future__ import annotations

import functools
import json
import os
import random
import socket
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neuronxa_callback.data.languages import FLORES_PLUS_ALIASES, NTREX_CODES, LanguageCodeError, normalize_language

__all__ = [
    "ParallelSet",
    "ParallelDataError",
    "ParallelDataWarning",
    "load_parallel",
    "load_file_pair",
    "load_training_pairs",
    "normalize_language",
    "BUNDLED_ORIGIN",
    "FLORES_PLUS_DATASET",
    "NTREX_PACKAGED_ORIGIN",
    "NTREX_SPEC_NAMES",
]

BUNDLED_ORIGIN = "bundled sample (neuronxa_callback, CC BY 4.0)"
FLORES_PLUS_DATASET = "openlanguagedata/flores_plus"
_BUNDLED_FILES = {"eval": "bundled_eval.jsonl", "fewshot": "bundled_fewshot.jsonl", "train": "bundled_train_en_is.tsv"}
_BUNDLED_SPLITS = {"devtest": "eval", "eval": "eval", "test": "eval", "fewshot": "fewshot", "train": "train"}
_FLORES_SPLITS = ("dev", "devtest")
_NTREX_SOURCE = "newstest2019-src.eng.txt"
# The packaged NTREX-128 subset (neuronxa_callback/data/packaged/ntrex128/, built by tools/make_ntrex_subset.py): split -> file.
NTREX_SPEC_NAMES = ("ntrex", "ntrex128", "ntrex-128")
NTREX_PACKAGED_ORIGIN = "NTREX-128 (packaged subset, Federmann et al. 2022, CC BY-SA 4.0)"
_NTREX_PACKAGED_FILES = {
    "eval": ("ntrex128_eval.jsonl.gz", "lines 1-100"),
    "fewshot": ("ntrex128_fewshot.jsonl.gz", "lines 101-105"),
    "train": ("ntrex128_train_eng-isl.jsonl.gz", "lines 106-1997"),
}
_SAMPLES = ("first", "random")


class ParallelDataError(ValueError):
    """Parallel data that cannot be used as asked: missing file, bad line, unknown language, too few pairs."""


class ParallelDataWarning(UserWarning):
    """Parallel data that can be used but may distort scores (duplicate sentences)."""


@dataclass(frozen=True)
class ParallelSet:
    """Aligned sentences: ``texts[lang][i]`` are translations of each other for every language; pivot first.

    Usage::

        data = ParallelSet(("eng_Latn", "isl_Latn"), {"eng_Latn": ("Hi.", "Bye."), "isl_Latn": ("Hæ.", "Bæ.")},
                           ids=("1", "2"), origin="my notes")
        data.pivot, data.targets, len(data), data.pair_name("isl_Latn")  # "eng_Latn-isl_Latn"
        data.subset(1, sample="random", seed=3)
    """

    languages: tuple[str, ...]
    texts: dict[str, tuple[str, ...]] = field(hash=False)
    ids: tuple[str, ...]
    origin: str

    def __post_init__(self) -> None:
        languages = tuple(normalize_language(code) for code in self.languages)
        if len(languages) < 2 or len(set(languages)) != len(languages):
            raise ParallelDataError(
                f"ParallelSet needs a pivot and >= 1 distinct target language, got {self.languages}"
            )
        texts = {normalize_language(code): tuple(sentences) for code, sentences in self.texts.items()}
        missing = [code for code in languages if code not in texts]
        if missing:
            raise ParallelDataError(f"ParallelSet: no texts for {missing} (texts has {sorted(texts)})")
        ids = tuple(str(i) for i in self.ids)
        if len(set(ids)) != len(ids):
            raise ParallelDataError(f"ParallelSet ({self.origin}): ids are not unique")
        for code in languages:
            if len(texts[code]) != len(ids):
                raise ParallelDataError(
                    f"ParallelSet ({self.origin}): {code} has {len(texts[code])} sentences but there are {len(ids)} ids"
                )
        # Frozen: write the normalised values through object.__setattr__.
        object.__setattr__(self, "languages", languages)
        object.__setattr__(self, "texts", {code: texts[code] for code in languages})
        object.__setattr__(self, "ids", ids)

    @property
    def pivot(self) -> str:
        return self.languages[0]

    @property
    def targets(self) -> tuple[str, ...]:
        return self.languages[1:]

    def __len__(self) -> int:
        return len(self.ids)

    def sentences(self, lang: str) -> list[str]:
        """Sentences of ``lang`` (any accepted code form) in the set's order."""
        code = normalize_language(lang)
        if code not in self.texts:
            raise ParallelDataError(f"{code} is not in this set ({self.origin}); it has {list(self.languages)}")
        return list(self.texts[code])

    def pair_name(self, lang: str) -> str:
        """``"eng_Latn-isl_Latn"``: the pivot and ``lang``, the key used in reports and logs."""
        code = normalize_language(lang)
        if code not in self.targets:
            raise ParallelDataError(f"{code} is not a target of this set; targets are {list(self.targets)}")
        return f"{self.pivot}-{code}"

    def subset(self, num_pairs: int | None, sample: str = "first", seed: int = 0) -> ParallelSet:
        """A fixed choice of ``num_pairs`` pairs: the first n, or a seeded random sample kept in original order."""
        positions = _choose_positions(len(self), num_pairs, sample, seed, where=self.origin)
        return ParallelSet(
            languages=self.languages,
            texts={code: tuple(self.texts[code][i] for i in positions) for code in self.languages},
            ids=tuple(self.ids[i] for i in positions),
            origin=self.origin,
        )

    def to_dict(self) -> dict:
        return {
            "languages": list(self.languages),
            "origin": self.origin,
            "ids": list(self.ids),
            "texts": {code: list(self.texts[code]) for code in self.languages},
        }

    @classmethod
    def from_dict(cls, data: dict) -> ParallelSet:
        return cls(
            languages=tuple(data["languages"]),
            texts={k: tuple(v) for k, v in data["texts"].items()},
            ids=tuple(data["ids"]),
            origin=data["origin"],
        )


# --------------------------------------------------------------------------------------------------------------
# A loaded source before the choice of pairs: columns of sentences with ids and, for files, line numbers.


@dataclass
class _Table:
    origin: str
    ids: list[str]
    columns: dict[str, list[str]]  # canonical language -> sentences
    where: dict[str, str]  # canonical language -> file name (or origin) for messages
    lines: list[int] | None = None  # line number of each record, when the source is a file

    def location(self, lang: str, index: int) -> str:
        if self.lines is not None:
            return f"{self.where[lang]}:{self.lines[index]}"
        return f"{self.where[lang]} (id {self.ids[index]})"


def _choose_positions(total: int, num_pairs: int | None, sample: str, seed: int, where: str) -> list[int]:
    if sample not in _SAMPLES:
        raise ParallelDataError(f"sample must be one of {_SAMPLES}, got {sample!r}")
    if num_pairs is None:
        num_pairs = total
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int):
        raise ParallelDataError(f"num_pairs must be an int or None, got {num_pairs!r}")
    if num_pairs < 2:
        raise ParallelDataError(f"num_pairs={num_pairs}: alignment scores need at least 2 pairs")
    if num_pairs > total:
        raise ParallelDataError(
            f"{where} has only {total} pairs but num_pairs={num_pairs} were asked for: pass num_pairs <= {total} "
            f"(or None for all)"
        )
    if sample == "first":
        return list(range(num_pairs))
    return sorted(random.Random(seed).sample(range(total), num_pairs))


def _requested_languages(pivot: str, languages: str | Sequence[str] | None, table: _Table | None) -> list[str]:
    pivot_code = _normalize(pivot, "pivot")
    if languages is None:
        if table is None:
            raise ParallelDataError("languages=None (all) is not supported for this source: name the languages")
        wanted = [code for code in table.columns if code != pivot_code]
    else:
        items = [languages] if isinstance(languages, str) else list(languages)
        wanted = []
        for item in items:
            code = _normalize(item, "languages")
            if code != pivot_code and code not in wanted:
                wanted.append(code)
    if not wanted:
        raise ParallelDataError(f"no target languages besides the pivot {pivot_code} (languages={languages!r})")
    return [pivot_code, *wanted]


def _normalize(code: str, argument: str) -> str:
    try:
        return normalize_language(code)
    except LanguageCodeError as error:
        raise ParallelDataError(f"{argument}: {error}") from None


def _check_available(table: _Table, wanted: Iterable[str]) -> None:
    missing = [code for code in wanted if code not in table.columns]
    if missing:
        raise ParallelDataError(
            f"{table.origin}: no {', '.join(missing)} here; available languages: {', '.join(sorted(table.columns))}"
        )


def _warn_duplicates(table: _Table, positions: list[int], languages: Iterable[str]) -> None:
    """Identical sentences make retrieval ambiguous and weak alignment unattainable for those rows: say where."""
    for lang in languages:
        first_seen: dict[str, int] = {}
        clashes: list[str] = []
        for i in positions:
            text = table.columns[lang][i]
            if text in first_seen:
                clashes.append(f"{table.location(lang, first_seen[text])} and {table.location(lang, i)}")
            else:
                first_seen[text] = i
        if clashes:
            shown = "; ".join(clashes[:5]) + (f"; and {len(clashes) - 5} more" if len(clashes) > 5 else "")
            warnings.warn(f"duplicate {lang} sentences: {shown}", ParallelDataWarning, stacklevel=4)


def _to_parallel_set(table: _Table, wanted: list[str], num_pairs: int | None, sample: str, seed: int) -> ParallelSet:
    _check_available(table, wanted)
    total = len(table.ids)
    if total < 2:
        raise ParallelDataError(f"{table.origin}: only {total} pair(s); alignment scores need at least 2")
    positions = _choose_positions(total, num_pairs, sample, seed, where=table.origin)
    _warn_duplicates(table, positions, wanted)
    return ParallelSet(
        languages=tuple(wanted),
        texts={code: tuple(table.columns[code][i] for i in positions) for code in wanted},
        ids=tuple(table.ids[i] for i in positions),
        origin=table.origin,
    )


# --------------------------------------------------------------------------------------------------------------
# Readers. Every file is read as UTF-8 (BOM tolerated) with universal newlines, so CRLF files (NTREX) work.


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ParallelDataError(f"file not found: {path}")
    return _split_lines(_decode_utf8(path.read_bytes(), path))


def _decode_utf8(raw: bytes, path: Path) -> str:
    """The file's text; a file in another encoding (Latin-1, Windows-1252) is reported at its first bad line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # error.object is what was decoded (without a BOM), so the offset counts lines in it.
        line = error.object[: error.start].count(b"\n") + 1
        raise ParallelDataError(
            f"{path}:{line}: not UTF-8 (byte 0x{error.object[error.start]:02x}); save the file as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}"
        ) from None


def _split_lines(text: str) -> list[str]:
    # Split on newlines only (str.splitlines would also split on U+2028 etc. inside sentences).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # A final newline, or blank lines at the very end, are not records.
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _sentence_file(path: Path) -> list[str]:
    """Non-empty, stripped lines of a one-sentence-per-line file; an empty line is an error at file:line."""
    lines = _read_lines(path)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ParallelDataError(f"{path}:{number}: empty line (every line must hold one sentence)")
    return [line.strip() for line in lines]


def _aligned_files(files: dict[str, Path], origin: str) -> _Table:
    columns: dict[str, list[str]] = {}
    for code, path in files.items():
        columns[code] = _sentence_file(path)
    counts = {code: len(sentences) for code, sentences in columns.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{files[code]} has {count} lines" for code, count in counts.items())
        raise ParallelDataError(f"files are not aligned: {detail}")
    total = next(iter(counts.values()))
    return _Table(
        origin=origin,
        ids=[str(i) for i in range(1, total + 1)],
        columns=columns,
        where={code: str(path) for code, path in files.items()},
        lines=list(range(1, total + 1)),
    )


def _is_language_code(cell: str) -> bool:
    try:
        normalize_language(cell)
    except LanguageCodeError:
        return False
    return True


def _parse_tsv(lines: list[str], name: str, columns: Sequence[str] | None, origin: str) -> _Table:
    if not lines:
        raise ParallelDataError(f"{name}: the file is empty")
    header = lines[0].split("\t")
    has_header = all(cell.strip().lower() == "id" or _is_language_code(cell.strip()) for cell in header)
    if has_header:
        names = [cell.strip() for cell in header]
        body_start = 2
        rows = lines[1:]
    else:
        if columns is None or len(columns) != len(header):
            raise ParallelDataError(
                f"{name}: the first line is not a header of language codes (e.g. 'eng_Latn<TAB>isl_Latn') and it has "
                f"{len(header)} columns, but {len(columns or ())} languages were given for them "
                f"({list(columns or ())}): add a header row, or name the languages in column order"
            )
        names = list(columns)
        body_start = 1
        rows = lines
    codes = [None if cell.lower() == "id" else _normalize(cell, f"{name}: header") for cell in names]
    if len(set(codes)) != len(codes):
        raise ParallelDataError(f"{name}:1: repeated column in header {names}")
    data: dict[str, list[str]] = {code: [] for code in codes if code is not None}
    ids: list[str] = []
    for offset, row in enumerate(rows):
        number = body_start + offset
        cells = row.split("\t")
        if not row.strip():
            raise ParallelDataError(f"{name}:{number}: empty line")
        if len(cells) != len(codes):
            raise ParallelDataError(f"{name}:{number}: {len(cells)} tab-separated fields, expected {len(codes)}")
        row_id = str(offset + 1)
        for code, cell in zip(codes, cells):
            if code is None:
                row_id = cell.strip()
                continue
            if not cell.strip():
                raise ParallelDataError(f"{name}:{number}: empty {code} sentence")
            data[code].append(cell.strip())
        ids.append(row_id)
    _check_unique_ids(ids, name)
    return _Table(
        origin=origin,
        ids=ids,
        columns=data,
        where={code: name for code in data},
        lines=list(range(body_start, body_start + len(rows))),
    )


def _parse_jsonl(lines: list[str], name: str, origin: str) -> _Table:
    records: list[tuple[int, dict]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ParallelDataError(f"{name}:{number}: empty line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ParallelDataError(f"{name}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ParallelDataError(f"{name}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    if not records:
        raise ParallelDataError(f"{name}: the file is empty")
    # Languages are the keys of the first record that are language codes ("id", "url", "domain"... are not).
    key_codes = {key: normalize_language(key) for key in records[0][1] if key != "id" and _is_language_code(key)}
    columns: dict[str, list[str]] = {code: [] for code in key_codes.values()}
    ids: list[str] = []
    for number, record in records:
        for key, code in key_codes.items():
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ParallelDataError(f"{name}:{number}: missing or empty {key!r} sentence")
            columns[code].append(value.strip())
        ids.append(str(record["id"]) if "id" in record else str(number))
    _check_unique_ids(ids, name)
    return _Table(
        origin=origin,
        ids=ids,
        columns=columns,
        where={code: name for code in columns},
        lines=[number for number, _ in records],
    )


def _check_unique_ids(ids: list[str], name: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise ParallelDataError(f"{name}: id {value!r} appears more than once (second time in record {i + 1})")
        seen.add(value)


# --------------------------------------------------------------------------------------------------------------
# Sources.


def _bundled_table(split: str, columns: Sequence[str] | None = None) -> _Table:
    from importlib import resources

    part = _BUNDLED_SPLITS.get(split)
    if part is None:
        raise ParallelDataError(f"the bundled sample has splits {sorted(_BUNDLED_SPLITS)}, not {split!r}")
    filename = _BUNDLED_FILES[part]
    resource = resources.files("neuronxa_callback").joinpath("data", "packaged", filename)
    name = f"neuronxa_callback/data/packaged/{filename}"
    if not resource.is_file():
        raise ParallelDataError(f"bundled file missing from the installed package: {name}")
    lines = _split_lines(resource.read_text(encoding="utf-8-sig"))
    origin = BUNDLED_ORIGIN if part == "eval" else f"bundled sample, {part} split (neuronxa_callback, CC BY 4.0)"
    if filename.endswith(".tsv"):
        return _parse_tsv(lines, name, columns, origin)
    return _parse_jsonl(lines, name, origin)


def _is_packaged_ntrex(spec: object) -> bool:
    return isinstance(spec, str) and spec.strip().lower() in NTREX_SPEC_NAMES


def _is_one_table(spec: object) -> bool:
    """Sources that hold all their languages in one table (files, the packaged sets) rather than a file per language."""
    if isinstance(spec, str) and (spec.strip().lower() == "bundled" or _is_packaged_ntrex(spec)):
        return True
    return str(spec).lower().endswith((".tsv", ".jsonl"))


def _packaged_ntrex_table(split: str) -> _Table:
    """The packaged NTREX-128 subset: keys are NTREX-128 file codes ("eng", "isl", "zho-CN"), ids the line numbers.

    Columns get FLORES-style codes through NTREX_CODES, as the directory loader names them; the regional variants
    (eng-GB, eng-IN, eng-US, fra-CA, por-BR, spa-MX) and the second Spanish reference are in the file (the subset is
    complete) but have no FLORES-style code, so, as with a directory, they are not loaded.
    """
    part = _BUNDLED_SPLITS.get(split)
    if part is None:
        raise ParallelDataError(f"the packaged NTREX-128 subset has splits {sorted(_BUNDLED_SPLITS)}, not {split!r}")
    filename, span = _NTREX_PACKAGED_FILES[part]
    name = f"neuronxa_callback/data/packaged/ntrex128/{filename}"
    ids, columns = _packaged_ntrex_columns(filename)
    origin = NTREX_PACKAGED_ORIGIN.replace("(packaged subset", f"{span} (packaged subset")
    return _Table(
        origin=origin,
        ids=list(ids),
        columns={code: list(texts) for code, texts in columns.items()},
        where={code: name for code in columns},
        lines=list(range(1, len(ids) + 1)),
    )


@functools.lru_cache(maxsize=4)
def _packaged_ntrex_columns(filename: str) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(ids, {FLORES-style code: sentences}) of one packaged file; read once per process (1.2 MB of gzip for eval)."""
    import gzip
    from importlib import resources

    resource = resources.files("neuronxa_callback").joinpath("data", "packaged", "ntrex128", filename)
    if not resource.is_file():
        raise ParallelDataError(
            f"packaged NTREX-128 file missing from the installed package: "
            f"neuronxa_callback/data/packaged/ntrex128/{filename}"
        )
    columns: dict[str, list[str]] = {}
    ids: list[str] = []
    for line in _split_lines(gzip.decompress(resource.read_bytes()).decode("utf-8")):
        record = json.loads(line)
        ids.append(str(record["id"]))
        for key, text in record.items():
            code = "eng_Latn" if key == "eng" else NTREX_CODES.get(key)
            if code is not None:
                columns.setdefault(code, []).append(text)
    return tuple(ids), {code: tuple(texts) for code, texts in columns.items()}


def _file_table(path: Path, columns: Sequence[str] | None) -> _Table:
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".jsonl"):
        raise ParallelDataError(
            f"{path}: unsupported file type {suffix!r}; use .tsv or .jsonl, or load_file_pair() for two text files"
        )
    lines = _read_lines(path)
    if suffix == ".tsv":
        return _parse_tsv(lines, str(path), columns, origin=str(path))
    return _parse_jsonl(lines, str(path), origin=str(path))


def _flores200_split_dir(path: Path, split: str) -> Path | None:
    for base in (path, path / "flores200_dataset"):
        if (base / split).is_dir():
            return base / split
    return None


def _is_flores200_dir(path: Path) -> bool:
    return any(_flores200_split_dir(path, split) is not None for split in _FLORES_SPLITS)


def _flores200_table(path: Path, wanted: list[str], split: str) -> _Table:
    if split not in _FLORES_SPLITS:
        raise ParallelDataError(f"FLORES-200 split must be one of {_FLORES_SPLITS}, got {split!r}")
    split_dir = _flores200_split_dir(path, split)
    if split_dir is None:
        raise ParallelDataError(f"{path}: no {split}/ folder (expected flores200_dataset/{split}/xxx_Yyyy.{split})")
    available: dict[str, Path] = {}
    for file in sorted(split_dir.glob(f"*.{split}")):
        try:
            available[normalize_language(file.stem)] = file
        except LanguageCodeError:
            continue
    origin = f"FLORES-200 {split} ({path})"
    missing = [code for code in wanted if code not in available]
    if missing:
        raise ParallelDataError(
            f"{origin}: no {', '.join(missing)} file; available languages: {', '.join(sorted(available))}"
        )
    table = _aligned_files({code: available[code] for code in wanted}, origin)
    return table


def _ntrex_files_dir(path: Path) -> Path | None:
    for base in (path / "NTREX-128", path):
        if (base / _NTREX_SOURCE).is_file():
            return base
    return None


def _ntrex_table(path: Path, wanted: list[str]) -> _Table:
    files_dir = _ntrex_files_dir(path)
    if files_dir is None:
        raise ParallelDataError(f"{path}: not an NTREX-128 directory (no {_NTREX_SOURCE})")
    available: dict[str, Path] = {"eng_Latn": files_dir / _NTREX_SOURCE}
    for ntrex_code, flores_code in NTREX_CODES.items():
        file = files_dir / f"newstest2019-ref.{ntrex_code}.txt"
        if file.is_file():
            available[flores_code] = file
    origin = f"NTREX-128 ({path})"
    missing = [code for code in wanted if code not in available]
    if missing:
        raise ParallelDataError(
            f"{origin}: no {', '.join(missing)} file; available languages: {', '.join(sorted(available))}"
        )
    return _aligned_files({code: available[code] for code in wanted}, origin)


def _hub_error(config: str, split: str, error: Exception, token: str | None) -> ParallelDataError:
    detail = f"{type(error).__name__}: {error}"
    for secret in filter(None, (token, os.environ.get("HF_TOKEN"))):
        detail = detail.replace(secret, "***")  # never echo a token
    return ParallelDataError(
        f"could not load FLORES+ ({FLORES_PLUS_DATASET}, language {config}, split {split}) from the Hugging Face "
        f"hub: {detail}\n"
        f"FLORES+ is gated. To use it: (1) accept its licence on https://huggingface.co/datasets/{FLORES_PLUS_DATASET} "
        f"while logged in; (2) run `huggingface-cli login` (or `hf auth login`), or pass --hf-token / token=..., or "
        f"set HF_TOKEN; (3) make sure the hub is reachable (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset).\n"
        f"Or use local data instead: a FLORES-200 directory (flores200_dataset/), an NTREX-128 directory, a TSV or "
        f"JSONL file, or the bundled sample (spec 'bundled')."
    )


def _hub_unreachable(timeout: float = 5.0) -> Exception | None:
    """A quick connect test, so that an unreachable hub fails in seconds rather than after minutes of retries.

    Skipped in offline mode, where ``datasets`` answers from its cache (or fails) without the network.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return ConnectionError(
            f"cannot connect to {host}:{port} ({error}); if FLORES+ is already in your Hugging Face cache, "
            f"set HF_HUB_OFFLINE=1 to use it"
        )
    return None


def _flores_plus_table(wanted: list[str], split: str, token: str | None) -> _Table:
    if split not in _FLORES_SPLITS:
        raise ParallelDataError(f"FLORES+ split must be one of {_FLORES_SPLITS}, got {split!r}")
    unreachable = _hub_unreachable()
    if unreachable is not None:
        raise _hub_error(wanted[0], split, unreachable, token)
    import datasets  # lazy: heavy, and only this source needs it

    columns: dict[str, list[str]] = {}
    id_lists: dict[str, list[str]] = {}
    for code in wanted:
        rows = None
        errors: list[Exception] = []
        for config in dict.fromkeys((code, FLORES_PLUS_ALIASES.get(code, code))):
            try:
                rows = datasets.load_dataset(FLORES_PLUS_DATASET, config, split=split, token=token)
                break
            except Exception as error:  # datasets raises many types (ConnectionError, gated, missing config)
                errors.append(error)
        if rows is None:
            raise _hub_error(code, split, errors[0], token) from None
        text_column = "text" if "text" in rows.column_names else "sentence"
        columns[code] = [str(text).strip() for text in rows[text_column]]
        id_lists[code] = (
            [str(i) for i in rows["id"]] if "id" in rows.column_names else [str(i) for i in range(1, len(rows) + 1)]
        )
    origin = f"FLORES+ {split} (hub)"
    reference = id_lists[wanted[0]]
    for code in wanted[1:]:
        if id_lists[code] != reference:
            # Align by id when the rows come in different orders.
            by_id = dict(zip(id_lists[code], columns[code]))
            missing = [i for i in reference if i not in by_id]
            if missing:
                raise ParallelDataError(f"{origin}: {code} lacks ids {missing[:5]} that {wanted[0]} has")
            columns[code] = [by_id[i] for i in reference]
    for code in wanted:
        for i, text in enumerate(columns[code]):
            if not text:
                raise ParallelDataError(f"{origin}: empty {code} sentence (id {reference[i]})")
    return _Table(origin=origin, ids=list(reference), columns=columns, where={code: origin for code in wanted})


def _load_table(
    spec: str | os.PathLike, wanted: list[str] | None, split: str, token: str | None, columns: Sequence[str] | None
) -> _Table:
    """The source named by ``spec``; ``wanted`` (pivot first) picks the files for per-language sources."""
    if isinstance(spec, str) and spec.strip().lower() == "bundled":
        return _bundled_table(split, columns)
    if _is_packaged_ntrex(spec):
        return _packaged_ntrex_table(split)
    if isinstance(spec, str) and spec.strip().lower() in ("flores", "flores+", "flores_plus", "floresplus"):
        if wanted is None:
            raise ParallelDataError("FLORES+ from the hub needs explicit languages")
        return _flores_plus_table(wanted, split, token)
    path = Path(spec).expanduser()
    if path.is_dir():
        if _ntrex_files_dir(path) is not None:
            if wanted is None:
                raise ParallelDataError(f"{path}: NTREX-128 needs explicit languages")
            return _ntrex_table(path, wanted)
        if _is_flores200_dir(path):
            if wanted is None:
                raise ParallelDataError(f"{path}: FLORES-200 needs explicit languages")
            return _flores200_table(path, wanted, split)
        raise ParallelDataError(
            f"{path}: directory is neither FLORES-200 (flores200_dataset/{{dev,devtest}}/xxx_Yyyy.devtest) nor "
            f"NTREX-128 (NTREX-128/{_NTREX_SOURCE} + newstest2019-ref.<code>.txt)"
        )
    if not path.exists():
        raise ParallelDataError(
            f"file not found: {path} (spec must be 'ntrex', 'bundled', 'flores+', a FLORES-200 or NTREX-128 directory, "
            f"or a .tsv/.jsonl file)"
        )
    return _file_table(path, columns)


# --------------------------------------------------------------------------------------------------------------
# Public loaders.


def load_parallel(
    spec: str | os.PathLike = "ntrex",
    *,
    pivot: str = "eng_Latn",
    languages: str | Sequence[str] | None = ("isl_Latn",),
    num_pairs: int | None = 100,
    sample: str = "first",
    seed: int = 0,
    split: str = "devtest",
    token: str | None = None,
) -> ParallelSet:
    """``load_parallel("ntrex", languages=("isl_Latn",), num_pairs=100)`` -> ParallelSet (pivot first).

    ``num_pairs=None`` takes every pair; ``sample="random"`` draws a ``seed``-ed sample kept in source order.
    ``split``: "dev"/"devtest" for FLORES; for the packaged sets ("ntrex", "bundled") "devtest" (= eval), "fewshot"
    or "train".
    ``languages=None`` takes every language of a file or the bundled sample. ``token`` is only passed to the hub.
    """
    # Files and the bundled sample hold all their languages in one table; directories and the hub have a file
    # (or config) per language, so they are told which ones to read.
    one_table = _is_one_table(spec)
    wanted = None if one_table else _requested_languages(pivot, languages, None)
    # For a TSV without a header row, pivot + languages name its columns in order.
    no_header_columns = _requested_languages(pivot, languages, None) if one_table and languages is not None else None
    table = _load_table(spec, wanted, split, token, no_header_columns)
    if wanted is None:
        wanted = _requested_languages(pivot, languages, table)
    return _to_parallel_set(table, wanted, num_pairs, sample, seed)


def load_file_pair(
    source_file: str | os.PathLike,
    target_file: str | os.PathLike,
    source_lang: str,
    target_lang: str,
    *,
    num_pairs: int | None = None,
    sample: str = "first",
    seed: int = 0,
) -> ParallelSet:
    """``load_file_pair("en.txt", "is.txt", "eng_Latn", "isl_Latn")``: two line-aligned files, one sentence a line."""
    wanted = _requested_languages(source_lang, [target_lang], None)
    source, target = Path(source_file), Path(target_file)
    table = _aligned_files({wanted[0]: source, wanted[1]: target}, origin=f"{source} + {target}")
    return _to_parallel_set(table, wanted, num_pairs, sample, seed)


def load_training_pairs(
    spec: str | os.PathLike = "bundled",
    source_lang: str = "eng_Latn",
    target_lang: str = "isl_Latn",
    start: int | None = None,
    stop: int | None = None,
    *,
    split: str | None = None,
) -> list[tuple[str, str]]:
    """``load_training_pairs("bundled")`` -> [(english, icelandic), ...] for fine-tuning recipes.

    ``spec``: "bundled" (the bundled training TSV), "ntrex" (the packaged NTREX-128 English-Icelandic lines
    106-1997), a .tsv/.jsonl file, an NTREX-128 or FLORES-200 directory.
    ``start``/``stop``: 1-based, inclusive positions in the source's sequence of pairs (line numbers for NTREX, the
    packaged subset included, data rows for TSV), e.g. ``start=106, stop=1997`` to train on NTREX lines that neither
    the lines 1-100 eval set nor the 101-105 few-shot pool use.
    ``split``: for the packaged sets default "train"; for a FLORES-200 directory default "dev".
    """
    wanted = _requested_languages(source_lang, [target_lang], None)
    is_bundled = (isinstance(spec, str) and spec.strip().lower() == "bundled") or _is_packaged_ntrex(spec)
    if isinstance(spec, str) and spec.strip().lower() in ("flores", "flores+", "flores_plus", "floresplus"):
        raise ParallelDataError("FLORES+ is an evaluation benchmark: do not train on it")
    if split is None:
        split = "train" if is_bundled else "dev"
    table = _load_table(spec, wanted, split, None, wanted)
    _check_available(table, wanted)
    # The packaged NTREX-128 split starts at line 106: its positions are its ids (the NTREX-128 line numbers).
    offset = int(table.ids[0]) - 1 if _is_packaged_ntrex(spec) and table.ids else 0
    low, high = 1 + offset, len(table.ids) + offset
    first = low if start is None else start
    last = high if stop is None else stop
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ParallelDataError(f"{name} must be an int or None, got {value!r}")
    if not low <= first <= last <= high:
        raise ParallelDataError(
            f"{table.origin}: start={start}, stop={stop} do not select a range within {low}..{high} (inclusive)"
        )
    source, target = table.columns[wanted[0]], table.columns[wanted[1]]
    return [(source[i], target[i]) for i in range(first - 1 - offset, last - offset)]
