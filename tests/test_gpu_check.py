"""bench/gpu_check.py: skips cleanly without CUDA, and its checks run end to end on the CPU (--allow-cpu --tiny)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=SCRIPT.parents[1],
    )


def test_without_cuda_it_prints_a_skip_and_exits_zero():
    result = _run(timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: SKIP: no CUDA device") and "--allow-cpu" in lines[0]


@pytest.mark.slow
def test_dry_run_on_the_cpu_runs_every_check(tmp_path):
    """The same code path a GPU run takes, on the CPU with a tiny model: bf16 LoRA and 4-bit QLoRA Trainer runs with
    the callback (alignment, translation, chrF, tiny COMET), scores against float32, timing shares."""
    pytest.importorskip("bitsandbytes")
    result = _run("--tiny", "--allow-cpu", "--output-dir", str(tmp_path), timeout=1200)
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-3000:]
    assert all(re.match(r"^[a-z0-9_]+: ", line) for line in lines), lines  # only `name: value` lines
    values = dict(line.split(": ", 1) for line in lines)
    for kind in ("bf16", "qlora"):
        assert values[f"check_{kind}_run"].startswith("PASS"), values
        assert values[f"check_{kind}_scores_vs_cpu_fp32"].startswith("PASS"), values
        assert values[f"check_{kind}_measurement_memory"].startswith("SKIP")  # no CUDA memory counters on the CPU
        assert 0.0 < float(values[f"{kind}_callback_share"]) < 1.0
        assert float(values[f"{kind}_step0_comet"]) == float(values[f"{kind}_step0_comet"])  # a number, not n/a
    assert lines[-1].startswith("gpu_check: PASS") and result.returncode == 0
    assert (tmp_path / "run-qlora" / "neuronxa" / "metrics.jsonl").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_every_check_passes(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=SCRIPT.parents[1],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("gpu_check: PASS")
