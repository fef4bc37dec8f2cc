"""NeuronXALightningCallback in real (tiny, CPU) PyTorch Lightning runs: schedule, gradient accumulation, the
Trainer's loggers (CSV, TensorBoard), callback_metrics, plateau stop, resume from a Lightning checkpoint, DDP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("neuronxa_callback.hosts.lightning")  # skipped without lightning or pytorch-lightning

from neuronxa_callback.hosts.lightning import NeuronXALightningCallback, pl  # noqa: E402
from neuronxa_callback.sinks.jsonl import read_jsonl  # noqa: E402
from tests._lightning_run import TinyCausalLM, fit  # noqa: E402
from tests._runs import FAST  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"
MEAN = f"eval/neuronxa/{PAIR}/nasca_mean"


def records_of(root: Path) -> list[dict]:
    return read_jsonl(Path(root) / "neuronxa" / "metrics.jsonl")


def csv_series(root: Path, name: str) -> list[tuple[int, float]]:
    (path,) = Path(root).glob("csv/version_*/metrics.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    return [(int(row["step"]), float(row[name])) for row in rows if row.get(name)]


def tensorboard_events(root: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = Path(root).glob("tb/version_*")
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def tensorboard_series(root: Path, name: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in tensorboard_events(root).Scalars(name)]


def assert_series(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [step for step, _ in actual] == [step for step, _ in expected]
    assert [value for _, value in actual] == pytest.approx([value for _, value in expected], abs=1e-6)


def test_schedule_validation_and_final_reach_csv_and_tensorboard_on_the_measured_steps(tmp_path):

    callback = NeuronXALightningCallback(eval_steps=2, quality_every=2, **FAST)
    loggers = [pl.loggers.CSVLogger(tmp_path, name="csv"), pl.loggers.TensorBoardLogger(tmp_path, name="tb")]
    trainer, _ = fit(tmp_path, [callback], max_steps=5, loggers=loggers, with_validation=True, val_check_interval=3)
    records = records_of(tmp_path)
    # Validation after 3 optimizer steps measures too; the last step is the final measurement, with quality.
    assert [(r["step"], r["trigger"]) for r in records] == [
        (0, "train_begin"),
        (2, "step"),
        (3, "evaluate"),
        (4, "step"),
        (5, "train_end"),
    ]
    assert [r["measurement_index"] for r in records] == list(range(5))
    assert ["quality" in r for r in records] == [True, False, True, False, True]
    assert [r["epoch"] for r in records] == pytest.approx([0, 2 / 14, 3 / 14, 4 / 14, 5 / 14])  # 14 batches/epoch
    expected = [(r["step"], r["pairs"][PAIR]["nasca_mean"]) for r in records]
    assert_series(csv_series(tmp_path, MEAN), expected)
    assert_series(tensorboard_series(tmp_path, MEAN), expected)
    # The report's figures go to TensorBoard at the end, on the last step.
    events = tensorboard_events(tmp_path)
    assert f"neuronxa/figures/heatmap/{PAIR}" in events.Tags()["images"]
    assert [e.step for e in events.Images(f"neuronxa/figures/trend/{PAIR}")] == [5]
    chrf = [(r["step"], r["quality"][PAIR]["chrf"]) for r in records if "quality" in r]
    assert_series(csv_series(tmp_path, f"eval/neuronxa/{PAIR}/chrf"), chrf)
    assert csv_series(tmp_path, "train_loss")  # Lightning's own metrics share the file
    # The monitor's eval metrics are in callback_metrics (ModelCheckpoint / EarlyStopping can monitor them).
    assert float(trainer.callback_metrics["eval_neuronxa_nasca"]) == pytest.approx(expected[-1][1])
    summary = json.loads((tmp_path / "neuronxa" / "summary.json").read_text())
    assert summary["steps"] == [0, 2, 3, 4, 5]


def test_gradient_accumulation_measures_only_after_optimizer_steps(tmp_path):
    callback = NeuronXALightningCallback(eval_steps=2, quality_every=0, **FAST)
    trainer, _ = fit(tmp_path, [callback], max_steps=4, accumulate_grad_batches=2)
    assert trainer.global_step == 4
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    # Step 2 is the end of batch 4 (2 batches per optimizer step), 14 batches per epoch.
    assert records[1]["epoch"] == pytest.approx(4 / 14)


def test_model_checkpoint_can_monitor_the_alignment(tmp_path):

    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="eval_neuronxa_nasca", mode="max", every_n_train_steps=2, save_top_k=1
    )
    callback = NeuronXALightningCallback(eval_steps=2, quality_every=0, **FAST)
    fit(tmp_path, [callback, checkpoint], max_steps=4, learning_rate=5e-2, enable_checkpointing=True)
    scored = {r["step"]: r["pairs"][PAIR]["nasca_mean"] for r in records_of(tmp_path) if r["step"] in (2, 4)}
    assert float(checkpoint.best_model_score) == pytest.approx(max(scored.values()))


def test_plateau_sets_should_stop_and_training_ends_early(tmp_path):
    callback = NeuronXALightningCallback(eval_steps=1, early_stopping_patience=1, quality_every=0, **FAST)
    trainer, _ = fit(tmp_path, [callback], max_steps=10, learning_rate=0.0)
    assert trainer.should_stop and callback.monitor.stop_reason
    assert trainer.global_step == 1
    assert [r["step"] for r in records_of(tmp_path)] == [0, 1]


class _CrashAt(pl.Callback):
    """An interruption after the checkpoint at step 2 and after step 3 was measured (the JSONL holds step 3)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_resume_from_a_lightning_checkpoint_gives_the_uninterrupted_jsonl(tmp_path):

    settings = dict(eval_steps=1, quality_every=0, early_stopping_patience=10, **FAST)
    fit(tmp_path / "straight", [NeuronXALightningCallback(**settings)], max_steps=5, learning_rate=0.0)

    root = tmp_path / "resumed"
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=2, save_top_k=-1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(
            root,
            [NeuronXALightningCallback(**settings), _CrashAt(3), checkpoints],
            max_steps=5,
            learning_rate=0.0,
            enable_checkpointing=True,
        )
    assert [r["step"] for r in records_of(root)] == [0, 1, 2, 3]  # step 3 is past the checkpoint
    (ckpt,) = (root / "ckpt").glob("*step=2.ckpt")
    resumed = NeuronXALightningCallback(**settings)
    trainer, _ = fit(root, [resumed], max_steps=5, learning_rate=0.0, ckpt_path=str(ckpt))
    assert trainer.global_step == 5 and resumed.monitor.restored  # state came from the checkpoint

    def shape(records):
        return [
            (
                r["step"],
                r["trigger"],
                r["measurement_index"],
                r["early_stopping"]["bad_measurements"],
                r["pairs"][PAIR]["nasca"],
            )
            for r in records
        ]

    expected = shape(records_of(tmp_path / "straight"))
    assert [s[0] for s in expected] == [0, 1, 2, 3, 4, 5]
    assert shape(records_of(root)) == expected


