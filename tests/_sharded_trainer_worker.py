"""Worker for tests/test_sharded.py: a tiny Trainer run with NeuronXACallback under DeepSpeed ZeRO-3 or FSDP2 (CPU, gloo).

Usage::

    torchrun --nproc_per_node 2 tests/_sharded_trainer_worker.py zero3 OUTPUT_DIR
    torchrun --nproc_per_node 2 tests/_sharded_trainer_worker.py fsdp2 OUTPUT_DIR MODEL_DIR
    torchrun --nproc_per_node 1 tests/_sharded_trainer_worker.py fully_shard OUTPUT_DIR

zero3: TrainingArguments(deepspeed={... "stage": 3 ...}) without use_cpu (DeepSpeed's CPU accelerator and gloo).
fsdp2: the model comes from from_pretrained(MODEL_DIR, distributed_config=DistributedConfig(fsdp_size=2)) (transformers'
own FSDP2), trained with use_cpu=True. fully_shard: the tiny Llama sharded with torch's fully_shard directly. The callback measures at steps 0, 1, 2 with translations each time; rank 0
writes OUTPUT_DIR/neuronxa/metrics.jsonl and every rank OUTPUT_DIR/rank-<r>.json.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# 9 pairs (18 sentences) in batches of 8: rank 0 encodes 2 batches, rank 1 one (and runs a dummy forward);
# 9 translations: 5 on rank 0, 4 on rank 1.
SETTINGS = dict(num_pairs=9, batch_size=8, max_length=48, max_new_tokens=4, num_fewshot=1)
MAX_STEPS = 2
TIMEOUT_S = 90
ZERO3 = {
    "zero_optimization": {"stage": 3},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "torch_adam": True}},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
}


def main() -> None:
    engine, output_dir = sys.argv[1], Path(sys.argv[2])
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    # The Trainer (accelerate / deepspeed) would start the group with its 30-minute default: a hang must fail sooner.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=TIMEOUT_S))
    from neuronxa_callback.hosts.trainer import NeuronXACallback
    from neuronxa_callback.parallel.sharding import sharding_engine, unsharded_parameters
    from tests._runs import make_trainer

    seen = {}

    from transformers import TrainerCallback

    class Probe(TrainerCallback):  # listed after NeuronXACallback: the model as the measurement left it
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.setdefault("engine", sharding_engine(model))
            seen.setdefault("unsharded_after_measurement", unsharded_parameters(model))

    callback = NeuronXACallback(eval_steps=1, quality_every=1, strict=True, **SETTINGS)
    if engine == "zero3":
        trainer = make_trainer(output_dir, [callback, Probe()], max_steps=MAX_STEPS, use_cpu=False, deepspeed=ZERO3)
    elif (
        engine == "fully_shard"
    ):  # raw FSDP2 on the Trainer's model (any world size; the default test uses one process)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

        model = tiny_model("llama", tokenizer=tiny_tokenizer(), seed=0)
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        # What from_pretrained(distributed_config=...) sets: the Trainer must not wrap the sharded model in DDP.
        model._is_distributed_loading_by_transformers = True  # (read-only property over this attribute)
        model.train()
        trainer = make_trainer(output_dir, [callback, Probe()], max_steps=MAX_STEPS, model=model)
    elif engine == "fsdp2":
        from transformers import AutoModelForCausalLM
        from transformers.distributed import DistributedConfig

        model = AutoModelForCausalLM.from_pretrained(
            sys.argv[3], distributed_config=DistributedConfig(fsdp_size=2), dtype=torch.float32
        )
        model.train()
        trainer = make_trainer(output_dir, [callback, Probe()], max_steps=MAX_STEPS, model=model)
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    trainer.train()
    rank, world = dist.get_rank(), dist.get_world_size()
    (output_dir / f"rank-{rank}.json").write_text(
        json.dumps(
            {
                "world": world,
                "global_step": trainer.state.global_step,
                "measured": callback.measurement_index,
                **seen,
                "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
            }
        )
    )
    dist.barrier()


if __name__ == "__main__":
    main()
