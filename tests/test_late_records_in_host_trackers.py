"""Out of band a record arrives steps after the step it measured. Lightning's and Accelerate's W&B trackers must
still plot it on its measured step: W&B drops a log whose step= is lower than the run's current step ("step must
increase"). Real offline W&B runs, read back from the run file."""

from __future__ import annotations

import pytest

from tests._records import PAIR, items_to_dict, make_record, wait_for_run_file

MEAN = f"eval/neuronxa/{PAIR}/nasca_mean"


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    # An earlier test's run can still be open (the Trainer's W&B integration leaves its run open after train()), and
    # W&B reads WANDB_DIR once per process: without this, Accelerate's wandb.init (which takes no dir) writes into
    # the earlier test's directory.
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")

    def history() -> list[dict]:
        (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
        records = wait_for_run_file(run_file)
        return [items_to_dict(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]

    return history


def _measured(history: list[dict], step_key: str) -> list[tuple[int, float]]:
    return [(row.get(step_key, row.get("_step")), row[MEAN]) for row in history if MEAN in row]


# Training has logged up to step 5 when the results of steps 2 and 4 arrive; a final one at 6 comes in time.
LATE = [make_record(2, [0.25, 0.5]), make_record(4, [0.5, 0.75], index=1)]
IN_TIME = make_record(6, [0.75, 1.0], index=2)


@pytest.mark.slow  # W&B start-up and shutdown take ~30 s on 2 shared cores
def test_accelerate_wandb_tracker_plots_late_records_on_their_measured_step(tmp_path, offline_wandb):
    from accelerate import Accelerator

    from neuronxa_callback.hosts.accelerate import AccelerateTrackers

    accelerator = Accelerator(log_with="wandb", project_dir=str(tmp_path), cpu=True)
    accelerator.init_trackers("neuronxa-late")
    sink = AccelerateTrackers(accelerator)
    for step in range(1, 6):
        accelerator.log({"train_loss": 1.0 / step}, step=step)
    for record in [*LATE, IN_TIME]:
        sink.log_measurement(record)
    accelerator.end_training()
    history = offline_wandb()
    # Before the fix only step 6 arrived: W&B dropped the logs at steps 2 and 4 (lower than its step 5).
    assert _measured(history, "train/global_step") == [(2, 0.375), (4, 0.625), (6, 0.875)]
    assert sum("train_loss" in row for row in history) == 5  # the loop's own logging is untouched


@pytest.mark.slow  # W&B start-up and shutdown take ~30 s on 2 shared cores
def test_lightning_wandb_logger_plots_late_records_on_their_measured_step(tmp_path, offline_wandb):
    pytest.importorskip("neuronxa_callback.hosts.lightning")
    from neuronxa_callback.hosts.lightning import LightningLoggers, pl

    wandb_logger = pl.loggers.WandbLogger(project="neuronxa-late", save_dir=str(tmp_path), offline=True)
    trainer = pl.Trainer(logger=wandb_logger, accelerator="cpu", devices=1, enable_progress_bar=False)
    sink = LightningLoggers(trainer)
    for step in range(1, 6):
        wandb_logger.log_metrics({"train_loss": 1.0 / step}, step=step)
    for record in [*LATE, IN_TIME]:
        sink.log_measurement(record)
    wandb_logger.experiment.finish()
    # Lightning's WandbLogger logs on its own step metric (trainer/global_step), never step=: nothing is dropped.
    assert _measured(offline_wandb(), "trainer/global_step") == [(2, 0.375), (4, 0.625), (6, 0.875)]
