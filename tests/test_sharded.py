"""Sharded measurement with 2 CPU processes (gloo): FSDP1 and FSDP2 without the Trainer, the agreement errors, and
Trainer runs under DeepSpeed ZeRO-3 and FSDP2. Each compares with a single process on the same weights.

Every subprocess has a `timeout` and every process group one (tests/_sharded_worker.py): a hang fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import _sharded_worker as worker

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"


def torchrun(script: str, *args: str, port: int, timeout: int = 240, nproc: int = 2) -> subprocess.CompletedProcess:
    executable = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("torchrun not installed next to the python interpreter")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        executable,
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(port),
        str(REPO_ROOT / "tests" / script),
        *args,
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def ranks(path: Path) -> list[dict]:
    return [json.loads((path / f"rank-{r}.json").read_text()) for r in range(2)]


def single_process_reference():
    """Scores, representations, translations and one SGD step of the unsharded model the workers start from."""
    from neuronxa_callback.alignment.report import parallel_sentences, score_encoded
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.instrument.activations import encode
    from neuronxa_callback.parallel.collectives import my_share
    from neuronxa_callback.quality.generation import translate
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    data = load_parallel("bundled", languages=("isl_Latn",), num_pairs=worker.NUM_PAIRS)
    encoded = encode(
        model, tokenizer, parallel_sentences(data), batch_size=worker.BATCH_SIZE, max_length=worker.MAX_LENGTH
    )
    pairs = score_encoded(encoded, data, batch_size=worker.BATCH_SIZE, max_length=worker.MAX_LENGTH).to_dict()["pairs"]
    sources = data.sentences("isl_Latn")[: worker.NUM_TRANSLATE]
    translations = [None] * len(sources)
    for rank in range(2):  # the same sentences in the same batches as rank `rank` generated them
        mine = my_share(len(sources), rank, 2)
        for i, hypothesis in zip(
            mine,
            translate(
                model,
                tokenizer,
                [sources[i] for i in mine],
                source_lang="isl_Latn",
                target_lang="eng_Latn",
                batch_size=worker.TRANSLATE_BATCH,
                max_new_tokens=worker.MAX_NEW_TOKENS,
            ),
        ):
            translations[i] = hypothesis
    model.train()
    input_ids, attention_mask, labels = worker.training_batch(tokenizer)
    optimizer = torch.optim.SGD(model.parameters(), lr=worker.LEARNING_RATE)
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    loss.backward()
    optimizer.step()
    checksum = float(sum(p.detach().abs().sum().double() for p in model.parameters()))
    return {
        "pairs": pairs,
        "representations": encoded.representations,
        "translations": translations,
        "loss": float(loss.detach()),
        "checksum": checksum,
    }


@pytest.fixture(scope="module")
def reference():
    return single_process_reference()


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "port"), [("fsdp1", 29751), ("fsdp2", 29752)])
def test_fsdp_measurement_equals_single_process_and_ranks_stay_in_step(tmp_path, reference, engine, port):
    torchrun("_sharded_worker.py", engine, str(tmp_path), port=port)
    rank0, rank1 = ranks(tmp_path)
    assert rank0["engine"] == rank1["engine"] == engine
    assert rank0["engine_class"] == rank1["engine_class"] == "ShardedEngine"
    # 18 sentences in 5 batches of 4: rank 0 encoded 3 batches (10 rows), rank 1 two (8 rows) plus a dummy forward.
    assert (rank0["encoded_rows"], rank1["encoded_rows"]) == (10, 8)
    assert (rank0["translated_rows"], rank1["translated_rows"]) == ([0, 2, 4], [1, 3])

    # Representations and scores equal the single-process ones: the dummy forward was not pooled anywhere.
    sharded = torch.load(tmp_path / "representations.pt")
    for name, value in reference["representations"].items():
        torch.testing.assert_close(sharded[name], value, rtol=0, atol=1e-6)
    for key in ("nasca", "navca", "nasca_mean", "navca_mean"):
        assert rank0["pairs"][PAIR][key] == pytest.approx(reference["pairs"][PAIR][key], abs=1e-12), key
    assert rank0["translations"] == reference["translations"]

    # Parameters were back in their shards after the measurement (the root unit stays gathered without reshard).
    assert rank0["unsharded_before_reshard"] and rank0["unsharded_after_reshard"] == []
    assert rank1["unsharded_after_reshard"] == []
    assert rank0["training_flag_kept"] and rank1["training_flag_kept"]
    # The training step afterwards: same loss and same updated weights on both ranks and in one process.
    assert rank0["loss"] == rank1["loss"] == pytest.approx(reference["loss"], rel=1e-6)
    assert (
        rank0["checksum_after_step"] == rank1["checksum_after_step"] == pytest.approx(reference["checksum"], rel=1e-6)
    )
    # measure_alignment(shard=(rank, world)): the same engine and gather, rank 0 alone gets the report, released.
    assert (rank0["report_on_rank"], rank1["report_on_rank"]) == (True, False)
    assert rank0["unsharded_after_measure_alignment"] == rank1["unsharded_after_measure_alignment"] == []
    assert PAIR in rank0["pairs_after_step"]


def test_ranks_that_disagree_or_do_not_arrive_get_an_error_not_a_hang(tmp_path):
    torchrun("_sharded_worker.py", "agreement", str(tmp_path), port=29753, timeout=120)
    rank0, rank1 = ranks(tmp_path)
    for out in (rank0, rank1):
        assert "ranks disagree on the work" in out["different_sentences"]
        assert "rank(s) [1] failed before the first forward" in out["failed_rank"]
    assert "batch_size must be a positive int, got 0" in rank1["failed_rank"]  # the failing rank names its own error
    assert "not every rank reached the agreement point within 3 s" in rank0["missing_rank"]
    assert rank0["missing_rank_seconds"] < 30


def trainer_reference(settings: dict, output_dir: Path):
    """The unsharded single-process run the sharded Trainer runs are compared with: the same tiny Llama through the
    same callback and settings; its step-0 scores and translations."""
    from neuronxa_callback import NeuronXACallback
    from neuronxa_callback.sinks.jsonl import read_jsonl
    from tests._runs import make_trainer

    callback = NeuronXACallback(eval_steps=0, quality_every=1, strict=True, **settings)
    make_trainer(output_dir, [callback], max_steps=1).train()
    record = read_jsonl(output_dir / "neuronxa" / "metrics.jsonl")[0]
    return record["pairs"], [t["hypothesis"] for t in record["quality"][PAIR]["translations"]]


def check_records_match_one_process(tmp_path: Path) -> list[dict]:
    """The sharded Trainer run's JSONL: a measurement at every step, and the step-0 scores and translations of the
    unsharded single-process run. Returns the records."""
    from neuronxa_callback.sinks.jsonl import read_jsonl
    from tests._sharded_trainer_worker import MAX_STEPS, SETTINGS

    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(MAX_STEPS + 1))
    pairs, single = trainer_reference(SETTINGS, tmp_path / "single")
    for key in ("nasca", "navca", "nasca_mean", "navca_mean"):
        assert records[0]["pairs"][PAIR][key] == pytest.approx(pairs[PAIR][key], abs=1e-12), key
    # One rank translates everything in the same batches as the unsharded run: identical translations.
    assert [t["hypothesis"] for t in records[0]["quality"][PAIR]["translations"]] == single
    return records


def check_peak_memory_fields(timing: dict) -> None:
    """Both blocks measured, in MiB. The values themselves can be 0 (a block may reuse memory the process already
    holds), so that a known allocation is counted is checked in-process (tests/test_peak_memory_record.py); here:
    measured at all, and in MiB (a tiny model's block stays far below 1 GiB; bytes or KiB would not)."""
    for block in ("alignment", "generation"):
        value = timing[f"{block}_peak_memory_mb"]
        assert isinstance(value, float) and 0 <= value < 1024, (block, value)


def check_trainer_run(tmp_path: Path, engine: str) -> None:
    from tests._sharded_trainer_worker import MAX_STEPS

    rank0, rank1 = ranks(tmp_path)
    assert rank0["world"] == 2 and rank0["engine"] == rank1["engine"] == engine
    assert rank0["global_step"] == rank1["global_step"] == MAX_STEPS
    assert rank0["measured"] == rank1["measured"] == MAX_STEPS + 1
    # After each measurement the parameters were back in their shards on both ranks.
    assert rank0["unsharded_after_measurement"] == rank1["unsharded_after_measurement"] == []
    records = check_records_match_one_process(tmp_path)
    for record in records:  # the peak memory sits next to the seconds
        check_peak_memory_fields(record["timing"])
        assert record["timing"]["alignment_seconds"] > 0


@pytest.mark.slow
def test_trainer_under_deepspeed_zero3_measures_like_one_process(tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed ZeRO-3 test needs the [deepspeed] extra (pip install deepspeed)")
    torchrun("_sharded_trainer_worker.py", "zero3", str(tmp_path), port=29754, timeout=300)
    check_trainer_run(tmp_path, "zero3")


@pytest.mark.slow
def test_trainer_under_transformers_fsdp2_measures_like_one_process(tmp_path):
    try:
        from transformers.distributed import DistributedConfig
    except ImportError:
        pytest.skip("this transformers has no DistributedConfig (FSDP2 through from_pretrained)")
    if "fsdp_size" not in DistributedConfig.__init__.__code__.co_varnames:
        pytest.skip("this transformers' DistributedConfig has no fsdp_size")
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tiny_model("llama", tokenizer=tiny_tokenizer(), seed=0).save_pretrained(tmp_path / "model")  # the workers' weights
    torchrun("_sharded_trainer_worker.py", "fsdp2", str(tmp_path), str(tmp_path / "model"), port=29755, timeout=300)
    check_trainer_run(tmp_path, "fsdp2")


def test_callback_wiring_on_a_fully_shard_model_in_one_process(tmp_path):
    """The Trainer path through the sharded engine (encode, translate, release; peak memory) with
    one process on a 1-rank gloo group: fast enough for the default run; the 2-rank runs above are marked slow."""
    executable = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("torchrun not installed next to the python interpreter")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        executable,
        "--nproc_per_node",
        "1",
        "--master_port",
        "29756",
        str(REPO_ROOT / "tests" / "_sharded_trainer_worker.py"),
        "fully_shard",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    from tests._sharded_trainer_worker import MAX_STEPS

    (rank0,) = [json.loads((tmp_path / "rank-0.json").read_text())]
    assert rank0["engine"] == "fsdp2" and rank0["global_step"] == MAX_STEPS
    # FSDP2 leaves the root's parameters unsharded after a no-grad forward; the measurement put them back.
    assert rank0["unsharded_after_measurement"] == []
    records = check_records_match_one_process(tmp_path)
    for record in records:
        check_peak_memory_fields(record["timing"])


def test_zero3_parameters_left_gathered_by_a_measurement_are_partitioned_again(tmp_path):
    """One process on a 1-rank gloo group: after a few ZeRO-3 training steps a no-grad encode leaves parameters
    gathered (DeepSpeed's trace keeps them for reuse); reshard() partitions them and training continues."""
    pytest.importorskip("deepspeed", reason="DeepSpeed ZeRO-3 test needs the [deepspeed] extra (pip install deepspeed)")
    torchrun("_sharded_worker.py", "zero3", str(tmp_path), port=29758, nproc=1, timeout=240)
    out = json.loads((tmp_path / "rank-0.json").read_text())
    assert out["engine"] == "zero3"
    assert out["unsharded_before_reshard"]  # the memory cost the issue describes
    assert out["unsharded_after_reshard"] == []
    assert len(out["losses"]) == 4 and all(loss == loss for loss in out["losses"])  # trained on after the measurement
