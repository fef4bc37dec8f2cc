"""The offline test helpers themselves: the tiny tokenizer is trained once per session, not once per call."""

from __future__ import annotations

from neuronxa_callback.testing import tiny as _tiny


def test_the_tiny_tokenizer_is_trained_once_and_reused():
    # Training the BPE takes a noticeable part of a second; every test builds tokenizers, so it must be cached.
    first = _tiny._tokenizer_json()
    assert _tiny._tokenizer_json() is first
    one, two = _tiny.tiny_tokenizer(), _tiny.tiny_tokenizer("right")
    assert one is not two and one.padding_side == "left" and two.padding_side == "right"  # separate mutable objects
    assert one("Halló heimur")["input_ids"] == two("Halló heimur")["input_ids"]


def test_corpus_dataset_is_a_plain_class_built_per_call():
    tokenizer = _tiny.tiny_tokenizer()
    once, twice = _tiny.CorpusDataset(tokenizer, 1), _tiny.CorpusDataset(tokenizer)
    assert isinstance(once, _tiny.CorpusDataset) and isinstance(twice, _tiny.CorpusDataset)
    assert len(twice) == 2 * len(once) == 2 * len(_tiny.corpus_sentences())
