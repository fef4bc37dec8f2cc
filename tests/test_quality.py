"""chrF++ / BLEU scorers against sacrebleu itself, QualityScore, make_scorers and input checks (no COMET here)."""

from __future__ import annotations

import json

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

from neuronxa_callback.quality.metrics import (
    BLEUScorer,
    ChrFScorer,
    CometKiwiScorer,
    CometScorer,
    QualityScore,
    make_scorers,
)

SOURCES = ["Der Hund bellt.", "Es regnet heute.", "Ich habe Hunger.", "Das Haus ist alt und groß."]
HYPOTHESES = ["The dog barks.", "It rains today.", "I have hunger.", "The house is old and big."]
REFERENCES = ["The dog is barking.", "It is raining today.", "I am hungry.", "The house is old and large."]


def test_chrf_equals_sacrebleu_chrf_plus_plus():
    result = ChrFScorer().score(SOURCES, HYPOTHESES, REFERENCES)
    metric = CHRF(word_order=2)
    assert result.name == "chrF++"
    assert result.system == pytest.approx(metric.corpus_score(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
    expected = [metric.sentence_score(h, [r]).score for h, r in zip(HYPOTHESES, REFERENCES)]
    assert result.segments == pytest.approx(expected, abs=1e-9)
    assert result.signature == str(metric.get_signature())
    assert "nw:2" in result.signature and f"version:{sacrebleu.__version__}" in result.signature


def test_bleu_equals_sacrebleu():
    result = BLEUScorer().score(SOURCES, HYPOTHESES, REFERENCES)
    assert result.name == "BLEU"
    metric = BLEU()
    assert result.system == pytest.approx(metric.corpus_score(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
    sentence = BLEU(effective_order=True)
    expected = [sentence.sentence_score(h, [r]).score for h, r in zip(HYPOTHESES, REFERENCES)]
    assert result.segments == pytest.approx(expected, abs=1e-9)
    assert result.signature == str(metric.get_signature())


def test_perfect_hypotheses_score_100():
    assert ChrFScorer().score(SOURCES, REFERENCES, REFERENCES).system == pytest.approx(100.0)
    assert BLEUScorer().score(SOURCES, REFERENCES, REFERENCES).system == pytest.approx(100.0)


def test_quality_score_to_dict_is_json_serialisable():
    score = QualityScore("chrF++", 42.5, [40.0, 45.0], "nrefs:1|case:mixed")
    data = json.loads(json.dumps(score.to_dict()))
    assert data == {"name": "chrF++", "system": 42.5, "segments": [40.0, 45.0], "signature": "nrefs:1|case:mixed"}
    assert QualityScore("BLEU", 1.0).to_dict()["segments"] is None


def test_make_scorers_order_names_and_reference_needs():
    scorers = make_scorers(["chrF++", "BLEU", "comet", "CometKiwi"], comet_model="/x/c", cometkiwi_model="/x/k")
    assert [type(s) for s in scorers] == [ChrFScorer, BLEUScorer, CometScorer, CometKiwiScorer]
    assert [s.needs_references for s in scorers] == [True, True, True, False]
    assert scorers[2].model_name == "/x/c" and scorers[3].model_name == "/x/k"
    # Constructing COMET scorers loads nothing (lazy): model names default to the released models.
    default = make_scorers("comet")[0]
    assert default.model_name == "Unbabel/wmt22-comet-da" and default._model is None
    assert make_scorers(["cometkiwi"])[0].model_name == "Unbabel/wmt22-cometkiwi-da"
    with pytest.raises(ValueError, match="unknown scorer 'meteor'"):
        make_scorers(["meteor"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(references=None), "needs references"),
        (dict(references=REFERENCES[:2]), "references has 2 items but hypotheses has 4"),
        (dict(hypotheses=[]), "hypotheses is empty"),
        (dict(hypotheses="one string"), "not one string"),
        (dict(hypotheses=["ok", None, "a", "b"]), r"hypotheses\[1\] is NoneType"),
    ],
)
def test_bad_input_raises_value_error(kwargs, message):
    arguments = dict(sources=SOURCES, hypotheses=HYPOTHESES, references=REFERENCES)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ChrFScorer().score(**arguments)


def test_comet_scorer_argument_checks():
    with pytest.raises(ValueError, match="batch_size"):
        CometScorer("/x", batch_size=0)
    with pytest.raises(ValueError, match="device"):
        CometScorer("/x", device="tpu")
