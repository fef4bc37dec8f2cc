"""The few-shot pool: drawn from the bundled fewshot split, never from the scored sentences."""

from __future__ import annotations

import pytest

from neuronxa_callback.data.loaders import load_parallel
from neuronxa_callback.quality.fewshot import load_fewshot_examples


def test_examples_come_from_the_fewshot_split_in_order():
    pool = load_parallel("bundled", split="fewshot", languages=("isl_Latn",), num_pairs=None)
    examples = load_fewshot_examples("isl", "eng_Latn", k=3)
    assert examples == list(zip(pool.sentences("isl_Latn"), pool.sentences("eng_Latn")))[:3]


def test_excluded_sentences_are_skipped_and_k_bounds_the_count():
    first, second, third = load_fewshot_examples("eng_Latn", "deu_Latn", k=3)
    assert (
        load_fewshot_examples("eng_Latn", "deu_Latn", k=2, exclude=[first[0], second[1]])
        == [third] + load_fewshot_examples("eng_Latn", "deu_Latn", k=4)[3:4]
    )
    assert load_fewshot_examples("eng_Latn", "deu_Latn", k=0) == []
    with pytest.raises(ValueError, match="k must be"):
        load_fewshot_examples("eng_Latn", "deu_Latn", k=-1)


def test_a_language_outside_the_pool_names_the_ones_it_has():
    with pytest.raises(ValueError, match="jpn_Jpan.*isl_Latn"):
        load_fewshot_examples("eng_Latn", "jpn_Jpan")
