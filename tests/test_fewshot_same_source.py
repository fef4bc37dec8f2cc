"""Few-shot examples come from the scored pairs' own source (never a scored line), the bundled pool otherwise."""

from __future__ import annotations

import pytest

from neuronxa_callback.data.loaders import load_parallel
from neuronxa_callback.quality.fewshot import FewShotError, select_fewshot_examples


def test_ntrex_directory_gives_the_lines_after_the_scored_ones(ntrex_dir):
    scored = load_parallel(ntrex_dir, languages=("ita",), num_pairs=100)
    chosen = select_fewshot_examples(ntrex_dir, "ita_Latn", "eng_Latn", k=3, scored=scored)
    full = load_parallel(ntrex_dir, languages=("ita",), num_pairs=None)
    assert chosen.ids == ("101", "102", "103")
    assert list(chosen.pairs) == list(zip(full.sentences("ita_Latn"), full.sentences("eng_Latn")))[100:103]
    assert chosen.origin.startswith("NTREX-128")


def test_packaged_ntrex_uses_unscored_lines_then_the_held_out_pool():
    all_scored = load_parallel("ntrex", languages=("jpn",), num_pairs=100)
    chosen = select_fewshot_examples("ntrex", "eng_Latn", "jpn_Jpan", k=3, scored=all_scored)
    assert chosen.ids == ("101", "102", "103") and "lines 101-105" in chosen.origin
    forty = load_parallel("ntrex", languages=("jpn",), num_pairs=40)
    assert select_fewshot_examples("ntrex", "jpn", "eng", k=2, scored=forty).ids == ("41", "42")
    # A random sample: never a scored id, never a scored sentence.
    sampled = load_parallel("ntrex", languages=("isl",), num_pairs=60, sample="random", seed=3)
    chosen = select_fewshot_examples("ntrex", "isl", "eng", k=5, scored=sampled)
    assert not set(chosen.ids) & set(sampled.ids)
    scored_texts = set(sampled.sentences("isl_Latn")) | set(sampled.sentences("eng_Latn"))
    assert not {text for pair in chosen.pairs for text in pair} & scored_texts


def test_every_packaged_language_can_be_prompted():
    for lang in load_parallel("ntrex", languages=None, num_pairs=2).targets:
        scored = load_parallel("ntrex", languages=(lang,), num_pairs=100)
        assert len(select_fewshot_examples("ntrex", lang, "eng_Latn", k=3, scored=scored).pairs) == 3


def test_long_files_use_their_unscored_rows_and_short_ones_fall_back_or_explain(tmp_path):
    rows = [f"English sentence number {i}.\tItalian sentence number {i}." for i in range(1, 9)]
    long_file = tmp_path / "long.tsv"
    long_file.write_text("eng_Latn\tita_Latn\n" + "\n".join(rows) + "\n", encoding="utf-8")
    scored = load_parallel(long_file, languages=("ita",), num_pairs=5)
    assert select_fewshot_examples(long_file, "ita", "eng", k=3, scored=scored).ids == ("6", "7", "8")
    # Every row scored, and Italian is not in the bundled pool: a clear error naming the ways out.
    everything = load_parallel(long_file, languages=("ita",), num_pairs=None)
    with pytest.raises(FewShotError, match="num_fewshot=0"):
        select_fewshot_examples(long_file, "ita", "eng", k=3, scored=everything)
    # Icelandic is in the bundled pool: a short file falls back to it.
    short = tmp_path / "short.tsv"
    short.write_text("eng_Latn\tisl_Latn\nOne.\tEinn.\nTwo.\tTveir.\n", encoding="utf-8")
    scored = load_parallel(short, languages=("isl",), num_pairs=None)
    chosen = select_fewshot_examples(short, "isl", "eng", k=3, scored=scored)
    assert chosen.origin.startswith("bundled sample") and len(chosen.pairs) == 3
    assert select_fewshot_examples(short, "isl", "eng", k=0, scored=scored).pairs == ()


def test_flores200_devtest_takes_examples_from_dev(tmp_path):
    for split, count in (("dev", 4), ("devtest", 6)):
        folder = tmp_path / "flores200_dataset" / split
        folder.mkdir(parents=True)
        for code, word in (("eng_Latn", "Sentence"), ("isl_Latn", "Setning")):
            lines = [f"{word} {split} {i}." for i in range(1, count + 1)]
            (folder / f"{code}.{split}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scored = load_parallel(tmp_path, languages=("isl",), num_pairs=6)
    chosen = select_fewshot_examples(tmp_path, "isl_Latn", "eng_Latn", k=3, scored=scored)
    assert chosen.pairs[0] == ("Setning dev 1.", "Sentence dev 1.") and "FLORES-200 dev" in chosen.origin