def test_a_module_without_the_model_attribute_fails_before_training(tmp_path):
    module = TinyCausalLM()
    callback = NeuronXALightningCallback(model_attr="backbone", **FAST)
    with pytest.raises(AttributeError, match="model_attr"):
        fit(tmp_path, [callback], module=module)
    callback = NeuronXALightningCallback(
        model_attr="model", tokenizer=module.tokenizer, eval_steps=0, quality_every=0, **FAST
    )
    del module.tokenizer  # the explicit tokenizer= is used
    trainer, _ = fit(tmp_path / "explicit", [callback], module=module, max_steps=1)
    assert [r["step"] for r in records_of(tmp_path / "explicit")] == [0, 1]


def test_importing_the_package_does_not_import_lightning():
    code = (
        "import sys, neuronxa_callback, neuronxa_callback.monitor; "
        "print(sorted(m for m in ('lightning', 'pytorch_lightning') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == "[]"


@pytest.mark.slow
def test_ddp_two_cpu_processes_measure_once_and_stop_together(tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("MASTER_PORT", None)  # Lightning picks a free port for its own launcher
    command = [sys.executable, str(REPO_ROOT / "tests" / "_lightning_ddp_worker.py"), str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    # The plateau rule fired at step 1 on rank 0; the broadcast decision stopped both ranks there.
    assert [r["global_step"] for r in ranks] == [1, 1]
    assert [r["should_stop"] for r in ranks] == [True, True]
    assert [r["measured"] for r in ranks] == [2, 2]
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (1, "step")]
    assert len(records[0]["quality"][PAIR]["translations"]) == FAST["num_pairs"]
    # Rank 0 logged to the CSV logger. Step 1 got its quality at the end (the run stopped there): the CSV gets the
    # chrF then, without a second copy of the alignment row.
    assert_series(csv_series(tmp_path, MEAN), [(r["step"], r["pairs"][PAIR]["nasca_mean"]) for r in records])
    assert_series(
        csv_series(tmp_path, f"eval/neuronxa/{PAIR}/chrf"), [(r["step"], r["quality"][PAIR]["chrf"]) for r in records]
    )
