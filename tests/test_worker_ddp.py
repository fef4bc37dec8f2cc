"""Out-of-band measurement under DDP (2 CPU processes, gloo): rank 0 snapshots its replica, a worker process scores
it, and the JSONL equals the in-process DDP run's on the same training (scores exact, translations identical)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuronxa_callback.sinks.jsonl import read_jsonl
from tests._out_of_band import comparable

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ddp_out_of_band_records_equal_in_process_ddp_records(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to the python interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    command = [torchrun, "--nproc_per_node", "2", "--master_port", "29741"]
    command += [str(REPO_ROOT / "tests" / "_worker_ddp_run.py"), str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=480)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    for rank in ranks:  # every rank trained to the end and counted every measurement, in both runs
        assert rank["process"] == rank["worker"] == {"global_step": 3, "measured": 4}
    process = read_jsonl(tmp_path / "process" / "neuronxa" / "metrics.jsonl")
    worker = read_jsonl(tmp_path / "worker" / "neuronxa" / "metrics.jsonl")
    assert [r["step"] for r in worker] == [0, 1, 2, 3]
    assert [comparable(r) for r in worker] == [comparable(r) for r in process]
