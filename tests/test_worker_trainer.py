"""NeuronXACallback(measure_in="worker") under the Hugging Face Trainer: a short real run writes the same JSONL as
in-process measurement, and a plateau stop found late takes effect at the step its result arrived (recorded)."""

from __future__ import annotations

import json

import pytest

from neuronxa_callback import NeuronXACallback
from tests._out_of_band import comparable
from tests._runs import FAST, make_trainer, records_of

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
