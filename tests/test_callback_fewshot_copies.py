"""The callback's quality step: examples from the scored pairs' own source, copies scored as empty, a
control pair measured for alignment only (quality_languages)."""

from __future__ import annotations

import pytest

from neuronxa_callback.data.loaders import load_parallel
from neuronxa_callback.measure import quality_step
from neuronxa_callback.quality.metrics import make_scorers
from neuronxa_callback.settings import CallbackSettings, SettingsError


def _setup(**overrides):
    kwargs = dict(
        data="ntrex",
        languages=["isl_Latn", "deu_Latn"],
        num_pairs=10,
        quality_every=1,
        quality_num_pairs=4,
        quality_languages=["isl"],
        num_fewshot=2,
    )
    kwargs.update(overrides)
    settings = CallbackSettings.from_kwargs(**kwargs)
    data = load_parallel(settings.data, languages=settings.languages, num_pairs=settings.num_pairs)
    return settings, data


def test_control_pair_is_not_translated_and_examples_are_the_next_unscored_lines():
    settings, data = _setup()
    assert quality_step.directions(data, settings) == [("isl_Latn", "eng_Latn")]
    examples = list(quality_step.fewshot_examples(data, settings)[("isl_Latn", "eng_Latn")].pairs)
    full = load_parallel("ntrex", languages=("isl",), num_pairs=100)
    assert examples == list(zip(full.sentences("isl_Latn"), full.sentences("eng_Latn")))[10:12]  # lines 11, 12
    all_settings, all_data = _setup(quality_languages=None)
    assert len(quality_step.directions(all_data, all_settings)) == 2
    with pytest.raises(SettingsError, match="quality_languages"):
        CallbackSettings.from_kwargs(languages=["isl"], quality_languages=["deu"])


def test_copied_examples_are_scored_as_empty_and_reported():
    settings, data = _setup()
    chosen = quality_step.fewshot_examples(data, settings)
    examples = list(chosen[("isl_Latn", "eng_Latn")].pairs)
    references = data.sentences("eng_Latn")[:4]
    hypotheses = [examples[0][1], references[1], examples[1][1].upper(), "The council met on Tuesday."]
    scorers = [("chrf", make_scorers(["chrf"])[0])]
    quality = quality_step.score_quality({("isl_Latn", "eng_Latn"): hypotheses}, data, scorers, settings, chosen)
    entry = quality["eng_Latn-isl_Latn"]
    assert entry["copies"] == 2 and entry["copy_rate"] == 0.5 and entry["copied_ids"] == ["1", "3"]
    assert entry["copy_policy"] == "scored as empty"
    assert entry["fewshot"]["ids"] == ["11", "12"] and entry["fewshot"]["origin"].startswith("NTREX-128")
    masked = ["", references[1], "", "The council met on Tuesday."]
    assert entry["chrf"] == pytest.approx(scorers[0][1].score(None, masked, references).system)
    assert entry["translations"][0]["hypothesis"] == examples[0][1]  # the raw answer is kept, flagged
    assert entry["translations"][0]["copy_of"] == "example 1 target" and "copy_of" not in entry["translations"][1]


def test_both_directions_sum_their_copies():
    settings, data = _setup(direction="both")
    examples = quality_step.fewshot_examples(data, settings)
    x2en, en2x = examples[("isl_Latn", "eng_Latn")].pairs, examples[("eng_Latn", "isl_Latn")].pairs
    translations = {
        ("isl_Latn", "eng_Latn"): [x2en[0][1], "a", "b", "c"],
        ("eng_Latn", "isl_Latn"): [en2x[1][1], en2x[0][0], "d", "e"],
    }
    scorers = [("chrf", make_scorers(["chrf"])[0])]
    entry = quality_step.score_quality(translations, data, scorers, settings, examples)["eng_Latn-isl_Latn"]
    assert entry["direction"] == "both" and entry["copies"] == 3 and entry["copy_rate"] == pytest.approx(3 / 8)
    assert isinstance(entry["chrf"], float)


def test_report_lists_the_copies_next_to_the_quality_trend(tmp_path):
    import json

    from neuronxa_callback.offline.report import write_report

    pair = "eng_Latn-isl_Latn"
    path = tmp_path / "neuronxa" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    with open(path, "w", encoding="utf-8") as handle:
        for step, layers, chrf, copies in (
            (0, [0.05, 0.1], 18.0, 0),
            (10, [0.06, 0.12], 12.0, 25),
            (20, [0.1, 0.2], 14.0, 13),
        ):
            record = {
                "schema": 1,
                "event": "measurement",
                "step": step,
                "trigger": "step",
                "pairs": {
                    pair: {"num_layers": 2, "nasca": layers, "nasca_mean": sum(layers) / 2, "nasca_pvalue": 0.01}
                },
                "quality": {pair: {"chrf": chrf, "copies": copies, "copy_rate": copies / 40}},
                "data": {"origin": "NTREX-128", "ids": [str(i) for i in range(100)]},
            }
            handle.write(json.dumps(record) + "\n")
    summary = write_report(tmp_path)["summary"].read_text(encoding="utf-8")
    assert (
        "Copies of a prompt example (scored as empty): step 0: 0 (0 %); step 10: 25 (62 %); step 20: 13 (32 %)."
        in summary
    )
