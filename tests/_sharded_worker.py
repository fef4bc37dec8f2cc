"""Worker for tests/test_sharded.py: NeuronXA's sharded measurement on a tiny Llama under raw FSDP1 or FSDP2 (gloo, CPU).

Usage::

    torchrun --nproc_per_node 2 tests/_sharded_worker.py fsdp1|fsdp2|agreement|zero3 OUTPUT_DIR

No Trainer: the measurement path the callback runs (its engine, sharding.engine_for: encode -> gather_encoded ->
score on rank 0, translate -> gather, release) is called on the wrapped model with an uneven number of batches and of
generate calls per rank, then one SGD step on a fixed batch shows the ranks are still in step. Each rank writes
OUTPUT_DIR/rank-<r>.json; rank 0 adds the scores and the gathered translations.
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The settings the test repeats in one process: keep them in one place.
NUM_PAIRS = 9  # 18 sentences -> 5 encode batches of 4: rank 0 runs 3 forwards, rank 1 runs 2 (+1 dummy)
BATCH_SIZE = 4
MAX_LENGTH = 48
NUM_TRANSLATE = 5  # rank 0 translates 3 sentences (2 generate calls of 2), rank 1 translates 2 (1 call + 1 dummy)
TRANSLATE_BATCH = 2
MAX_NEW_TOKENS = 6
LEARNING_RATE = 0.5
TIMEOUT_S = 60


def wrap(model, engine: str):
    import torch
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    if engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        return FullyShardedDataParallel(
            model,
            use_orig_params=True,
            device_id=torch.device("cpu"),
            auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
        )
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (2,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def training_batch(tokenizer):
    from neuronxa_callback.testing.tiny import corpus_sentences

    batch = tokenizer(corpus_sentences()[:4], padding=True, truncation=True, max_length=24, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch["input_ids"], batch["attention_mask"], labels


def full_state_checksum(model, engine: str) -> float:
    """Sum of |w| over the full (unsharded) parameters; the same number on every rank when they are in step."""
    import torch

    if engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, writeback=False):
            return float(sum(p.detach().abs().sum().double() for p in model.parameters()))
    total = torch.zeros((), dtype=torch.float64)
    for p in model.parameters():
        total += p.full_tensor().detach().abs().sum().double()
    return float(total)


def agreement(output_dir: Path) -> None:
    """Ranks that disagree, or a rank that never arrives, give ShardedMeasurementError on the others: no hang."""
    import time

    import torch.distributed as dist

    from neuronxa_callback.parallel.sharding import ShardedMeasurementError, agree_on_count, encode_sharded
    from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

    rank = dist.get_rank()
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    out = {}
    sentences = corpus_sentences()[: 5 + rank]  # rank 1 was given one sentence more
    try:
        encode_sharded(model, tokenizer, sentences, batch_size=2, timeout=TIMEOUT_S)
    except ShardedMeasurementError as error:
        out["different_sentences"] = str(error)
    sentences = corpus_sentences()[:5]
    try:  # rank 1 fails while preparing (a batch size encode() refuses); rank 0 is fine
        encode_sharded(model, tokenizer, sentences, batch_size=2 if rank == 0 else 0, timeout=TIMEOUT_S)
    except ShardedMeasurementError as error:
        out["failed_rank"] = str(error)
    if rank == 0:  # rank 1 never comes: a clear error after the timeout
        start = time.perf_counter()
        try:
            agree_on_count(1, 0, what="lonely agreement", timeout=3)
        except ShardedMeasurementError as error:
            out["missing_rank"] = str(error)
        out["missing_rank_seconds"] = time.perf_counter() - start
    else:
        time.sleep(8)
    (output_dir / f"rank-{rank}.json").write_text(json.dumps(out))


def zero3(output_dir: Path) -> None:
    """DeepSpeed ZeRO-3 (any world size): after training steps (a complete parameter trace) a no-grad encode leaves
    parameters gathered; reshard() partitions them again, and training goes on."""
    import deepspeed
    import torch.distributed as dist

    from neuronxa_callback.parallel.sharding import encode_sharded, reshard, sharding_engine, unsharded_parameters
    from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = {
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
        "train_micro_batch_size_per_gpu": 1,
    }
    engine, _, _, _ = deepspeed.initialize(model=tiny_model("llama", tokenizer=tokenizer, seed=0), config=config)
    module = engine.module
    input_ids, attention_mask, labels = training_batch(tokenizer)

    def step() -> float:
        loss = engine(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        engine.backward(loss)
        engine.step()
        return float(loss.detach())

    out = {"engine": sharding_engine(module), "losses": [step() for _ in range(3)]}
    encode_sharded(module, tokenizer, corpus_sentences()[:6], batch_size=2, timeout=TIMEOUT_S)
    out["unsharded_before_reshard"] = unsharded_parameters(module)
    reshard(module)  # without the optimizer: DeepSpeed's offload object is found through its hook on the module
    out["unsharded_after_reshard"] = unsharded_parameters(module)
    out["losses"].append(step())
    (output_dir / f"rank-{dist.get_rank()}.json").write_text(json.dumps(out))


def main() -> None:
    engine, output_dir = sys.argv[1], Path(sys.argv[2])
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=TIMEOUT_S))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    if engine == "agreement":
        agreement(output_dir)
        return
    if engine == "zero3":
        zero3(output_dir)
        return

    from neuronxa_callback.alignment.report import measure_alignment, parallel_sentences, score_encoded
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.parallel.collectives import gather_encoded, gather_objects
    from neuronxa_callback.parallel.sharding import engine_for, sharding_engine, unsharded_parameters
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = wrap(tiny_model("llama", tokenizer=tokenizer, seed=0), engine)
    model.train()  # as the Trainer leaves it between steps
    measurement = engine_for(model, timeout=TIMEOUT_S)  # what the callback asks once per measurement
    out: dict = {
        "rank": rank,
        "world": world,
        "engine": sharding_engine(model),
        "engine_class": type(measurement).__name__,
    }

    data = load_parallel("bundled", languages=("isl_Latn",), num_pairs=NUM_PAIRS)
    sentences = parallel_sentences(data)
    local = measurement.encode(tokenizer, sentences, batch_size=BATCH_SIZE, max_length=MAX_LENGTH)
    out["encoded_rows"] = len(local.indices)
    merged = gather_encoded(local, len(sentences))
    if rank == 0:
        out["pairs"] = score_encoded(merged, data, batch_size=BATCH_SIZE, max_length=MAX_LENGTH).to_dict()["pairs"]
        torch.save(merged.representations, output_dir / "representations.pt")

    sources = data.sentences("isl_Latn")[:NUM_TRANSLATE]
    rows = measurement.translate(
        tokenizer,
        sources,
        source_lang="isl_Latn",
        target_lang="eng_Latn",
        batch_size=TRANSLATE_BATCH,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    out["translated_rows"] = [i for i, _ in rows]
    gathered = gather_objects(rows)
    if rank == 0:
        out["translations"] = [h for _, h in sorted(row for part in gathered for row in part)]

    out["unsharded_before_reshard"] = unsharded_parameters(model)
    measurement.release()
    out["unsharded_after_reshard"] = unsharded_parameters(model)
    out["training_flag_kept"] = model.training

    # One training step on the same batch on both ranks: it only completes, and gives the single-process result,
    # if every rank is still at the same point of every collective.
    input_ids, attention_mask, labels = training_batch(tokenizer)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    out["loss"] = float(loss.detach())
    out["checksum_after_step"] = full_state_checksum(model, engine)
    # A second measurement after the step still works (and sees the updated weights): measure_alignment's shard=
    # route, the same engine and gather; it releases the parameters itself.
    again = measure_alignment(model, tokenizer, data, batch_size=BATCH_SIZE, max_length=MAX_LENGTH, shard=(rank, world))
    out["report_on_rank"] = again is not None
    out["unsharded_after_measure_alignment"] = unsharded_parameters(model)
    if rank == 0:
        out["pairs_after_step"] = again.to_dict()["pairs"]
    (output_dir / f"rank-{rank}.json").write_text(json.dumps(out))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
