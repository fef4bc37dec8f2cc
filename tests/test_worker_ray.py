"""Out-of-band measurement in a Ray actor (measure_in="ray") on a real local Ray instance: the same records as
in-process measurement, and an actor killed mid-measurement restarted by Ray with its snapshot scored again."""

from __future__ import annotations

import sys

import pytest

from neuronxa_callback import AlignmentMonitor
from neuronxa_callback.parallel.agreement import MeasurementError
from tests._out_of_band import SETTINGS, comparable, run_loop, tiny_run_model

RAY = dict(measure_in="ray")


def test_without_ray_begin_fails_with_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    model, tokenizer = tiny_run_model("plain")
    monitor = AlignmentMonitor(**SETTINGS, **RAY)
    with pytest.raises(MeasurementError, match=r"needs Ray.*pip install 'neuronxa_callback\[ray\]'"):
        monitor.begin(model, tokenizer, output_dir=tmp_path)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_actor_records_equal_in_process_and_survive_a_killed_actor(local_ray, tmp_path):
    import ray

    expected, _ = run_loop(tmp_path / "process")
    killed = []

    def kill_actor(monitor, step):
        out_of_band = monitor._out_of_band
        if step == 2 and not killed:
            assert out_of_band.in_flight >= 1  # step 2's snapshot is with the actor, unscored
            killed.append(step)
            ray.kill(out_of_band.backend.actor, no_restart=False)  # Ray restarts it (max_restarts)

    records, monitor = run_loop(tmp_path / "ray", on_submit=kill_actor, **RAY)
    assert killed
    assert [comparable(r) for r in records] == [comparable(r) for r in expected]
    assert all(r["settings"]["measure_in"] == "ray" for r in records)
    assert ray.is_initialized()  # the test's instance: the monitor did not shut down a Ray it did not start
