"""Crashes as users have them: a real tiny Trainer run (tests/_fault_run.py) is SIGKILLed at chosen points
(mid-step, mid-measurement, mid-JSONL-write, mid-checkpoint) and at random moments, and resumed from its last complete
checkpoint each time. The final JSONL must parse, hold one record per measured step with no gap, and carry exactly
the scores of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuronxa_callback.sinks.jsonl import JsonlLogger, read_jsonl
from tests._fault_run import EVAL_STEPS, MAX_STEPS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "_fault_run.py"
PAIR = "eng_Latn-isl_Latn"
RUN_TIMEOUT = 300


def _env(fault: str | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("NEURONXA_FAULT", None)
    if fault:
        env["NEURONXA_FAULT"] = fault
    return env


def _start(output_dir: Path, fault: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(output_dir)],
        cwd=ROOT,
        env=_env(fault),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(output_dir: Path) -> str:
    process = _start(output_dir)
    out, _ = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 0, out[-4000:]
    assert f"DONE step={MAX_STEPS}" in out
    return out


def _records(output_dir: Path) -> list[dict]:
    return read_jsonl(output_dir / "neuronxa" / "metrics.jsonl")


def _scores(record: dict) -> dict:
    """Everything a measurement measured (not when or how fast)."""
    quality = record.get("quality", {}).get(PAIR)
    return {
        "step": record["step"],
        "trigger": record["trigger"],
        "measurement_index": record["measurement_index"],
        "nasca": record["pairs"][PAIR]["nasca"],
        "navca": record["pairs"][PAIR]["navca"],
        "chrf": quality and quality["chrf"],
        "hypotheses": quality and [t["hypothesis"] for t in quality["translations"]],
        "correlation": record["correlation"],
    }


def _wait_for_training(process: subprocess.Popen) -> list[str]:
    """Read the run's output up to the line that says training began; returns the lines read."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("TRAIN_BEGIN") or line.startswith("DONE"):
            break
    return lines


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[list[dict], float]:
    """The reference records, and the seconds from training begin to the end of the process."""
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    process = _start(output_dir)
    lines = _wait_for_training(process)
    start = time.perf_counter()
    lines += _wait_for_training(process)  # up to DONE
    training_seconds = time.perf_counter() - start
    out, _ = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 0 and f"DONE step={MAX_STEPS}" in lines[-1], "".join(lines) + out[-4000:]
    return _records(output_dir), training_seconds


