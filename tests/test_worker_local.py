"""Out-of-band measurement in a worker process (measure_in="worker"): the same records as in-process measurement on
the same weights, a killed worker restarted without losing or duplicating a record, a worker that cannot start
failing at begin(), and the in-flight bound making training wait (and saying how long)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from neuronxa_callback import AlignmentMonitor
from neuronxa_callback.parallel.agreement import MeasurementError
from neuronxa_callback.settings import CallbackSettings, SettingsError
from tests._out_of_band import SETTINGS, WORKER, comparable, run_loop, tiny_run_model, train_step


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The in-process records of a model kind (the reference the worker must reproduce), each run once."""
    runs: dict[str, list[dict]] = {}

    def records(kind: str) -> list[dict]:
        if kind not in runs:
            runs[kind] = run_loop(tmp_path_factory.mktemp(f"process-{kind}"), kind)[0]
        return runs[kind]

    return records


# ----- fast: settings, and the worker's own code (scorer, snapshot) run in this process -------------------------------
@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("measure_in", "thread"),
        ("worker_device", "gpu0"),
        ("worker_threads", 0),
        ("worker_max_in_flight", 0),
        ("worker_timeout", 0),
        ("ray_address", "auto"),  # with measure_in="process"
    ],
)
def test_bad_worker_settings_name_the_argument(argument, value):
    with pytest.raises(SettingsError, match=argument):
        CallbackSettings.from_kwargs(**{argument: value})


@pytest.mark.parametrize("kind", ["plain", "peft"])
def test_scorer_on_snapshots_reproduces_in_process_records(kind, in_process):
    """The worker's code path (base copy -> rebuilt model -> snapshot applied -> same measurement) in this process:
    its pieces equal the in-process records, score for score and translation for translation."""
    from neuronxa_callback.worker.scorer import SnapshotScorer
    from neuronxa_callback.worker.snapshot import base_copy, take_snapshot

    model, tokenizer = tiny_run_model(kind)
    settings = CallbackSettings.from_kwargs(**SETTINGS)
    scorer = SnapshotScorer(settings.to_json(), base_copy(model, tokenizer))
    expected = {record["step"]: record for record in in_process(kind)}
    for step in range(0, 4):
        if step:
            train_step(model, step)
        snapshot = take_snapshot(model)
        assert snapshot["kind"] == ("peft" if kind == "peft" else "full")
        if kind == "peft":  # adapter weights only
            assert all("lora_" in key for key in snapshot["state"])
        with_quality = "quality" in expected[step]
        result = scorer.score({"kind": "measure", "with_quality": with_quality}, snapshot)
        assert result["error"] is None
        assert result["pieces"]["report_dict"]["pairs"] == expected[step]["pairs"]
        # Translations identical, scores exact.
        assert result["pieces"]["quality"] == expected[step].get("quality")
    assert with_quality  # the last step was scored with quality too


# ----- a real worker process ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "peft"])
def test_worker_records_equal_in_process_records(kind, in_process, tmp_path):
    records, monitor = run_loop(tmp_path, kind, **WORKER)
    assert [comparable(r) for r in records] == [comparable(r) for r in in_process(kind)]
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(r["settings"]["measure_in"] == "worker" for r in records)
    assert all(r["timing"]["snapshot_bytes"] > 0 for r in records)
    assert not list((tmp_path / "neuronxa" / "snapshots").glob("*"))  # the spool is cleaned up


@pytest.mark.slow
def test_worker_killed_mid_measurement_is_restarted_and_nothing_is_lost_or_duplicated(in_process, tmp_path):
    killed = []

    def kill_worker(monitor, step):
        out_of_band = monitor._out_of_band
        if step == 2 and not killed:
            assert out_of_band.in_flight >= 1  # step 2's snapshot is with the worker, unscored
            killed.append(out_of_band.backend.pid)
            os.kill(out_of_band.backend.pid, signal.SIGKILL)

    records, monitor = run_loop(tmp_path, "plain", on_submit=kill_worker, **WORKER)
    assert killed
    assert [comparable(r) for r in records] == [comparable(r) for r in in_process("plain")]
    assert monitor._out_of_band is None  # closed at end()
    summary = json.loads((tmp_path / "neuronxa" / "summary.json").read_text())
    assert summary["failures"] == [] and summary["measured"] == 4


@pytest.mark.slow
def test_worker_that_cannot_start_fails_at_begin(tmp_path):
    model, tokenizer = tiny_run_model("plain")
    monitor = AlignmentMonitor(**{**SETTINGS, "strict": None}, measure_in="worker", worker_device="cuda:7")
    with pytest.raises(MeasurementError, match="worker_device='cuda:7'.*could not start"):
        monitor.begin(model, tokenizer, output_dir=tmp_path)


@pytest.mark.slow
def test_in_flight_bound_makes_training_wait_and_records_the_wait(tmp_path):
    records, _ = run_loop(tmp_path, "plain", steps=2, worker_max_in_flight=1, **WORKER)
    waits = [r["timing"]["worker_wait_seconds"] for r in records]
    assert waits[0] < 0.5  # nothing in flight before the baseline
    # Step 1 was submitted right after the baseline, which the worker was still scoring: training waited.
    assert waits[1] > 0.0
    assert [r["step"] for r in records] == [0, 1, 2]
