"""Tests for neuronxa_callback.data.loaders and .languages: every loader, every input error, sampling, bundled files."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import warnings
from pathlib import Path

import pytest

from neuronxa_callback.data.languages import FLORES200_CODES, NTREX_CODES, LanguageCodeError, language_name
from neuronxa_callback.data.loaders import (
    BUNDLED_ORIGIN,
    ParallelDataError,
    ParallelDataWarning,
    ParallelSet,
    load_file_pair,
    load_parallel,
    load_training_pairs,
    normalize_language,
)

BUNDLED_LANGUAGES = ("isl_Latn", "deu_Latn", "fra_Latn", "spa_Latn", "zho_Hans")

EN = [f"English sentence number {i} about a different topic." for i in range(1, 11)]
IS = [f"Íslensk setning númer {i} um annað efni." for i in range(1, 11)]
DE = [f"Deutscher Satz Nummer {i} über ein anderes Thema." for i in range(1, 11)]


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


def make_set(n: int = 10) -> ParallelSet:
    return ParallelSet(
        ("eng_Latn", "isl_Latn"),
        {"eng_Latn": tuple(EN[:n]), "isl_Latn": tuple(IS[:n])},
        ids=tuple(str(i) for i in range(1, n + 1)),
        origin="test",
    )


# ---------------------------------------------------------------------------------------------- language codes


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("isl_Latn", "isl_Latn"),
        ("isl", "isl_Latn"),
        ("is", "isl_Latn"),
        ("ISL_latn", "isl_Latn"),
        ("isl-Latn", "isl_Latn"),
        ("zho-CN", "zho_Hans"),
        ("zho-TW", "zho_Hant"),
        ("zho", "zho_Hans"),
        ("aze-Latn", "azj_Latn"),
        ("fas", "pes_Arab"),
        ("deu", "deu_Latn"),
        ("en", "eng_Latn"),
        ("tir", "tir_Ethi"),
        ("xyz_Abcd", "xyz_Abcd"),
        (" spa ", "spa_Latn"),
    ],
)
def test_normalize_language(code, expected):
    assert normalize_language(code) == expected


@pytest.mark.parametrize("code", ["qqq", "english", "", "x", "is_Latin"])
def test_unknown_language_code_is_a_value_error(code):
    with pytest.raises(LanguageCodeError, match="unknown language code|non-empty") as info:
        normalize_language(code)
    assert isinstance(info.value, ValueError)


def test_language_tables_are_consistent():
    assert len(FLORES200_CODES) == len(set(FLORES200_CODES)) == 204
    # Every ISO 639-3 part of FLORES-200 resolves to one of its own codes.
    for code in FLORES200_CODES:
        assert normalize_language(code.split("_")[0]) in FLORES200_CODES
    assert all(normalize_language(ntrex) == flores for ntrex, flores in NTREX_CODES.items())
    assert language_name("isl") == "Icelandic" and language_name("zho_Hans") == "Chinese (Simplified)"


# ---------------------------------------------------------------------------------------------- ParallelSet


def test_parallel_set_basics_and_round_trip():
    data = make_set()
    assert data.pivot == "eng_Latn" and data.targets == ("isl_Latn",) and len(data) == 10
    assert data.pair_name("isl") == "eng_Latn-isl_Latn"
    assert data.sentences("is") == IS
    assert ParallelSet.from_dict(json.loads(json.dumps(data.to_dict()))) == data
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.origin = "changed"
    with pytest.raises(ParallelDataError, match="deu_Latn is not a target"):
        data.pair_name("deu_Latn")


def test_parallel_set_rejects_misaligned_texts():
    with pytest.raises(ParallelDataError, match="isl_Latn has 2 sentences but there are 3 ids"):
        ParallelSet(("eng", "isl"), {"eng": ("a", "b", "c"), "isl": ("x", "y")}, ids=("1", "2", "3"), origin="t")


def test_subset_first_and_random_are_deterministic():
    data = make_set()
    assert data.subset(3).ids == ("1", "2", "3")
    first = data.subset(5, sample="random", seed=1)
    assert first == data.subset(5, sample="random", seed=1)
    assert first.ids != data.subset(5, sample="random", seed=2).ids
    # Kept in source order, and texts stay aligned with their ids.
    assert [int(i) for i in first.ids] == sorted(int(i) for i in first.ids)
    assert first.sentences("isl_Latn") == [IS[int(i) - 1] for i in first.ids]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_pairs": 11}, "has only 10 pairs but num_pairs=11"),
        ({"num_pairs": 1}, "at least 2 pairs"),
        ({"num_pairs": 3, "sample": "shuffle"}, "sample must be one of"),
        ({"num_pairs": 2.5}, "must be an int"),
    ],
)
def test_subset_rejects_bad_requests(kwargs, message):
    with pytest.raises(ParallelDataError, match=message):
        make_set().subset(**kwargs)


# ---------------------------------------------------------------------------------------------- two text files


def test_load_file_pair_reads_crlf_and_bom(tmp_path):
    source = tmp_path / "en.txt"
    source.write_bytes(("\ufeff" + "\r\n".join(EN) + "\r\n").encode("utf-8"))
    target = write(tmp_path / "is.txt", IS, newline="\r\n")
    data = load_file_pair(source, target, "eng", "isl")
    assert data.languages == ("eng_Latn", "isl_Latn")
    assert data.sentences("eng_Latn") == EN and data.sentences("isl_Latn") == IS
    assert data.ids == tuple(str(i) for i in range(1, 11))
    assert str(source) in data.origin and str(target) in data.origin and "FLORES" not in data.origin


def test_load_file_pair_unequal_lengths_names_both_files_and_counts(tmp_path):
    source, target = write(tmp_path / "en.txt", EN), write(tmp_path / "is.txt", IS[:9])
    with pytest.raises(ParallelDataError) as info:
        load_file_pair(source, target, "eng_Latn", "isl_Latn")
    message = str(info.value)
    assert f"{source} has 10 lines" in message and f"{target} has 9 lines" in message


def test_load_file_pair_empty_line_names_file_and_line(tmp_path):
    lines = IS.copy()
    lines[3] = "   "
    source, target = write(tmp_path / "en.txt", EN), write(tmp_path / "is.txt", lines)
    with pytest.raises(ParallelDataError, match=re.escape(f"{target}:4: empty line")):
        load_file_pair(source, target, "eng_Latn", "isl_Latn")


def test_load_file_pair_missing_file_and_too_few_pairs(tmp_path):
    source = write(tmp_path / "en.txt", EN[:1])
    with pytest.raises(ParallelDataError, match=r"file not found: .*nope\.txt"):
        load_file_pair(source, tmp_path / "nope.txt", "eng_Latn", "isl_Latn")
    target = write(tmp_path / "is.txt", IS[:1])
    with pytest.raises(ParallelDataError, match="only 1 pair"):
        load_file_pair(source, target, "eng_Latn", "isl_Latn")


def test_duplicate_sentences_warn_with_file_and_lines(tmp_path):
    lines = IS.copy()
    lines[6] = lines[1]
    source, target = write(tmp_path / "en.txt", EN), write(tmp_path / "is.txt", lines)
    with pytest.warns(ParallelDataWarning, match=re.escape(f"duplicate isl_Latn sentences: {target}:2 and {target}:7")):
        data = load_file_pair(source, target, "eng_Latn", "isl_Latn")
    assert len(data) == 10
    # Outside the chosen pairs a duplicate does not matter, so it is not reported.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_file_pair(source, target, "eng_Latn", "isl_Latn", num_pairs=5)


# ---------------------------------------------------------------------------------------------- TSV and JSONL


def test_tsv_with_header_and_id_column(tmp_path):
    path = write(
        tmp_path / "set.tsv",
        ["id\teng\tisl_Latn\tdeu_Latn"] + [f"s{i}\t{e}\t{s}\t{d}" for i, (e, s, d) in enumerate(zip(EN, IS, DE))],
    )
    data = load_parallel(path, languages=("deu", "isl"), num_pairs=4)
    assert data.languages == ("eng_Latn", "deu_Latn", "isl_Latn")
    assert data.ids == ("s0", "s1", "s2", "s3") and data.sentences("deu_Latn") == DE[:4]
    assert data.origin == str(path)
    assert load_parallel(path, languages=None, num_pairs=None).targets == ("isl_Latn", "deu_Latn")


def test_tsv_without_header_uses_pivot_and_languages_as_columns(tmp_path):
    path = write(tmp_path / "set.tsv", [f"{e}\t{s}" for e, s in zip(EN, IS)])
    data = load_parallel(path, languages=("isl_Latn",), num_pairs=None)
    assert data.sentences("isl_Latn") == IS and data.ids[0] == "1"
    with pytest.raises(ParallelDataError, match=r"not a header of language codes .* 2 columns, but 3 languages"):
        load_parallel(path, languages=("isl_Latn", "deu_Latn"), num_pairs=None)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("only one field", r"set\.tsv:4: 1 tab-separated fields, expected 2"),
        ("English here\t ", r"set\.tsv:4: empty isl_Latn sentence"),
        ("", r"set\.tsv:4: empty line"),
    ],
)
def test_tsv_bad_rows_name_file_and_line(tmp_path, row, message):
    rows = [f"{e}\t{s}" for e, s in zip(EN, IS)]
    rows[2] = row
    path = write(tmp_path / "set.tsv", ["eng_Latn\tisl_Latn", *rows])
    with pytest.raises(ParallelDataError, match=message):
        load_parallel(path, num_pairs=None)


def test_unknown_language_lists_the_languages_of_the_source(tmp_path):
    path = write(tmp_path / "set.tsv", ["eng_Latn\tisl_Latn", *[f"{e}\t{s}" for e, s in zip(EN, IS)]])
    with pytest.raises(ParallelDataError, match=r"no fra_Latn here; available languages: eng_Latn, isl_Latn"):
        load_parallel(path, languages=("fra",))
    with pytest.raises(ParallelDataError, match="languages: unknown language code 'klingon'"):
        load_parallel(path, languages=("klingon",))


def test_jsonl_with_ids_and_extra_keys(tmp_path):
    records = [{"id": f"r{i}", "eng_Latn": e, "isl": s, "domain": "news"} for i, (e, s) in enumerate(zip(EN, IS))]
    path = write(tmp_path / "set.jsonl", [json.dumps(r, ensure_ascii=False) for r in records])
    data = load_parallel(path, languages="isl_Latn", num_pairs=3, sample="random", seed=5)
    assert set(data.ids) <= {r["id"] for r in records}
    assert data.sentences("isl_Latn") == [r["isl"] for r in records if r["id"] in data.ids]
    no_ids = write(tmp_path / "no_ids.jsonl", [json.dumps({"eng": e, "isl": s}) for e, s in zip(EN, IS)])
    assert load_parallel(no_ids, num_pairs=2).ids == ("1", "2")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"eng_Latn": "x", "isl_Latn": ', r"set\.jsonl:3: not valid JSON"),
        ('{"eng_Latn": "x"}', r"set\.jsonl:3: missing or empty 'isl_Latn' sentence"),
        ('["eng_Latn", "isl_Latn"]', r"set\.jsonl:3: expected a JSON object"),
        ("", r"set\.jsonl:3: empty line"),
    ],
)
def test_jsonl_bad_lines_name_file_and_line(tmp_path, line, message):
    lines = [json.dumps({"eng_Latn": e, "isl_Latn": s}) for e, s in zip(EN, IS)]
    lines[2] = line
    path = write(tmp_path / "set.jsonl", lines)
    with pytest.raises(ParallelDataError, match=message):
        load_parallel(path, num_pairs=None)


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(ParallelDataError, match=r"file not found: .*missing\.tsv"):
        load_parallel(tmp_path / "missing.tsv")
    odd = write(tmp_path / "set.csv", ["a,b"])
    with pytest.raises(ParallelDataError, match=r"unsupported file type '\.csv'"):
        load_parallel(odd)
    with pytest.raises(ParallelDataError, match="neither FLORES-200 .* nor NTREX-128"):
        load_parallel(tmp_path)


# ---------------------------------------------------------------------------------------------- FLORES-200 dir


@pytest.fixture
def flores200_root(tmp_path) -> Path:
    """A miniature FLORES-200 release: flores200_dataset/{dev,devtest}/xxx_Yyyy.<split>."""
    root = tmp_path / "flores200_dataset"
    for split, prefix in (("dev", "dev"), ("devtest", "devtest")):
        (root / split).mkdir(parents=True)
        for code, texts in (("eng_Latn", EN), ("isl_Latn", IS), ("deu_Latn", DE)):
            write(root / split / f"{code}.{split}", [f"{prefix}: {t}" for t in texts])
    return root


def test_flores200_directory_or_its_parent(flores200_root):
    data = load_parallel(flores200_root, languages=("isl", "deu"), num_pairs=4)
    assert data.origin == f"FLORES-200 devtest ({flores200_root})"
    assert data.sentences("isl_Latn") == [f"devtest: {t}" for t in IS[:4]] and data.ids == ("1", "2", "3", "4")
    dev = load_parallel(flores200_root.parent, languages=("isl",), num_pairs=None, split="dev")
    assert dev.origin.startswith("FLORES-200 dev (") and dev.sentences("eng_Latn")[0] == f"dev: {EN[0]}"


def test_flores200_missing_language_and_bad_split(flores200_root):
    with pytest.raises(ParallelDataError, match="no fra_Latn file; available languages: deu_Latn, eng_Latn, isl_Latn"):
        load_parallel(flores200_root, languages=("fra",))
    with pytest.raises(ParallelDataError, match="split must be one of"):
        load_parallel(flores200_root, split="test")


def test_flores200_unequal_files(flores200_root):
    short = flores200_root / "devtest" / "deu_Latn.devtest"
    write(short, DE[:7])
    with pytest.raises(ParallelDataError, match=re.escape(f"{short} has 7 lines")):
        load_parallel(flores200_root, languages=("deu",))


# ---------------------------------------------------------------------------------------------- NTREX-128


def test_ntrex_maps_flores_codes_to_file_codes(ntrex_dir):
    data = load_parallel(ntrex_dir, languages=("isl_Latn", "zho_Hans", "deu"), num_pairs=100)
    assert data.origin == f"NTREX-128 ({ntrex_dir})" and len(data) == 100
    assert data.ids[0] == "1" and data.ids[-1] == "100"
    files = ntrex_dir / "NTREX-128"
    expected = (files / "newstest2019-ref.zho-CN.txt").read_text(encoding="utf-8").splitlines()[0].strip()
    assert data.sentences("zho_Hans")[0] == expected
    assert not any("\r" in s for lang in data.languages for s in data.sentences(lang))
    # The NTREX-128 folder itself is accepted too.
    assert load_parallel(files, languages=("isl",), num_pairs=2).sentences("isl_Latn") == data.sentences("isl")[:2]


def test_ntrex_unknown_language_lists_available(ntrex_dir):
    with pytest.raises(ParallelDataError, match=r"no kab_Latn file; available languages: .*isl_Latn.*zho_Hans"):
        load_parallel(ntrex_dir, languages=("kab_Latn",))


def test_training_pairs_from_ntrex_line_range(ntrex_dir):
    pairs = load_training_pairs(ntrex_dir, "isl_Latn", "eng_Latn", start=101, stop=1997)
    assert len(pairs) == 1897
    files = ntrex_dir / "NTREX-128"
    english = (files / "newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines()
    icelandic = (files / "newstest2019-ref.isl.txt").read_text(encoding="utf-8").splitlines()
    assert pairs[0] == (icelandic[100].strip(), english[100].strip())
    assert pairs[-1] == (icelandic[1996].strip(), english[1996].strip())
    with pytest.raises(ParallelDataError, match=r"start=0, stop=10 do not select a range within 1\.\.1997"):
        load_training_pairs(ntrex_dir, start=0, stop=10)


# ---------------------------------------------------------------------------------------------- FLORES+ (hub)


def test_flores_plus_offline_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_from_env")
    started = time.monotonic()
    with pytest.raises(ParallelDataError) as info:
        load_parallel("flores+", languages=("isl",), token="hf_secret_passed_in")
    assert time.monotonic() - started < 30
    message = str(info.value)
    for needle in (
        "openlanguagedata/flores_plus",
        "accept its licence",
        "huggingface-cli login",
        "--hf-token",
        "FLORES-200 directory",
        "NTREX-128",
        "TSV",
    ):
        assert needle in message
    assert "hf_secret" not in message


# ---------------------------------------------------------------------------------------------- bundled sample


def test_bundled_eval_and_fewshot_load_cleanly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicate-sentence warnings either
        data = load_parallel("bundled", languages=BUNDLED_LANGUAGES, num_pairs=None)
        fewshot = load_parallel("bundled", languages=BUNDLED_LANGUAGES, num_pairs=None, split="fewshot")
    assert data.origin == BUNDLED_ORIGIN and "FLORES" not in data.origin
    assert len(data) >= 100 and len(fewshot) >= 2
    for lang in BUNDLED_LANGUAGES:
        assert len(data.sentences(lang)) >= 100
        assert all(s.strip() for s in data.sentences(lang) + fewshot.sentences(lang))
    for part in (data, fewshot):
        for lang in part.languages:
            assert len(set(part.sentences(lang))) == len(part), f"duplicate {lang} sentence in {part.origin}"
    # The default evaluation set is the packaged NTREX-128 subset; the bundled sample keeps its name.
    default = load_parallel()
    assert default.languages == ("eng_Latn", "isl_Latn") and len(default) == 100
    assert default.origin.startswith("NTREX-128") and default.ids == tuple(str(n) for n in range(1, 101))


def test_bundled_training_pairs_are_distinct_from_eval_and_fewshot():
    pairs = load_training_pairs()
    assert len(pairs) >= 320
    english = [e for e, _ in pairs]
    icelandic = [i for _, i in pairs]
    assert len(set(english)) == len(english) and len(set(icelandic)) == len(icelandic)
    assert all(e and i and "\t" not in e + i for e, i in pairs)
    assert all(ch in "".join(icelandic) for ch in "þðæöáéíóúýÞÆÍÓÚ")
    evaluation = set(load_parallel("bundled", num_pairs=None).sentences("eng_Latn"))
    fewshot = set(load_parallel("bundled", num_pairs=None, split="fewshot").sentences("eng_Latn"))
    assert not evaluation & fewshot
    assert not set(english) & (evaluation | fewshot)
    # Reversed direction and a range.
    assert load_training_pairs("bundled", "isl", "eng", start=2, stop=3) == [(i, e) for e, i in pairs[1:3]]


def test_training_pairs_from_a_tsv_file(tmp_path):
    path = write(tmp_path / "train.tsv", ["isl_Latn\teng_Latn", *[f"{s}\t{e}" for e, s in zip(EN, IS)]])
    assert load_training_pairs(path, "eng_Latn", "isl_Latn", stop=3) == list(zip(EN[:3], IS[:3]))
    with pytest.raises(ParallelDataError, match="do not train on it"):
        load_training_pairs("flores+")


def test_flores_plus_gated_error_hides_the_token(monkeypatch):
    import datasets

    def refuse(path, name, split, token=None):
        raise PermissionError(f"401 Client Error: access to {path} is restricted (token {token})")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(ParallelDataError) as info:
        load_parallel("flores", languages=("isl",), token="hf_abcdef123456")
    message = str(info.value)
    assert "PermissionError: 401" in message and "token ***" in message and "hf_abcdef123456" not in message
    assert "accept its licence" in message


def test_flores_plus_rows_are_aligned_by_id_and_renamed_configs_are_tried(monkeypatch):
    """The hub's rows (stand-in Dataset objects built locally) become a ParallelSet aligned on FLORES ids."""
    import datasets

    calls = []
    tables = {
        "eng_Latn": {"id": [1, 2, 3, 4], "text": EN[:4]},
        "cmn_Hans": {"id": [3, 1, 4, 2], "text": ["三", "一", "四", "二"]},  # FLORES+ name of zho_Hans, shuffled
    }

    def fake_load_dataset(path, name, split, token=None):
        calls.append((path, name, split))
        if name not in tables:
            raise ValueError(f"BuilderConfig '{name}' not found")
        return datasets.Dataset.from_dict(tables[name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_parallel("flores+", languages=("zho_Hans",), num_pairs=3, split="dev")
    assert data.origin == "FLORES+ dev (hub)" and data.ids == ("1", "2", "3")
    assert data.sentences("zho_Hans") == ["一", "二", "三"] and data.sentences("eng_Latn") == EN[:3]
    assert ("openlanguagedata/flores_plus", "zho_Hans", "dev") in calls
    assert ("openlanguagedata/flores_plus", "cmn_Hans", "dev") in calls
