"""Worker for tests/test_worker_ddp.py: the same tiny DDP (gloo, CPU) Trainer run twice, measured in-process and
then out of band (measure_in="worker": rank 0 snapshots its replica, a worker process scores it).

Usage::

    torchrun --nproc_per_node 2 tests/_worker_ddp_run.py OUTPUT_DIR

Writes OUTPUT_DIR/process/neuronxa/metrics.jsonl and OUTPUT_DIR/worker/neuronxa/metrics.jsonl (rank 0), and
OUTPUT_DIR/rank-<r>.json with each rank's global step and measurement count for both runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from neuronxa_callback.hosts.trainer import NeuronXACallback  # noqa: E402
from tests._runs import FAST, make_trainer  # noqa: E402


def main() -> None:
    output_dir = Path(sys.argv[1])
    seen = {}
    for measure_in in ("process", "worker"):
        extra = {"worker_threads": 1} if measure_in == "worker" else {}
        callback = NeuronXACallback(
            data="bundled", eval_steps=1, quality_every=2, strict=True, measure_in=measure_in, **extra, **FAST
        )
        trainer = make_trainer(output_dir / measure_in, [callback], max_steps=3, ddp_backend="gloo")
        trainer.train()
        seen[measure_in] = {"global_step": trainer.state.global_step, "measured": callback.measurement_index}
    import torch.distributed as dist

    (output_dir / f"rank-{dist.get_rank()}.json").write_text(json.dumps({"world": dist.get_world_size(), **seen}))
    # Leave the gloo group together and on purpose: a rank whose process exits with the group still open can abort
    # in the C++ teardown (SIGABRT after all its work is done), which fails the run.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
