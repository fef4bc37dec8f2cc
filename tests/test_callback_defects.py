"""Defects found in review, each pinned by a test that failed before its fix: early stopping on NAVCA,
the final quality point after any kind of stop, and a failed measurement that must not fail the Trainer."""

from __future__ import annotations

import logging

import pytest
from transformers import TrainerCallback

from neuronxa_callback.hosts.trainer import NeuronXACallback
from tests._runs import FAST, PAIR, make_trainer, records_of


def test_navca_is_accepted_as_early_stopping_metric_when_nav_is_measured():
    callback = NeuronXACallback(early_stopping_metric="navca", early_stopping_patience=2)
    assert callback.settings.early_stopping_metric == "navca"
    # ... and still refused, naming the argument, when nav is not measured.
    with pytest.raises(ValueError, match="early_stopping_metric"):
        NeuronXACallback(early_stopping_metric="navca", early_stopping_patience=2, representations=("nas",))
    with pytest.raises(ValueError, match="early_stopping_metric"):
        NeuronXACallback(early_stopping_metric="nasca", early_stopping_patience=2, representations=("nav",))


def test_navca_plateau_stops_training(tmp_path):
    callback = NeuronXACallback(eval_steps=2, early_stopping_patience=1, early_stopping_metric="navca", **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=10, learning_rate=0.0)
    trainer.train()
    assert trainer.state.global_step == 2
    records = records_of(tmp_path)
    assert [r["early_stopping"]["metric"] for r in records] == ["navca", "navca"]
    assert records[1]["early_stopping"]["value"] == pytest.approx(records[1]["pairs"][PAIR]["navca_mean"])


class StopAtStep(TrainerCallback):
    """Another callback that ends training (a time budget would do the same) at `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


QUALITY_RARELY = dict(eval_steps=2, quality_every=10, quality_num_pairs=2)


def test_plateau_stop_ends_with_a_quality_point(tmp_path):
    callback = NeuronXACallback(early_stopping_patience=1, **QUALITY_RARELY, **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=10, learning_rate=0.0)
    trainer.train()
    records = records_of(tmp_path)
    assert trainer.state.global_step == 2 and [r["step"] for r in records] == [0, 2]
    assert ["quality" in r for r in records] == [True, True]
    assert records[-1]["quality"][PAIR]["chrf"] is not None
    assert records[-1]["early_stopping"]["should_stop"]  # the completed record keeps its early-stopping block
    assert records[-1]["timing"]["generation_seconds"] > 0
    # The history (running correlations) saw the final quality point too.
    assert callback.history.series(PAIR)["quality"]["chrf"][-1] == records[-1]["quality"][PAIR]["chrf"]


@pytest.mark.parametrize("order", ["stopper-after", "stopper-before"])
def test_stop_by_another_callback_at_a_measured_step_ends_with_a_quality_point(tmp_path, order):
    callback = NeuronXACallback(**QUALITY_RARELY, **FAST)
    callbacks = [callback, StopAtStep(4)] if order == "stopper-after" else [StopAtStep(4), callback]
    trainer = make_trainer(tmp_path, callbacks, max_steps=10)
    trainer.train()
    records = records_of(tmp_path)
    assert trainer.state.global_step == 4
    assert [r["step"] for r in records] == [0, 2, 4]  # one record per step: the final one completed, not duplicated
    assert ["quality" in r for r in records] == [True, False, True]
    assert [r["measurement_index"] for r in records] == [0, 1, 2]


def test_stop_by_another_callback_between_measurements_ends_with_a_quality_point(tmp_path):
    callback = NeuronXACallback(**QUALITY_RARELY, **FAST)
    trainer = make_trainer(tmp_path, [callback, StopAtStep(3)], max_steps=10)
    trainer.train()
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"], "quality" in r) for r in records] == [
        (0, "train_begin", True),
        (2, "step", False),
        (3, "train_end", True),
    ]


class BrokenEncode:
    """Makes the n-th (1-based) and later alignment encodes fail, as an out-of-memory or a bad batch would."""

    def __init__(self, fail_from: int) -> None:
        import neuronxa_callback.measure.measurement as measurement

        self.original, self.calls, self.fail_from = measurement.encode_all, 0, fail_from

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.fail_from:
            raise RuntimeError("simulated failure while encoding")
        return self.original(*args, **kwargs)


@pytest.mark.parametrize("fail_from", [1, 2], ids=["every-measurement-fails", "later-measurements-fail"])
def test_failed_measurement_with_metric_for_best_model_does_not_fail_the_trainer(
    tmp_path, monkeypatch, caplog, fail_from
):
    import neuronxa_callback.measure.measurement as measurement

    monkeypatch.setattr(measurement, "encode_all", BrokenEncode(fail_from))
    trainer = make_trainer(
        tmp_path,
        [NeuronXACallback(eval_steps=0, **FAST)],
        max_steps=4,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="eval_neuronxa_nasca",
        load_best_model_at_end=True,
    )
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback"):
        trainer.train()  # failed with KeyError on the missing eval_neuronxa_nasca before the fix
    assert trainer.state.global_step == 4
    assert any("eval_neuronxa_nasca" in m for m in caplog.messages)
    # A failed measurement is never the best one; a successful one (fail_from=2: the baseline) does not exist at an
    # evaluation here, so no checkpoint is "best" by the alignment metric.
    assert trainer.state.best_metric == float("-inf")


def test_setup_failure_with_metric_for_best_model_does_not_fail_the_trainer(tmp_path):
    # strict=False: the user chose to train on when the callback cannot start (a folder in the way of its output).
    (tmp_path / "neuronxa").write_text("not a folder")
    trainer = make_trainer(
        tmp_path,
        [NeuronXACallback(eval_steps=0, strict=False, **FAST)],
        max_steps=2,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=1,
        metric_for_best_model="neuronxa_nasca",
    )
    trainer.train()
    assert trainer.state.global_step == 2


def test_strict_failure_still_raises(tmp_path, monkeypatch):
    import neuronxa_callback.measure.measurement as measurement
    from neuronxa_callback.hosts.trainer import MeasurementError

    monkeypatch.setattr(measurement, "encode_all", BrokenEncode(2))
    trainer = make_trainer(
        tmp_path,
        [NeuronXACallback(eval_steps=0, strict=True, **FAST)],
        max_steps=2,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=1,
        metric_for_best_model="eval_neuronxa_nasca",
    )
    with pytest.raises(MeasurementError, match="simulated failure"):
        trainer.train()


def test_resume_from_a_checkpoint_off_the_schedule_adds_no_measurement(tmp_path):
    # Found by the fault-injection test: on_train_begin measured the resume step as a new "baseline", so where a run
    # crashed decided which steps the JSONL held. Only a run without earlier records gets a baseline.
    settings = dict(eval_steps=3, **FAST)
    common = dict(max_steps=6, save_strategy="steps", save_steps=2)
    make_trainer(tmp_path / "straight", [NeuronXACallback(**settings)], **common).train()
    make_trainer(tmp_path / "resumed", [NeuronXACallback(**settings)], **common).train()
    resumed = make_trainer(tmp_path / "resumed", [NeuronXACallback(**settings)], **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-4"))
    expected = records_of(tmp_path / "straight")
    records = records_of(tmp_path / "resumed")
    assert (
        [(r["step"], r["trigger"]) for r in records]
        == [(r["step"], r["trigger"]) for r in expected]
        == [(0, "train_begin"), (3, "step"), (6, "step")]
    )
    assert [r["pairs"][PAIR]["nasca"] for r in records] == [r["pairs"][PAIR]["nasca"] for r in expected]
