"""Language fidelity (quality/language_id.py): the identifier's accuracy on NTREX-128 (the figures in
docs/guide/language-fidelity.md and bench/bench_language_id.py), off-target detection on real sentences, languages it
does not know, a missing identifier, and off_target_rate in the record of a tiny-model measurement."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from neuronxa_callback.data.languages import LanguageCodeError, normalize_language
from neuronxa_callback.data.loaders import ParallelDataWarning, load_parallel
from neuronxa_callback.quality import language_id
from neuronxa_callback.quality.language_id import IDENTIFIER_LANGUAGES, identify_languages, knows

# The benchmark's languages: English and the 16 of the NeuronXA figures (docs/guide/language-fidelity.md).
LANGUAGES = (
    "eng_Latn spa_Latn por_Latn ita_Latn deu_Latn fra_Latn nld_Latn rus_Cyrl hin_Deva tur_Latn jpn_Jpan pol_Latn "
    "fin_Latn isl_Latn swh_Latn amh_Ethi yor_Latn"
).split()


def _accuracy(sentences: dict[str, list[str]]) -> tuple[dict[str, float], int]:
    """({language: share identified as itself}, number of sentences identified as another language)."""
    per_language, wrong = {}, 0
    for language, texts in sentences.items():
        report = identify_languages(texts, expected=language)
        # Every language here is known: every sentence with a letter in it is judged.
        assert report.judged == sum(any(c.isalpha() for c in text) for text in texts)
        per_language[language] = 1 - report.rate
        wrong += report.count
    return per_language, wrong


def test_accuracy_on_the_packaged_ntrex_lines():
    # Measured 2026-12-05 (py3langid 0.4.0): 1697 of 1700 identified correctly; of the 3 misses one is line 49 of
    # Spanish, a lone ",", which is not judged here (no letter). So 2 of 1699 judged are off target: eng, rus.
    data = load_parallel("ntrex", languages=LANGUAGES[1:], num_pairs=None)
    assert data.sentences("spa_Latn")[48] == ","
    per_language, wrong = _accuracy({language: list(data.sentences(language)) for language in LANGUAGES})
    assert wrong <= 2, per_language
    assert min(per_language.values()) >= 0.99, per_language


def test_accuracy_on_held_out_ntrex_lines(ntrex_dir):
    # Lines 201-400 of the release (not packaged): 3389 of 3400 identified correctly, 0.99 or more per language.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParallelDataWarning)  # NTREX repeats a few sentences: harmless here
        data = load_parallel(ntrex_dir, languages=LANGUAGES[1:], num_pairs=None)
    per_language, wrong = _accuracy({language: list(data.sentences(language)[200:400]) for language in LANGUAGES})
    assert wrong <= 11, per_language
    assert min(per_language.values()) >= 0.99, per_language


def test_a_german_answer_for_an_icelandic_target_is_off_target():
    data = load_parallel("ntrex", languages=("deu_Latn", "isl_Latn"), num_pairs=5)
    german, icelandic = list(data.sentences("deu_Latn")), list(data.sentences("isl_Latn"))
    report = identify_languages(icelandic[:3] + german[3:], expected="isl")
    assert report.expected == "isl_Latn"
    assert report.detected == ("isl_Latn",) * 3 + ("deu_Latn",) * 2
    assert report.off_target == (False, False, False, True, True)
    assert report.rate == pytest.approx(2 / 5)
    assert report.to_dict() == {
        "off_target": 2,
        "off_target_rate": pytest.approx(0.4),
        "language_judged": 5,
        "language_id": report.identifier,
    }
    assert report.identifier.startswith("py3langid ")


def test_empty_answers_and_answers_without_letters_are_not_judged():
    report = identify_languages(["", "   ", "12 345 !", "Safnið er lokað á mánudögum."], expected="isl_Latn")
    assert report.detected == (None, None, None, "isl_Latn")
    assert report.off_target == (None, None, None, False)
    assert report.judged == 1 and report.rate == 0.0
    assert identify_languages([], expected="isl_Latn").rate is None


def test_a_language_the_identifier_does_not_know_is_unknown_never_off_target(caplog):
    language_id._warn_unknown.cache_clear()
    assert not knows("bem_Latn") and knows("is") and knows("cmn_Hans")  # FLORES+ renamed zho_Hans: still known
    english = "The museum is closed on Mondays and on public holidays."
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback"):
        report = identify_languages([english, english], expected="bem_Latn")
        identify_languages([english], expected="bem_Latn")
    assert report.detected == ("eng_Latn", "eng_Latn")  # still said, for the record
    assert report.off_target == (None, None) and report.rate is None and not report.known
    fields = report.to_dict()
    assert fields["off_target"] is None and fields["off_target_rate"] is None and fields["language_judged"] is None
    assert "does not know bem_Latn" in fields["language_id"]
    warned = [r for r in caplog.records if "bem_Latn" in r.getMessage()]
    assert len(warned) == 1 and "unknown" in warned[0].getMessage()


def test_scripts_and_arabic_varieties_are_the_same_language():
    serbian_latin = "Muzej je zatvoren ponedeljkom i praznicima, a ulaz je besplatan za decu."
    report = identify_languages([serbian_latin], expected="srp_Latn")
    # The identifier may call Latin-script Serbian Croatian or Bosnian (closely related: a known limitation); when it
    # says Serbian, the script does not matter.
    assert report.detected[0] in ("srp_Cyrl", "hrv_Latn", "bos_Latn")
    assert report.off_target[0] is (report.detected[0] != "srp_Cyrl")
    assert language_id._language("ary_Arab") == language_id._language("arb_Arab")


def test_without_the_identifier_every_value_is_null_and_one_warning_names_the_install_line(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "py3langid", None)  # what an environment without py3langid looks like to import
    monkeypatch.setitem(sys.modules, "py3langid.langid", None)
    language_id._identifier.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="neuronxa_callback"):
            first = identify_languages(["Das Museum ist montags geschlossen."], expected="isl_Latn")
            identify_languages(["Das Museum ist montags geschlossen."], expected="isl_Latn")
    finally:
        language_id._identifier.cache_clear()
    assert first.detected == (None,) and first.off_target == (None,) and first.identifier is None
    assert first.to_dict() == {
        "off_target": None,
        "off_target_rate": None,
        "language_judged": None,
        "language_id": None,
    }
    warned = [r.getMessage() for r in caplog.records if "py3langid" in r.getMessage()]
    assert len(warned) == 1 and language_id.INSTALL_LINE in warned[0]


def test_bad_input_is_named():
    with pytest.raises(LanguageCodeError):
        identify_languages(["text"], expected="not a language")
    with pytest.raises(TypeError, match="one string"):
        identify_languages("Das Museum", expected="deu_Latn")
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        identify_languages(["Das Museum", None], expected="deu_Latn")


def test_the_code_table_covers_every_label_of_the_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    labels = set(LanguageIdentifier.from_model_file(MODEL_FILE).labels)
    assert set(IDENTIFIER_LANGUAGES) == labels
    for label, code in IDENTIFIER_LANGUAGES.items():
        if code is not None:  # FLORES-style, and the package's own normalisation agrees where it knows the label
            assert normalize_language(code) == code, label


def test_a_tiny_model_measurement_records_the_off_target_rate(tmp_path):
    from neuronxa_callback import AlignmentMonitor
    from neuronxa_callback.sinks.jsonl import read_jsonl
    from neuronxa_callback.sinks.names import headline_scalars
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer
    from tests._runs import FAST, PAIR

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    monitor = AlignmentMonitor(eval_steps=10, quality_every=1, direction="both", **{**FAST, "num_pairs": 4})
    monitor.begin(model, tokenizer, output_dir=tmp_path)
    assert monitor.measure(model, tokenizer, step=0, trigger="train_begin")
    monitor.end(model, tokenizer, step=0)
    (record,) = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    quality = record["quality"][PAIR]
    assert quality["direction"] == "both" and set(quality["directions"]) == {"isl_Latn->eng_Latn", "eng_Latn->isl_Latn"}
    judged = off = 0
    for direction, entry in quality["directions"].items():
        rows = entry["translations"]
        # The record's counts are those of its rows, and each row's language is the identifier's answer for it.
        again = identify_languages([row["hypothesis"] for row in rows], expected=direction.split("->")[1])
        assert [row["language"] for row in rows] == list(again.detected)
        assert entry["language_judged"] == again.judged and entry["off_target_rate"] == again.rate
        assert entry["off_target"] == sum(bool(row.get("off_target")) for row in rows) == again.count
        assert entry["language_id"].startswith("py3langid ")
        judged, off = judged + again.judged, off + again.count
    # Both directions: the counts add up, the rate is over both.
    assert quality["language_judged"] == judged and quality["off_target"] == off
    assert quality["off_target_rate"] == (off / judged if judged else None)
    if judged:
        assert headline_scalars(record)[f"{PAIR}/off_target_rate"] == pytest.approx(off / judged)


def test_neuronxa_translate_writes_and_prints_the_off_target_rate(model_dir, tmp_path, caplog):
    import json

    from neuronxa_callback.cli import main

    out = tmp_path / "translations.json"
    arguments = ["translate", "--model", str(model_dir), "--data", "bundled", "--num-pairs", "3"]
    arguments += ["--max-new-tokens", "4", "--num-fewshot", "1", "--metrics", "chrf", "--output", str(out)]
    with caplog.at_level(logging.INFO, logger="neuronxa"):  # the command's own logger
        assert main(arguments) == 0
    direction = json.loads(out.read_text(encoding="utf-8"))["directions"]["isl_Latn->eng_Latn"]
    again = identify_languages([row["hypothesis"] for row in direction["translations"]], expected="eng_Latn")
    assert [row["language"] for row in direction["translations"]] == list(again.detected)
    assert direction["off_target_rate"] == again.rate and direction["language_judged"] == again.judged
    expected = "-" if again.rate is None else f"{again.count} of {again.judged}"
    assert f"off-target (not in eng_Latn): {expected}" in caplog.text


def test_the_offline_report_lists_off_target_hypotheses(tmp_path):
    import json

    from neuronxa_callback.offline.report import write_report

    pair = "eng_Latn-isl_Latn"
    path = tmp_path / "neuronxa" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    with open(path, "w", encoding="utf-8") as handle:
        for step, off_target in ((0, 4), (10, 10), (20, None)):
            quality = {"chrf": 15.0, "off_target": off_target, "off_target_rate": None if off_target is None else 0.1}
            record = {
                "schema": 1,
                "event": "measurement",
                "step": step,
                "trigger": "step",
                "pairs": {pair: {"num_layers": 2, "nasca": [0.1, 0.2], "nasca_mean": 0.15, "nasca_pvalue": 0.01}},
                "quality": {pair: quality | ({"off_target_rate": off_target / 40} if off_target else {})},
                "data": {"origin": "NTREX-128", "ids": [str(i) for i in range(100)]},
            }
            handle.write(json.dumps(record) + "\n")
    summary = write_report(tmp_path)["summary"].read_text(encoding="utf-8")
    # A measurement without an identifier (null) is left out, not shown as 0.
    assert "Off-target hypotheses (another language than the target): step 0: 4 (10 %); step 10: 10 (25 %)." in summary
