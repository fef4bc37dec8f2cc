"""`neuronxa score RUN_DIR --workers N` / `--ray`: the checkpoints of a real tiny Trainer run scored by worker
processes (or Ray actors), each holding the base model once, give the JSONL the sequential path writes, line for
line in step order (times aside)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from neuronxa_callback.cli import main
from tests.test_checkpoints import _train

# What legitimately differs between two scorings of the same checkpoints: when they ran and how long they took.
_RUN_SPECIFIC = ("time", "timing")
# Three checkpoints and the base as step 0, quality on: every part of a record crosses from the worker.
SCORE = ["--data", "bundled", "--num-pairs", "6", "--measures", "nasca,navca", "--include-base", "--quality"]
SCORE += ["--quality-num-pairs", "2", "--max-new-tokens", "4"]


def _comparable(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [{key: value for key, value in record.items() if key not in _RUN_SPECIFIC} for record in records]


def _score(run: Path, output: Path, *options: str) -> int:
    return main(["--quiet", "score", str(run), "--output", str(output), *SCORE, *options])


@pytest.fixture(scope="module")
def lora_run(model_dir, tmp_path_factory) -> Path:
    """Three LoRA adapter checkpoints of the tiny model (its base is the step-0 baseline)."""
    from peft import LoraConfig, get_peft_model

    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["gate_proj", "up_proj"], lora_alpha=16, init_lora_weights=False)
    )
    model.train()
    return _train(model, tokenizer, tmp_path_factory.mktemp("lora-run"), steps=3)


@pytest.fixture(scope="module")
def sequential(lora_run, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("sequential") / "metrics.jsonl"
    assert _score(lora_run, output) == 0
    return output


def test_two_worker_processes_write_the_sequential_jsonl(lora_run, sequential, tmp_path):
    output = tmp_path / "metrics.jsonl"
    assert _score(lora_run, output, "--workers", "2", "--worker-threads", "1") == 0
    fanned_out = _comparable(output)
    assert [r["step"] for r in fanned_out] == [0, 1, 2, 3]
    assert fanned_out == _comparable(sequential)
    # The checkpoints differ, so equal files are not one score repeated.
    assert len({json.dumps(r["pairs"], sort_keys=True) for r in fanned_out}) == 4
    assert not (output.parent / "workers").exists()  # the spool is cleaned up


def test_a_checkpoint_that_fails_in_a_worker_is_named(lora_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint-1").symlink_to(lora_run / "checkpoint-1", target_is_directory=True)
    broken = run / "checkpoint-2"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((lora_run / "checkpoint-2" / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    output = tmp_path / "metrics.jsonl"
    assert (
        main(
            [
                "--quiet",
                "score",
                str(run),
                "--output",
                str(output),
                "--data",
                "bundled",
                "--num-pairs",
                "6",
                "--workers",
                "1",
                "--worker-threads",
                "1",
            ]
        )
        == 2
    )
    assert "checkpoint-2 (step 2): scoring in a worker failed" in capsys.readouterr().err
    # What came before it was written (the base as step 0, checkpoint-1), as the sequential path would have.
    assert [r["step"] for r in _comparable(output)] == [0, 1]


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_checkpoint_scored_once(lora_run, sequential, tmp_path, monkeypatch):
    from neuronxa_callback.offline.fanout import WorkerPool

    killed = []
    hand_over = WorkerPool._hand_over

    def kill_the_first(pool, worker, job, checkpoint):
        hand_over(pool, worker, job, checkpoint)
        if not killed:  # the first checkpoint's worker dies while it scores
            killed.append(worker.pid)
            os.kill(worker.pid, signal.SIGKILL)

    monkeypatch.setattr(WorkerPool, "_hand_over", kill_the_first)
    output = tmp_path / "metrics.jsonl"
    assert _score(lora_run, output, "--workers", "2", "--worker-threads", "1") == 0
    assert killed
    assert _comparable(output) == _comparable(sequential)


@pytest.mark.slow
def test_ray_actors_write_the_sequential_jsonl(lora_run, sequential, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        output = tmp_path / "metrics.jsonl"
        assert _score(lora_run, output, "--ray", "--ray-actors", "2", "--worker-threads", "1") == 0
    finally:
        ray.shutdown()
    assert _comparable(output) == _comparable(sequential)


def _payload(path: Path) -> dict:
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload.pop("timing")
    return payload


def test_score_models_in_workers_writes_what_one_process_writes(model_dir, tmp_path):
    """`neuronxa score-models` (the per-model scores `correlate` reads): two workers, one model each, give the files
    one process gives."""
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    other = tmp_path / "other-model"
    tiny_model("llama", tokenizer=tiny_tokenizer(), seed=1).save_pretrained(other)
    tiny_tokenizer().save_pretrained(other)
    models = [f"a={model_dir}", f"b={other}"]
    scoring = ["--data", "bundled", "--num-pairs", "6", "--languages", "isl_Latn,deu_Latn"]
    assert main(["--quiet", "score-models", *models, "--output-dir", str(tmp_path / "here"), *scoring]) == 0
    fanned = tmp_path / "workers"
    options = ["--workers", "2", "--worker-threads", "1"]
    assert main(["--quiet", "score-models", *models, "--output-dir", str(fanned), *scoring, *options]) == 0
    for name in ("a", "b"):
        assert _payload(fanned / f"{name}.json") == _payload(tmp_path / "here" / f"{name}.json")
    assert _payload(fanned / "a.json")["pairs"] != _payload(fanned / "b.json")["pairs"]  # two different models
    assert sorted(p.name for p in fanned.iterdir()) == ["a.json", "b.json"]  # the spool is gone
