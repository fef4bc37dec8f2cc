"""NeuronXACallback(measure_in="worker") under the Hugging Face Trainer: a short real run writes the same JSONL as
in-process measurement, a plateau stop found late takes effect at the step its result arrived (recorded), and a
checkpoint saved while measurements are in flight holds them (a resume from it loses none)."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from neuronxa_callback import NeuronXACallback
from tests._out_of_band import comparable
from tests._runs import FAST, PAIR, make_trainer, records_of

SETTINGS = dict(data="bundled", eval_steps=1, quality_every=2, strict=True, **FAST)


@pytest.mark.slow
def test_trainer_run_out_of_band_writes_the_in_process_jsonl(tmp_path):
    runs = {}
    for measure_in in ("process", "worker"):
        extra = {"worker_threads": 1} if measure_in == "worker" else {}
        callback = NeuronXACallback(measure_in=measure_in, **extra, **SETTINGS)
        trainer = make_trainer(tmp_path / measure_in, [callback], max_steps=3)
        trainer.train()
        runs[measure_in] = records_of(tmp_path / measure_in)
    assert [r["step"] for r in runs["worker"]] == [0, 1, 2, 3]
    assert [comparable(r) for r in runs["worker"]] == [comparable(r) for r in runs["process"]]


@pytest.mark.slow
def test_late_plateau_stop_is_applied_when_its_result_arrives(tmp_path):
    # learning_rate=0: alignment never moves, so the plateau rule fires on the step-1 measurement; out of band its
    # result arrives some steps later, and training stops there.
    callback = NeuronXACallback(measure_in="worker", worker_threads=1, early_stopping_patience=1, **SETTINGS)
    trainer = make_trainer(tmp_path, [callback], max_steps=40, learning_rate=0.0)
    trainer.train()
    records = records_of(tmp_path)
    stop = next(r for r in records if r.get("early_stopping", {}).get("should_stop"))
    assert stop["step"] == 1  # measured at step 1 ...
    applied = stop["early_stopping"]["applied_at_step"]
    assert applied >= 1 and trainer.state.global_step == applied  # ... and applied when its result arrived
    assert trainer.state.global_step < 40
    assert records[-1]["step"] == trainer.state.global_step and "quality" in records[-1]  # the final point
    summary = json.loads((tmp_path / "neuronxa" / "summary.json").read_text())
    assert summary["stop_reason"] and summary["failures"] == []


class _Preempted(Exception):
    """The job dies right after a checkpoint save."""


class _DieAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Preempted


@pytest.mark.slow
@pytest.mark.parametrize("restore_state", [False, True], ids=["rebuilt-from-jsonl", "restored-from-checkpoint"])
def test_resume_from_a_checkpoint_saved_with_measurements_in_flight_loses_none(tmp_path, restore_state):
    # Step 2's snapshot is submitted in on_step_end, right before the Trainer saves checkpoint-2: in flight then.
    settings = {**SETTINGS, "eval_steps": 2, "measure_in": "worker", "worker_threads": 1, "worker_max_in_flight": 2}
    run = dict(max_steps=4, save_strategy="steps", save_steps=2, restore_callback_states_from_checkpoint=restore_state)
    make_trainer(tmp_path / "whole", [NeuronXACallback(**settings)], **run).train()
    whole = records_of(tmp_path / "whole")

    interrupted = NeuronXACallback(**settings)
    trainer = make_trainer(tmp_path / "resumed", [interrupted, _DieAfterSave(2)], **run)
    try:
        with pytest.raises(_Preempted):
            trainer.train()
    finally:
        interrupted.monitor._close_out_of_band()  # what the dead job's exit does to its worker
    assert [r["step"] for r in records_of(tmp_path / "resumed")] == [0, 2]  # written before the save
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["NeuronXACallback"]
    assert [m["step"] for m in saved["attributes"]["history"]["measurements"]] == [0, 2]

    trainer = make_trainer(tmp_path / "resumed", [NeuronXACallback(**settings)], **run)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    resumed = records_of(tmp_path / "resumed")
    assert [r["step"] for r in whole] == [0, 2, 4]
    assert [comparable(r) for r in resumed] == [comparable(r) for r in whole]
    # Training waited for the measurements in flight before each save; the record it waited for says how long.
    assert whole[1]["timing"]["checkpoint_wait_seconds"] >= 0.0


@pytest.mark.slow
def test_evaluation_at_a_step_already_measured_gets_that_measurement_out_of_band(tmp_path):
    # eval_steps=2 on both: on_step_end submits step 2's snapshot, then the Trainer evaluates at step 2; measure()
    # finds the step measured, so the evaluation must wait for that result rather than see no metric.
    metric = "eval_neuronxa_eng_Latn-isl_Latn_nasca"
    settings = {**SETTINGS, "eval_steps": 2, "quality_every": 0, "measure_in": "worker", "worker_threads": 1}
    evaluations = []

    class _Metrics(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            evaluations.append((state.global_step, dict(metrics)))

    trainer = make_trainer(
        tmp_path,
        [NeuronXACallback(**settings), _Metrics()],
        max_steps=4,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=2,
        metric_for_best_model=metric,
    )
    trainer.train()
    records = {r["step"]: r for r in records_of(tmp_path)}
    assert [step for step, _ in evaluations] == [2, 4]
    for step, metrics in evaluations:
        assert metrics[metric] == records[step]["pairs"][PAIR]["nasca_mean"]  # the measured value, not -inf
        assert records[step]["trigger"] == "step"
        assert records[step]["timing"]["evaluate_wait_seconds"] >= 0.0
