"""Worker for tests/test_worker_sharded.py: snapshots of an FSDP1- and an FSDP2-sharded tiny Llama (2 CPU processes,
gloo) hold the full weights on rank 0, and a model built from the base copy equals the unsharded model.

DeepSpeed ZeRO-3 too when deepspeed is installed.

Usage::

    torchrun --nproc_per_node 2 tests/_worker_sharded_snapshot.py OUTPUT_DIR

Rank 0 writes OUTPUT_DIR/snapshots.json: per engine, the snapshot's kind, whether every tensor equals the unsharded
model's, and whether the rebuilt model's state equals it; other ranks check they got None.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests._sharded_worker import wrap  # noqa: E402


def _zero3(model):
    """The model's module under a DeepSpeed ZeRO-3 engine (parameters partitioned across the ranks)."""
    import deepspeed

    config = {
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
        "train_micro_batch_size_per_gpu": 1,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, config=config)
    return engine.module


def main() -> None:
    import torch
    import torch.distributed as dist

    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer
    from neuronxa_callback.worker.snapshot import base_copy, build_model, take_snapshot

    output_dir = Path(sys.argv[1])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    rank = dist.get_rank()
    tokenizer = tiny_tokenizer()
    reference = tiny_model("llama", tokenizer=tokenizer, seed=0).state_dict()
    out = {}
    import importlib.util

    engines = ("fsdp1", "fsdp2") + (("zero3",) if importlib.util.find_spec("deepspeed") else ())
    for engine in engines:
        model = tiny_model("llama", tokenizer=tokenizer, seed=0)
        model = _zero3(model) if engine == "zero3" else wrap(model, engine)
        snapshot = take_snapshot(model)
        base = base_copy(model, tokenizer)
        if rank != 0:
            out[engine] = {"none_off_rank_0": snapshot is None and base is None}
            continue
        state = snapshot["state"]
        rebuilt = build_model(base).state_dict()
        out[engine] = {
            "kind": snapshot["kind"],
            "keys_equal": sorted(state) == sorted(reference),
            "tensors_equal": all(torch.equal(state[k], reference[k]) for k in reference if k in state),
            "rebuilt_equal": all(torch.equal(rebuilt[k], reference[k]) for k in reference),
            "class": base["model_class"],
        }
    (output_dir / f"snapshots-{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
