"""NeuronXACallback without a Trainer: settings validation, ExportableState round trip, distributed helpers."""

from __future__ import annotations

import json

import pytest
import torch

from neuronxa_callback.hosts.trainer import NeuronXACallback
from neuronxa_callback.measure.record import eval_metrics as _eval_metrics
from neuronxa_callback.parallel.collectives import gather_encoded, merge_encoded, rank_and_world
from neuronxa_callback.settings import CallbackSettings, SettingsError
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer


@pytest.mark.parametrize(
    "argument, value",
    [
        ("languages", []),
        ("languages", ["isl_Latn", "isl_Latn"]),
        ("languages", ["eng_Latn"]),  # the pivot itself
        ("num_pairs", 1),
        ("num_pairs", "100"),
        ("sample", "last"),
        ("eval_steps", -1),
        ("eval_steps", True),
        ("representations", ("nas", "neurons")),
        ("pooling", "max"),
        ("batch_size", 0),
        ("quality_every", -2),
        ("direction", "x2x"),
        ("quality_metrics", ("chrf", "meteor")),
        ("early_stopping_patience", 0),
        ("early_stopping_min_delta", -0.1),
        ("early_stopping_metric", "mexa"),
        ("early_stopping_smoothing", "median"),
        ("early_stopping_factor", 0.0),
        ("early_stopping_pair", "isl_Latn"),
        ("report_to", "tensorboard"),
        ("output_subdir", "../elsewhere"),
        ("strict", "yes"),
        ("measure_on_evaluate", 1),
        ("quality_num_pairs", 1),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        NeuronXACallback(**{argument: value})


def test_settings_are_keyword_only_and_unknown_names_are_rejected():
    with pytest.raises(TypeError):
        NeuronXACallback("bundled")  # noqa - positional on purpose
    with pytest.raises(TypeError):
        NeuronXACallback(langauges="isl_Latn")
    with pytest.raises(SettingsError, match="unknown"):
        CallbackSettings.from_kwargs(langauges="isl_Latn")


def test_settings_normalise_comma_strings_and_none():
    settings = NeuronXACallback(
        languages="isl_Latn, deu_Latn", eval_steps=None, quality_every=None, report_to=["wandb"]
    ).settings
    assert settings.languages == ("isl_Latn", "deu_Latn")
    assert settings.eval_steps == 0 and settings.quality_every == 0 and settings.report_to == "wandb"
    assert CallbackSettings.from_kwargs(direction="both").pairs_direction == ("x2en", "en2x")


def test_state_is_json_and_rebuilds_the_callback_like_the_trainer_does():
    callback = NeuronXACallback(languages=["isl_Latn", "deu_Latn"], eval_steps=10, early_stopping_patience=2)
    per_layer = {"eng_Latn-isl_Latn": [0.1, 0.3]}
    for step, value in ((0, 0.2), (10, 0.25), (20, 0.22)):
        callback.history.append(
            step, {"eng_Latn-isl_Latn": value}, per_layer, {"eng_Latn-isl_Latn": {"chrf": value * 100}}
        )
        callback.plateau.update(step, value)
    callback.measurement_index, callback.last_measured_step = 3, 20

    state = json.loads(json.dumps(callback.state()))  # what trainer_state.json stores
    # transformers Trainer._load_callback_state: type(cb)(**args), then setattr for every attribute.
    restored = type(callback)(**state["args"])
    for name, value in state["attributes"].items():
        setattr(restored, name, value)
    assert restored.settings == callback.settings
    assert restored.history.steps == [0, 10, 20]
    assert restored.history.state() == callback.history.state()
    assert restored.plateau.state() == callback.plateau.state()
    assert restored.plateau.bad_measurements == 1 and restored.plateau.best_step == 10
    assert (restored.measurement_index, restored.last_measured_step) == (3, 20)
    assert restored.monitor.restored


def test_eval_metrics_are_means_over_pairs_of_the_layer_means():
    pairs = {
        "eng_Latn-isl_Latn": {"nasca_mean": 0.1, "navca_mean": 0.05},
        "eng_Latn-deu_Latn": {"nasca_mean": 0.5, "navca_mean": 0.35},
    }
    metrics = _eval_metrics(pairs)
    assert metrics["eval_neuronxa_nasca"] == pytest.approx(0.3)
    assert metrics["eval_neuronxa_navca"] == pytest.approx(0.2)
    assert metrics["eval_neuronxa_eng_Latn-deu_Latn_nasca"] == 0.5


def test_sharded_encodings_merge_to_the_single_process_result():
    from neuronxa_callback.instrument.activations import encode

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer)
    sentences = corpus_sentences()
    whole = encode(model, tokenizer, sentences, batch_size=4)
    world = 3
    shards = [encode(model, tokenizer, sentences, batch_size=4, shard=(rank, world)) for rank in range(world)]
    merged = merge_encoded(shards, len(sentences))
    assert merged.indices == list(range(len(sentences)))
    for name in whole.representations:
        assert torch.equal(merged.representations[name], whole.representations[name])
    with pytest.raises(ValueError, match="cover"):
        merge_encoded(shards[:2], len(sentences))
    # Without torch.distributed the collectives are pass-throughs.
    assert rank_and_world() == (0, 1)
    assert gather_encoded(whole, len(sentences)) is whole
