"""Worker for tests/test_ddp.py: a tiny DDP (gloo, CPU) Trainer run with NeuronXACallback.

Usage::

    torchrun --nproc_per_node 2 tests/_ddp_worker.py OUTPUT_DIR

Every rank trains the same seeded tiny Llama for 2 steps; the callback measures at steps 0, 1, 2 (with translations
at step 0 and 2) and rank 0 writes OUTPUT_DIR/neuronxa/metrics.jsonl. Each rank writes OUTPUT_DIR/rank-<r>.json
with what it saw (world size, global step, whether training was stopped) so the test can check all ranks finished,
and what measure_alignment(..., shard=(rank, world)) returned there after training.
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
    # data="bundled": the single-process comparison in test_ddp.py loads the bundled sample (the default is NTREX).
    callback = NeuronXACallback(
        data="bundled", eval_steps=1, quality_every=2, early_stopping_patience=1, strict=True, **FAST
    )
    # learning_rate=0: alignment stays constant, so the plateau rule fires at step 1 on rank 0 and every rank
    # must stop there too (the decision is broadcast).
    trainer = make_trainer(output_dir, [callback], max_steps=4, learning_rate=0.0, ddp_backend="gloo")
    trainer.train()
    import torch.distributed as dist

    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel

    rank, world = dist.get_rank(), dist.get_world_size()
    # measure_alignment's shard= route after training (learning_rate=0: the weights are the step-0 ones): the same
    # engine and gather as the callback, so the same scores; rank 0 alone gets the report.
    data = load_parallel("bundled", languages=("isl_Latn",), num_pairs=FAST["num_pairs"])
    report = measure_alignment(
        trainer.model,
        trainer.processing_class,
        data,
        batch_size=FAST["batch_size"],
        max_length=FAST["max_length"],
        shard=(rank, world),
    )
    (output_dir / f"rank-{rank}.json").write_text(
        json.dumps(
            {
                "world": world,
                "global_step": trainer.state.global_step,
                "measured": callback.measurement_index,
                "measure_alignment": None if report is None else report.to_dict()["pairs"],
            }
        )
    )
    # Leave the gloo group together and on purpose: a rank whose process exits with the group still open can abort
    # in the C++ teardown (SIGABRT after all its work is done), which fails the run.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
