"""A new user's first runs: bad settings fail where the callback is built, a run that cannot measure does not train
(unless strict=False says so), an earlier run's records are kept, and the console says what is happening."""

from __future__ import annotations

import json
import logging
import time

import pytest

from neuronxa_callback import NeuronXACallback
from neuronxa_callback.hosts.trainer import MeasurementError
from neuronxa_callback.settings import SettingsError
from neuronxa_callback.sinks.jsonl import read_jsonl
from tests._runs import FAST, PAIR, make_trainer, records_of


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(languages=["klingon"]), "klingon"),
        (dict(pivot="xx_Nope"), "pivot"),
        (dict(data="/no/such/file.tsv"), "/no/such/file.tsv"),
        (dict(quality_every=1, comet_model="./no/such/comet"), "comet_model"),
        (dict(early_stopping_patience=2, early_stopping_pair="eng_Latn-deu_Latn"), "early_stopping_pair"),
    ],
)
def test_settings_that_need_no_model_fail_at_construction(kwargs, named):
    start = time.perf_counter()
    with pytest.raises(SettingsError, match="NeuronXACallback") as raised:
        NeuronXACallback(**kwargs)
    assert named in str(raised.value)
    assert time.perf_counter() - start < 5


def test_a_data_file_with_an_unknown_language_fails_at_construction(tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("eng_Latn\tisl_Latn\n" + "".join(f"hello {i}\thalló {i}\n" for i in range(4)), encoding="utf-8")
    NeuronXACallback(data=str(data), num_pairs=4)  # the file itself is fine
    with pytest.raises(SettingsError, match="deu_Latn"):
        NeuronXACallback(data=str(data), languages=["deu_Latn"], num_pairs=4)


def _bert_without_supported_mlp():
    from transformers import BertConfig, BertLMHeadModel

    from neuronxa_callback.testing.tiny import tiny_tokenizer

    config = BertConfig(
        vocab_size=len(tiny_tokenizer()),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        is_decoder=True,
    )
    return BertLMHeadModel(config)


def test_a_callback_that_cannot_start_stops_the_run_before_it_trains(tmp_path):
    trainer = make_trainer(tmp_path, [NeuronXACallback(**FAST)], max_steps=3, model=_bert_without_supported_mlp())
    with pytest.raises(MeasurementError, match="strict=False"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_an_unwritable_output_stops_the_run_before_it_trains(tmp_path):
    (tmp_path / "neuronxa").write_text("a file where the callback's folder should be")
    trainer = make_trainer(tmp_path, [NeuronXACallback(**FAST)], max_steps=3)
    with pytest.raises(MeasurementError, match="neuronxa"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_strict_false_trains_without_measuring_and_says_so_at_the_end(tmp_path, caplog):
    callback = NeuronXACallback(strict=False, **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=2, model=_bert_without_supported_mlp())
    with caplog.at_level(logging.ERROR, logger="neuronxa_callback"):
        trainer.train()
    assert trainer.state.global_step == 2
    nothing = [m for m in caplog.messages if "measured NOTHING" in m]
    assert len(nothing) == 1 and "register_architecture" in nothing[0]
    summary = json.loads((tmp_path / "neuronxa" / "summary.json").read_text())
    assert summary["measured_nothing"] is True and summary["measured"] == 0
    assert "register_architecture" in summary["failures"][0]


def test_a_measured_run_writes_its_summary(tmp_path):
    make_trainer(tmp_path, [NeuronXACallback(eval_steps=2, **FAST)], max_steps=4).train()
    summary = json.loads((tmp_path / "neuronxa" / "summary.json").read_text())
    assert summary["measured"] == 3 and summary["steps"] == [0, 2, 4] and not summary["measured_nothing"]


def test_a_new_run_keeps_the_earlier_runs_records(tmp_path, caplog):
    make_trainer(tmp_path, [NeuronXACallback(eval_steps=1, **FAST)], max_steps=2).train()
    first = records_of(tmp_path)
    assert [r["step"] for r in first] == [0, 1, 2]
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback"):
        make_trainer(tmp_path, [NeuronXACallback(eval_steps=0, **FAST)], max_steps=1).train()
    assert [r["step"] for r in records_of(tmp_path)] == [0, 1]
    kept = sorted((tmp_path / "neuronxa").glob("metrics.*.jsonl"))
    assert len(kept) == 1 and read_jsonl(kept[0]) == first
    assert any(kept[0].name in m for m in caplog.messages)


def test_each_measurement_is_announced_on_the_console_without_logging_configured(tmp_path, capsys):
    callback = NeuronXACallback(eval_steps=2, quality_every=1, quality_num_pairs=2, **FAST)
    make_trainer(tmp_path, [callback], max_steps=2).train()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("NeuronXA ")]
    assert any(
        line.startswith(
            "NeuronXA measuring step 0 (baseline, before training): 8 pairs x 1 language(s), "
            "then translating 2 sentence(s)"
        )
        for line in lines
    ), err
    assert [line.split(":")[0] for line in lines if line.startswith("NeuronXA step")] == [
        "NeuronXA step 0",
        "NeuronXA step 2",
    ]
    assert lines[-1].startswith("NeuronXA done: 2 measurement(s)")
    assert len(lines) == len(set(lines))
    assert "2/2 [" in err and "sentence" in err  # the translation bar of a measurement moves per sentence


def test_progress_goes_to_the_users_logging_once_when_configured(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="neuronxa_callback"):
        make_trainer(tmp_path, [NeuronXACallback(eval_steps=0, **FAST)], max_steps=1).train()
    assert "NeuronXA " not in capsys.readouterr().err
    steps = [m for m in caplog.messages if m.startswith("NeuronXA step")]
    assert len(steps) == 2  # baseline and final, once each


def test_a_plateau_stop_says_why_in_words(tmp_path, capsys):
    callback = NeuronXACallback(eval_steps=2, early_stopping_patience=1, **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=10, learning_rate=0.0)
    trainer.train()
    assert trainer.state.global_step == 2
    err = capsys.readouterr().err
    stop = [line for line in err.splitlines() if line.startswith("NeuronXA stopping training at step 2")]
    assert len(stop) == 1 and f"{PAIR} NASCA" in stop[0] and "improv" in stop[0]
    assert "stopped early" in err


def test_final_quality_of_an_early_stopped_run_reaches_the_attached_trackers(tmp_path):
    # The plateau stop lands on an alignment-only measurement; its quality is added afterwards and must reach the
    # Trainer's trackers (here: log_history, which every report_to backend is fed from), not only the JSONL.
    callback = NeuronXACallback(eval_steps=2, quality_every=10, quality_num_pairs=2, early_stopping_patience=1, **FAST)
    trainer = make_trainer(tmp_path, [], max_steps=10, learning_rate=0.0)
    callback.attach(trainer)
    trainer.train()
    records = records_of(tmp_path)
    assert [r["step"] for r in records] == [0, 2] and "quality" in records[1]
    quality_logged = [
        entry for entry in trainer.state.log_history if entry.get("step") == 2 and f"eval_neuronxa/{PAIR}/chrf" in entry
    ]
    assert len(quality_logged) == 1
    assert quality_logged[0][f"eval_neuronxa/{PAIR}/chrf"] == pytest.approx(records[1]["quality"][PAIR]["chrf"])


def test_no_pin_memory_warning_on_a_machine_without_accelerator(tmp_path, recwarn):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the warning only exists without an accelerator")
    make_trainer(
        tmp_path, [NeuronXACallback(eval_steps=0, **FAST)], max_steps=1, dataloader_pin_memory=True, use_cpu=False
    ).train()
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]
