"""Checks on the bundled multilingual sample (neuronxa_callback/data/packaged/*.jsonl, CC BY 4.0).

The sample is hand-written content, so these tests guard its shape and catch the slips a translator or an editor
makes: a broken line, a missing or empty language, a duplicated sentence, a number changed in translation, a
Chinese line left in English, an Icelandic line typed without its letters, a truncated or doubled translation.
Pure file reading: no model, no tokenizer, well under a second.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib.resources import files

import pytest

LANGUAGES = ("eng_Latn", "isl_Latn", "deu_Latn", "fra_Latn", "spa_Latn", "zho_Hans")
TRANSLATIONS = LANGUAGES[1:]
EXPECTED_KEYS = {"id", *LANGUAGES}
DATA_DIR = files("neuronxa_callback").joinpath("data", "packaged")

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
ICELANDIC_LETTERS = re.compile(r"[þðæöÞÐÆÖ]")
DIGIT_RUNS = re.compile(r"\d+")

# Character-length ratio translation / English. Latin-script translations of a sentence are rarely under a
# third or over three times its length; Chinese packs a word into one or two characters, hence its own bounds.
LATIN_RATIO = (0.3, 3.0)
CHINESE_RATIO = (0.1, 1.0)


def _read_jsonl(name: str) -> list[dict]:
    rows = []
    text = DATA_DIR.joinpath(name).read_text(encoding="utf-8")
    for line_number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            pytest.fail(f"{name}:{line_number}: not valid JSON ({error})")
        if not isinstance(row, dict):
            pytest.fail(f"{name}:{line_number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def eval_rows() -> list[dict]:
    return _read_jsonl("bundled_eval.jsonl")


@pytest.fixture(scope="module")
def fewshot_rows() -> list[dict]:
    return _read_jsonl("bundled_fewshot.jsonl")


@pytest.fixture(scope="module", params=["eval", "fewshot"])
def named_rows(request, eval_rows, fewshot_rows) -> tuple[str, list[dict]]:
    return request.param, {"eval": eval_rows, "fewshot": fewshot_rows}[request.param]


def test_sizes(eval_rows, fewshot_rows):
    assert len(eval_rows) >= 100
    assert len(fewshot_rows) >= 8


def test_every_row_has_all_languages_non_empty_and_single_line(named_rows):
    name, rows = named_rows
    for row in rows:
        assert set(row) == EXPECTED_KEYS, f"{name} {row.get('id')}: keys {sorted(row)}"
        for language in LANGUAGES:
            text = row[language]
            assert isinstance(text, str) and text.strip(), f"{name} {row['id']} {language}: empty"
            assert text == text.strip(), f"{name} {row['id']} {language}: leading/trailing whitespace"
            assert "\n" not in text and "\t" not in text and "\r" not in text, f"{name} {row['id']} {language}"


def test_ids_are_unique_and_well_formed(eval_rows, fewshot_rows):
    eval_ids = [row["id"] for row in eval_rows]
    fewshot_ids = [row["id"] for row in fewshot_rows]
    assert all(re.fullmatch(r"b\d{4}", i) for i in eval_ids), eval_ids
    assert all(re.fullmatch(r"f\d{4}", i) for i in fewshot_ids), fewshot_ids
    duplicated = [i for i, n in Counter(eval_ids + fewshot_ids).items() if n > 1]
    assert not duplicated, f"duplicate ids: {duplicated}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_duplicate_sentences_within_a_language(eval_rows, fewshot_rows, language):
    sentences = [row[language] for row in eval_rows + fewshot_rows]
    duplicated = [s for s, n in Counter(sentences).items() if n > 1]
    assert not duplicated, f"{language}: duplicated {duplicated}"


def test_eval_and_fewshot_english_are_disjoint(eval_rows, fewshot_rows):
    # Case- and space-insensitive, so a near-copy used as a prompt example cannot leak into the evaluation.
    def normalise(text: str) -> str:
        return " ".join(text.lower().split())

    overlap = {normalise(r["eng_Latn"]) for r in eval_rows} & {normalise(r["eng_Latn"]) for r in fewshot_rows}
    assert not overlap, overlap


def test_english_sentence_lengths(eval_rows, fewshot_rows):
    for rows, (low, high) in ((eval_rows, (10, 35)), (fewshot_rows, (8, 18))):
        for row in rows:
            words = len(row["eng_Latn"].split())
            assert low <= words <= high, f"{row['id']}: {words} English words, expected {low}-{high}"


def test_translations_differ_from_english(named_rows):
    name, rows = named_rows
    for row in rows:
        for language in TRANSLATIONS:
            assert row[language] != row["eng_Latn"], f"{name} {row['id']} {language}: copy of the English"


def test_chinese_is_mostly_cjk(named_rows):
    name, rows = named_rows
    for row in rows:
        text = row["zho_Hans"]
        cjk_share = len(CJK.findall(text)) / len(text)
        assert cjk_share >= 0.5, f"{name} {row['id']}: only {cjk_share:.0%} CJK characters: {text}"


def test_icelandic_uses_icelandic_letters(eval_rows, fewshot_rows):
    rows = eval_rows + fewshot_rows
    with_letters = sum(bool(ICELANDIC_LETTERS.search(row["isl_Latn"])) for row in rows)
    # Nearly every Icelandic sentence of this length has þ, ð, æ or ö; a low share means ASCII-folded text.
    assert with_letters / len(rows) >= 0.6, f"only {with_letters}/{len(rows)} Icelandic lines contain þ/ð/æ/ö"
    all_icelandic = "".join(row["isl_Latn"] for row in rows)
    assert "þ" in all_icelandic and "ð" in all_icelandic


@pytest.mark.parametrize("language", TRANSLATIONS)
def test_length_ratio_to_english_is_plausible(eval_rows, fewshot_rows, language):
    low, high = CHINESE_RATIO if language == "zho_Hans" else LATIN_RATIO
    for row in eval_rows + fewshot_rows:
        ratio = len(row[language]) / len(row["eng_Latn"])
        assert low <= ratio <= high, f"{row['id']} {language}: length ratio {ratio:.2f} outside {low}-{high}"


@pytest.mark.parametrize("language", TRANSLATIONS)
def test_numbers_written_as_digits_match_english(eval_rows, fewshot_rows, language):
    # Years and measurements written as digits must survive translation unchanged (6.1 -> 6,1 is fine).
    for row in eval_rows + fewshot_rows:
        expected = sorted(DIGIT_RUNS.findall(row["eng_Latn"]))
        assert sorted(DIGIT_RUNS.findall(row[language])) == expected, f"{row['id']} {language}"


def test_sample_is_disjoint_from_bundled_training_pairs(eval_rows, fewshot_rows):
    """The English-Icelandic training TSV (another file's content) must not contain evaluation sentences."""
    train_file = DATA_DIR.joinpath("bundled_train_en_is.tsv")
    if not train_file.is_file():
        pytest.skip("bundled_train_en_is.tsv not written yet")
    lines = train_file.read_text(encoding="utf-8").splitlines()
    train_english = {line.split("\t")[0].strip() for line in lines[1:] if line.strip()}
    train_icelandic = {line.split("\t")[1].strip() for line in lines[1:] if "\t" in line}
    sample = eval_rows + fewshot_rows
    assert not train_english & {row["eng_Latn"] for row in sample}
    assert not train_icelandic & {row["isl_Latn"] for row in sample}