def _check_against(output_dir: Path, expected: list[dict]) -> None:
    text = (output_dir / "neuronxa" / "metrics.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())  # no torn line left over
    records = _records(output_dir)
    steps = [r["step"] for r in records]
    assert steps == list(range(0, MAX_STEPS + 1, EVAL_STEPS))  # one record per measured step, no gap, no duplicate
    assert [_scores(r) for r in records] == [_scores(r) for r in expected]


# (fault, what the run has done when it dies). Each counts from the start of its own process, and the runs resume
# one after the other, so together they walk through the whole training run.
CHOSEN = [
    ("step:5", "mid-step: the 5th optimizer step of a fresh run (checkpoints 2 and 4 exist)"),
    ("measure:2", "mid-measurement: the 2nd measurement after resuming from checkpoint-4 (step 9)"),
    ("jsonl:1", "mid-JSONL-write: the first record after resuming from checkpoint-8 (step 9), half a line on disk"),
    ("checkpoint:2", "mid-checkpoint: the 2nd save after resuming from checkpoint-8 (checkpoint-12 left incomplete)"),
]


@pytest.mark.slow  # ~10 tiny-Trainer processes, 20-40 s each on 2 shared cores
def test_kills_at_chosen_points_then_resume_give_the_uninterrupted_jsonl(tmp_path, uninterrupted, capsys):
    expected, _ = uninterrupted
    output_dir = tmp_path / "run"
    survived = []
    for fault, where in CHOSEN:
        process = _start(output_dir, fault)
        out, _ = process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == -signal.SIGKILL, f"{fault} was not reached:\n{out[-4000:]}"
        survived.append(where)
        if fault == "jsonl:1":  # the torn line is really there, and a reader tolerates it
            text = (output_dir / "neuronxa" / "metrics.jsonl").read_text(encoding="utf-8")
            assert not text.endswith("\n")
            assert [r["step"] for r in read_jsonl(output_dir / "neuronxa" / "metrics.jsonl")] == [0, 3, 6]
        if fault == "checkpoint:2":
            assert not (output_dir / "checkpoint-12" / "trainer_state.json").exists()
    out = _finish(output_dir)
    assert "removing incomplete checkpoint-12" in out
    _check_against(output_dir, expected)
    with capsys.disabled():
        print(f"\nfault injection: kills survived (chosen points): {len(survived)}")
        for where in survived:
            print(f"  - {where}")


@pytest.mark.slow
def test_kills_at_random_moments_then_resume_give_the_uninterrupted_jsonl(tmp_path, uninterrupted, capsys):
    expected, training_seconds = uninterrupted
    seed = int(os.environ.get("NEURONXA_FAULT_SEED", "0"))
    rng = random.Random(seed)
    output_dir = tmp_path / "run"
    kills = []
    for _ in range(4):
        process = _start(output_dir)
        began = _wait_for_training(process)[-1].strip()
        if began.startswith("DONE"):  # nothing left to train: no kill to land
            process.communicate(timeout=RUN_TIMEOUT)
            break
        # Anywhere in what is left of training proper: steps, measurements, JSONL writes, checkpoint saves.
        left = (MAX_STEPS - int(began.split("step=")[1])) / MAX_STEPS
        delay = rng.uniform(0.0, 0.9 * left * training_seconds)
        try:
            out, _ = process.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=RUN_TIMEOUT)
            done = sorted(int(p.name.split("-")[1]) for p in output_dir.glob("checkpoint-*"))
            steps = [r["step"] for r in _records(output_dir)]
            kills.append(f"{delay:.1f} s after {began} (checkpoints on disk: {done}; JSONL steps: {steps})")
        else:
            assert process.returncode == 0, out[-4000:]  # finished before the kill: nothing to count
    _finish(output_dir)
    _check_against(output_dir, expected)
    with capsys.disabled():
        print(f"\nfault injection: kills survived (random moments, seed {seed}): {len(kills)}")
        for kill in kills:
            print(f"  - {kill}")
    assert kills, "no random kill landed before the run finished"


def test_a_torn_last_line_is_dropped_and_the_file_repaired(tmp_path, caplog):
    """What a SIGKILL mid-write leaves: the reader drops the torn tail (warning), the logger repairs the file."""
    path = tmp_path / "metrics.jsonl"
    good = [{"step": 0, "event": "measurement"}, {"step": 3, "event": "measurement"}]
    torn = json.dumps({"step": 6, "event": "measurement", "pairs": {}})
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + torn[: len(torn) // 2], encoding="utf-8")
    assert [r["step"] for r in read_jsonl(path)] == [0, 3]
    assert any("truncated last line" in m for m in caplog.messages)
    logger = JsonlLogger(path, resume_step=3)
    assert [r["step"] for r in logger.records] == [0, 3]
    logger.log_measurement({"step": 6, "event": "measurement"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 3, 6]


def test_replacing_a_record_is_one_atomic_write(tmp_path, monkeypatch):
    """Completing the last record (final quality) replaces its line: a crash must leave the old or the new file."""
    import neuronxa_callback.sinks.jsonl as jsonl

    path = tmp_path / "metrics.jsonl"
    logger = JsonlLogger(path)
    logger.log_measurement({"step": 0, "event": "measurement"})
    logger.log_measurement({"step": 3, "event": "measurement"})
    writes = []
    real = jsonl._atomic_write
    monkeypatch.setattr(
        jsonl, "_atomic_write", lambda p, records: (writes.append([r["step"] for r in records]), real(p, records))
    )
    logger.log_measurement({"step": 3, "event": "measurement", "quality": {}})
    assert writes == [[0, 3]]  # one rewrite that already holds the new record (before: [0] then an append)
    assert [json.loads(line) for line in path.read_text().splitlines()][-1] == {
        "step": 3,
        "event": "measurement",
        "quality": {},
    }
