"""Copy detection: hypotheses that repeat a prompt example are flagged and scored as empty."""

from __future__ import annotations

import pytest

from neuronxa_callback.quality.copies import COPY_POLICY, find_copies, mask_copies
from neuronxa_callback.quality.metrics import make_scorers

EXAMPLES = [
    ("Safnið er lokað á mánudögum og helgidögum.", "The museum is closed on Mondays and public holidays."),
    ("Lestin fer klukkan sjö.", "The train leaves at seven o'clock."),
]


def test_exact_and_near_exact_copies_of_either_side_are_flagged():
    hypotheses = [
        "The museum is closed on Mondays and public holidays.",  # verbatim target
        "the museum is closed on mondays and public holidays",  # case and punctuation only
        "The museum is closed on Mondays and holidays.",  # one word dropped
        "Safnið er lokað á mánudögum og helgidögum.",  # the example's source
        "The train leaves at seven.",  # shares words, but a different sentence
        "The minister resigned on Tuesday after the vote.",  # a real answer
        "Yes.",  # too short to call a copy
    ]
    report = find_copies(hypotheses, EXAMPLES)
    assert report.flags == (True, True, True, True, False, False, False)
    assert report.matches[0] == "example 1 target" and report.matches[3] == "example 1 source"
    assert report.count == 4 and report.rate == pytest.approx(4 / 7)
    assert report.to_dict(ids=list("abcdefg")) == {
        "copies": 4,
        "copy_rate": pytest.approx(4 / 7),
        "copy_policy": COPY_POLICY,
        "copied_ids": ["a", "b", "c", "d"],
    }


def test_no_examples_means_no_copies_and_bad_input_is_refused():
    assert find_copies(["anything at all here"], []).flags == (False,)
    assert find_copies([], EXAMPLES).rate == 0.0
    with pytest.raises(ValueError, match="threshold"):
        find_copies(["x"], EXAMPLES, threshold=0)
    with pytest.raises(ValueError, match=r"examples\[0\]"):
        find_copies(["x"], ["not a pair"])


def test_masked_copies_earn_no_chrf_points():
    """A copy shares words with the reference: scored as itself it would earn points; masked it earns none."""
    references = ["The museum in the town is closed on Mondays.", "The minister resigned on Tuesday."]
    hypotheses = ["The museum is closed on Mondays and public holidays.", "The minister resigned on Tuesday."]
    masked, report = mask_copies(hypotheses, EXAMPLES)
    assert masked == ["", hypotheses[1]] and report.flags == (True, False)
    chrf = make_scorers(["chrf"])[0]
    raw = chrf.score(None, hypotheses, references)
    scored = chrf.score(None, masked, references)
    assert scored.segments[0] == 0.0 < raw.segments[0]
    assert scored.system < raw.system


def test_an_echo_of_the_source_sentence_is_a_copy_too():
    sources = ["Uggur er í sumum ráðsmönnum vegna tillögu.", "Ráðherrann sagði af sér."]
    hypotheses = ["Uggur er í sumum ráðsmönnum vegna tilögu.", "The minister resigned."]
    report = find_copies(hypotheses, EXAMPLES, sources=sources)
    assert report.flags == (True, False) and report.matches[0] == "source sentence"
    assert find_copies(hypotheses, EXAMPLES).flags == (False, False)  # without sources: examples only
    with pytest.raises(ValueError, match="sources has 1"):
        find_copies(hypotheses, EXAMPLES, sources=sources[:1])
