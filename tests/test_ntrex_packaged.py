"""The NTREX-128 subset shipped in neuronxa_callback/data/packaged/ntrex128/: complete, aligned, licensed, equal to the release."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import pytest

from neuronxa_callback.data.languages import NTREX_CODES
from neuronxa_callback.data.loaders import (
    NTREX_PACKAGED_ORIGIN,
    ParallelDataError,
    load_parallel,
    load_training_pairs,
)

FILES = {
    "ntrex128_eval.jsonl.gz": (1, 100),
    "ntrex128_fewshot.jsonl.gz": (101, 105),
    "ntrex128_train_eng-isl.jsonl.gz": (106, 1997),
}


def _package_dir():
    return resources.files("neuronxa_callback").joinpath("data", "packaged", "ntrex128")


def _records(name: str) -> list[dict]:
    text = gzip.decompress(_package_dir().joinpath(name).read_bytes()).decode("utf-8")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_language_is_line_aligned_with_line_number_ids(name):
    records = _records(name)
    first, last = FILES[name]
    assert [r["id"] for r in records] == [str(n) for n in range(first, last + 1)]
    keys = set(records[0])
    for record in records:
        assert set(record) == keys, f"record {record['id']} has other languages than the first"
        for key, text in record.items():
            assert isinstance(text, str) and text.strip() == text and text, f"{name} id {record['id']} {key}"
    languages = keys - {"id", "document"}
    if name == "ntrex128_train_eng-isl.jsonl.gz":
        assert languages == {"eng", "isl"}
    else:
        # The English source and all 128 references (127 languages + the second Spanish reference).
        assert len(languages) == 129 and "eng" in languages and "spa-2" in languages
        assert set(NTREX_CODES) <= languages


def test_licence_and_attribution_sit_next_to_the_files():
    folder = _package_dir()
    licence = folder.joinpath("LICENSE.md").read_text(encoding="utf-8")
    assert licence.startswith("Attribution-ShareAlike 4.0 International")
    readme = folder.joinpath("README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme and "Federmann" in readme and "Apache-2.0" in readme
    for name in FILES:
        assert name in readme


def test_loader_labels_ntrex_never_flores_and_keeps_line_ids():
    data = load_parallel("ntrex", languages=("isl", "deu_Latn", "zho-CN"), num_pairs=100)
    assert data.languages == ("eng_Latn", "isl_Latn", "deu_Latn", "zho_Hans")
    assert data.ids == tuple(str(n) for n in range(1, 101))
    assert data.origin.startswith("NTREX-128 lines 1-100") and "CC BY-SA 4.0" in data.origin
    assert "FLORES" not in data.origin.upper()
    assert NTREX_PACKAGED_ORIGIN.startswith("NTREX-128")
    assert load_parallel("NTREX-128", languages="isl", num_pairs=5).ids == ("1", "2", "3", "4", "5")
    fewshot = load_parallel("ntrex", split="fewshot", languages=("ita",), num_pairs=None)
    assert fewshot.ids == ("101", "102", "103", "104", "105") and "lines 101-105" in fewshot.origin


def test_ntrex_is_the_default_evaluation_set():
    assert load_parallel(languages=("isl",), num_pairs=10).origin.startswith("NTREX-128")
    # The written-for-the-project sample stays available under its own name.
    assert load_parallel("bundled", languages=("isl",), num_pairs=10).origin.startswith("bundled sample")


def test_missing_language_error_lists_what_exists():
    with pytest.raises(ParallelDataError) as info:
        load_parallel("ntrex", languages=("epo_Latn",))
    message = str(info.value)
    assert "no epo_Latn" in message and "available languages:" in message
    assert "isl_Latn" in message and "zho_Hant" in message and "NTREX-128" in message
    # The training split holds only English and Icelandic, and says so.
    with pytest.raises(ParallelDataError, match="available languages: eng_Latn, isl_Latn"):
        load_training_pairs("ntrex", "eng_Latn", "deu_Latn")


def test_training_pairs_are_lines_106_to_1997_addressed_by_line_number():
    pairs = load_training_pairs("ntrex", "eng_Latn", "isl_Latn")
    assert len(pairs) == 1997 - 105
    records = _records("ntrex128_train_eng-isl.jsonl.gz")
    assert pairs[0] == (records[0]["eng"], records[0]["isl"])
    window = load_training_pairs("ntrex", "eng_Latn", "isl_Latn", start=200, stop=202)
    assert window == [(r["eng"], r["isl"]) for r in records if r["id"] in ("200", "201", "202")]
    with pytest.raises(ParallelDataError, match="106..1997"):
        load_training_pairs("ntrex", "eng_Latn", "isl_Latn", start=101, stop=1997)
    # No training line is an evaluation or few-shot line.
    held_out = {r["eng"] for name in ("ntrex128_eval.jsonl.gz", "ntrex128_fewshot.jsonl.gz") for r in _records(name)}
    assert not held_out & {english for english, _ in pairs}


def test_packaged_lines_equal_the_release(ntrex_dir):
    """Byte-equal (after the directory loader's stripping) to ../shared/data/ntrex128, every file and line."""
    release = ntrex_dir / "NTREX-128"

    def lines(path):
        text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
        return [line.strip() for line in text.split("\n")]

    files = {"eng": release / "newstest2019-src.eng.txt", "spa-2": release / "newstest2019-ref-2.spa.txt"}
    for path in release.glob("newstest2019-ref.*.txt"):
        files[path.name[len("newstest2019-ref.") : -len(".txt")]] = path
    documents = lines(ntrex_dir / "DOCUMENT_IDS.tsv")
    for name in FILES:
        records = _records(name)
        for key in set(records[0]) - {"id", "document"}:
            source = lines(files[key])
            assert [r[key] for r in records] == [source[int(r["id"]) - 1] for r in records], f"{name}: {key}"
        assert [r["document"] for r in records] == [documents[int(r["id"]) - 1] for r in records]
    # And the loader gives the same ParallelSet as the directory, origin aside.
    packaged = load_parallel("ntrex", languages=("isl", "jpn", "srp_Latn"), num_pairs=100)
    directory = load_parallel(ntrex_dir, languages=("isl", "jpn", "srp_Latn"), num_pairs=100)
    assert packaged.texts == directory.texts and packaged.ids == directory.ids
