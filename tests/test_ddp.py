"""NeuronXACallback under DDP: 2 CPU processes (gloo) give the same scores as one process, and stop together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuronxa_callback.sinks.jsonl import read_jsonl
from tests._runs import FAST

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"


@pytest.mark.slow
def test_ddp_scores_equal_single_process_and_all_ranks_stop(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to the python interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29731",
        str(REPO_ROOT / "tests" / "_ddp_worker.py"),
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    # The plateau rule fired at step 1 on rank 0; the broadcast decision stopped both ranks there.
    assert [r["global_step"] for r in ranks] == [1, 1]
    assert [r["measured"] for r in ranks] == [2, 2]

    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert len(records[0]["quality"][PAIR]["translations"]) == FAST["num_pairs"]

    # Single process, same initial weights and settings: the step-0 scores must match exactly.
    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    data = load_parallel("bundled", languages=("isl_Latn",), num_pairs=FAST["num_pairs"])
    report = measure_alignment(model, tokenizer, data, batch_size=FAST["batch_size"], max_length=FAST["max_length"])
    single = report.to_dict()["pairs"][PAIR]
    ddp = records[0]["pairs"][PAIR]
    for key in ("nasca", "navca", "nasca_mean", "navca_mean"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-12), key

    # measure_alignment(shard=(rank, world)) on every rank: the callback's route (engine, gather), the same scores.
    assert ranks[1]["measure_alignment"] is None
    shard_route = ranks[0]["measure_alignment"][PAIR]
    for key in ("nasca", "navca", "nasca_mean", "navca_mean"):
        assert shard_route[key] == pytest.approx(single[key], abs=1e-12), key
