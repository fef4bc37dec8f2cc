"""Worker for tests/test_hosts_lightning.py: a tiny Lightning DDP run (2 CPU processes, gloo) with
NeuronXALightningCallback.

Usage::

    python tests/_lightning_ddp_worker.py OUTPUT_DIR      # Lightning starts the second process itself

learning_rate=0 keeps the alignment constant, so the plateau rule fires at step 1 on rank 0 and both ranks must stop
there (the decision is broadcast). Each rank writes OUTPUT_DIR/rank-<r>.json with what it saw.
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

from neuronxa_callback.hosts.lightning import NeuronXALightningCallback, pl  # noqa: E402
from tests._lightning_run import fit  # noqa: E402
from tests._runs import FAST  # noqa: E402


def main() -> None:
    output_dir = Path(sys.argv[1])
    callback = NeuronXALightningCallback(
        data="bundled", eval_steps=1, quality_every=2, early_stopping_patience=1, strict=True, **FAST
    )
    trainer, _ = fit(
        output_dir,
        [callback],
        max_steps=4,
        learning_rate=0.0,
        strategy="ddp",
        devices=2,
        loggers=[pl.loggers.CSVLogger(output_dir, name="csv")],
    )
    import torch.distributed as dist

    (output_dir / f"rank-{dist.get_rank()}.json").write_text(
        json.dumps(
            {
                "world": dist.get_world_size(),
                "global_step": trainer.global_step,
                "should_stop": trainer.should_stop,
                "measured": callback.monitor.measurement_index,
            }
        )
    )


if __name__ == "__main__":
    main()
