"""NeuronXALightningCallback(measure_in="worker") in a real (tiny, CPU) Lightning run: a checkpoint saved while a
measurement is in flight holds it (on_save_checkpoint drains the worker first), so a run resumed from that
checkpoint writes the JSONL of an uninterrupted run."""

from __future__ import annotations

import pytest

pytest.importorskip("neuronxa_callback.hosts.lightning")  # skipped without lightning or pytorch-lightning

import torch  # noqa: E402

from neuronxa_callback.hosts.lightning import NeuronXALightningCallback, pl  # noqa: E402
from tests._lightning_run import fit  # noqa: E402
from tests._out_of_band import comparable  # noqa: E402
from tests._runs import FAST, records_of  # noqa: E402

# learning_rate=0 (as in tests/test_hosts_lightning.py): Lightning restarts a plain DataLoader's epoch on resume, so
# only weights that do not move make the resumed run train like the uninterrupted one.
SETTINGS = dict(
    data="bundled",
    eval_steps=2,
    quality_every=2,
    strict=True,
    measure_in="worker",
    worker_threads=1,
    worker_max_in_flight=2,
    **FAST,
)


class _Preempted(Exception):
    """The job dies right after a checkpoint is written."""


class _CheckpointThenDie(pl.callbacks.ModelCheckpoint):
    """Saves every 2 steps (Lightning runs checkpoint callbacks after the others, so step 2's snapshot was just
    submitted), then dies at `die_at` right after that save."""

    def __init__(self, dirpath, die_at: int | None = None) -> None:
        super().__init__(dirpath=dirpath, every_n_train_steps=2, save_top_k=-1)
        self.die_at = die_at

    def on_train_batch_end(self, trainer, *args, **kwargs):
        super().on_train_batch_end(trainer, *args, **kwargs)
        if trainer.global_step == self.die_at:
            raise _Preempted


@pytest.mark.slow
def test_resume_from_a_lightning_checkpoint_saved_with_a_measurement_in_flight_loses_none(tmp_path):
    run = dict(max_steps=4, learning_rate=0.0, enable_checkpointing=True)
    fit(
        tmp_path / "whole",
        [NeuronXALightningCallback(**SETTINGS), _CheckpointThenDie(tmp_path / "whole" / "ckpt")],
        **run,
    )
    whole = records_of(tmp_path / "whole")

    root = tmp_path / "resumed"
    interrupted = NeuronXALightningCallback(**SETTINGS)
    try:
        with pytest.raises(_Preempted):
            fit(root, [interrupted, _CheckpointThenDie(root / "ckpt", die_at=2)], **run)
    finally:
        interrupted.monitor._close_out_of_band()  # what the dead job's exit does to its worker
    assert [r["step"] for r in records_of(root)] == [0, 2]  # written before the save
    (checkpoint,) = (root / "ckpt").glob("*step=2.ckpt")
    saved = torch.load(checkpoint, weights_only=False)["callbacks"][interrupted.state_key]
    assert [m["step"] for m in saved["history"]["measurements"]] == [0, 2]

    resumed = NeuronXALightningCallback(**SETTINGS)
    trainer, _ = fit(root, [resumed], **run, ckpt_path=str(checkpoint))
    assert trainer.global_step == 4 and resumed.monitor.restored  # the state came from the checkpoint
    assert [r["step"] for r in whole] == [0, 2, 4]
    assert [comparable(r) for r in records_of(root)] == [comparable(r) for r in whole]
    # Training waited for the measurement in flight before the save; the record it waited for says how long.
    assert whole[1]["timing"]["checkpoint_wait_seconds"] >= 0.0
