"""`neuronxa score RUN_DIR`: checkpoints written by a real tiny Trainer run (full fine-tuning and LoRA) are scored into
the callback's JSONL schema, incrementally, and `neuronxa report` reads the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from neuronxa_callback.cli import main
from neuronxa_callback.offline.checkpoints import CheckpointError, find_checkpoints, score_checkpoints

PAIR = "eng_Latn-isl_Latn"


def _train(model, tokenizer, out: Path, steps: int = 3) -> Path:
    import torch
    from transformers import Trainer, TrainingArguments

    texts = [
        "Fljótið rennur hægt.",
        "The river runs slowly.",
        "Læknar segja að svefn verndi hjartað.",
        "Doctors say that sleep protects the heart.",
    ] * 3
    rows = [{"input_ids": ids, "labels": ids} for ids in tokenizer(texts)["input_ids"]]

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.tensor([r["input_ids"] + [tokenizer.pad_token_id] * (width - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
        return {"input_ids": ids, "attention_mask": (labels != -100).long(), "labels": labels}

    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=5e-2,
        report_to=[],
        save_strategy="steps",
        save_steps=1,
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=True,
    )
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, processing_class=tokenizer).train()
    return out


@pytest.fixture(scope="module")
def full_run(model_dir, tmp_path_factory) -> Path:
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    model.train()
    return _train(model, tokenizer, tmp_path_factory.mktemp("full-run"))


@pytest.fixture(scope="module")
def lora_run(model_dir, tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model

    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["gate_proj", "up_proj"], lora_alpha=16, init_lora_weights=False)
    )
    model.train()
    return _train(model, tokenizer, tmp_path_factory.mktemp("lora-run"), steps=2)


def test_find_checkpoints_reads_steps_kinds_and_bases(full_run, lora_run, model_dir):
    full = find_checkpoints(full_run)
    assert [c.step for c in full] == [1, 2, 3] and {c.kind for c in full} == {"full"}
    assert full[-1].epoch is not None and all(c.complete for c in full)
    lora = find_checkpoints(lora_run)
    assert [c.step for c in lora] == [1, 2] and {c.kind for c in lora} == {"adapter"}
    assert Path(lora[0].base_model) == Path(model_dir)
    assert find_checkpoints(lora_run, base_model="elsewhere")[0].base_model == "elsewhere"
    with pytest.raises(CheckpointError, match="not a directory"):
        find_checkpoints(full_run / "nope")


def test_full_run_scored_matches_direct_measurement_and_rerun_is_incremental(full_run, tmp_path):
    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    shutil.rmtree(run / "checkpoint-3")  # "training still going on": the last checkpoint is not there yet
    written = score_checkpoints(
        run,
        data="bundled",
        num_pairs=10,
        quality=True,
        quality_num_pairs=4,
        max_new_tokens=6,
        similarity=("cka",),
        svcca_directions=3,
    )
    assert [r["step"] for r in written] == [1, 2]
    jsonl = run / "neuronxa" / "metrics.jsonl"
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    record = lines[0]
    for key in (
        "schema",
        "event",
        "step",
        "epoch",
        "trigger",
        "time",
        "measurement_index",
        "pairs",
        "quality",
        "correlation",
        "timing",
        "settings",
        "data",
    ):
        assert key in record, key
    assert record["trigger"] == "checkpoint" and record["checkpoint"].endswith("checkpoint-1")
    assert record["quality"][PAIR]["direction"] == "isl_Latn->eng_Latn"
    assert 0 <= record["quality"][PAIR]["chrf"] <= 100 and len(record["quality"][PAIR]["translations"]) == 4
    assert "cka" in record["pairs"][PAIR]["similarity"]
    # The score is the checkpoint's own: the same as measuring the checkpoint directly.
    model, tokenizer = load_model_and_tokenizer(str(run / "checkpoint-2"))
    direct = measure_alignment(model, tokenizer, load_parallel("bundled", num_pairs=10))
    assert lines[1]["pairs"][PAIR]["nasca"] == direct.to_dict()["pairs"][PAIR]["nasca"]
    assert lines[1]["pairs"][PAIR]["navca"] == direct.to_dict()["pairs"][PAIR]["navca"]
    # The checkpoints differ (lr 5e-2), so the scores are not just the base model's repeated.
    assert lines[0]["pairs"][PAIR]["navca"] != lines[1]["pairs"][PAIR]["navca"]

    # Re-run after training wrote checkpoint-3: only the new checkpoint is scored; the old lines stay byte-identical.
    before = jsonl.read_text()
    shutil.copytree(full_run / "checkpoint-3", run / "checkpoint-3")
    again = score_checkpoints(run, data="bundled", num_pairs=10, quality=True, quality_num_pairs=4, max_new_tokens=6)
    assert [r["step"] for r in again] == [3]
    after = jsonl.read_text()
    assert after.startswith(before) and len(after.splitlines()) == 3
    # Three quality points: the running correlation appears, as in the callback's records.
    assert "chrf" in json.loads(after.splitlines()[-1])["correlation"][PAIR]
    assert score_checkpoints(run, data="bundled", num_pairs=10) == []  # nothing left to do

    out = tmp_path / "report"
    assert main(["--quiet", "report", str(run), "--output-dir", str(out)]) == 0
    summary = (out / "report.md").read_text()
    assert PAIR in summary and "1–3" in summary
    assert list(out.glob("*.png"))


def test_lora_run_applies_adapters_to_the_base_and_scores_the_base_as_step_0(lora_run, model_dir, tmp_path):
    from peft import PeftModel

    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    out = tmp_path / "lora.jsonl"
    written = score_checkpoints(
        lora_run,
        output=out,
        data="bundled",
        num_pairs=10,
        include_base=True,
        representations="nav",
        similarity=("anc:nav",),
    )
    assert [r["step"] for r in written] == [0, 1, 2]
    data = load_parallel("bundled", num_pairs=10)
    base, tokenizer = load_model_and_tokenizer(str(model_dir))

    def scores(model):
        report = measure_alignment(model, tokenizer, data, representations=("nav",), similarity=("anc:nav",))
        return report.to_dict()["pairs"][PAIR]

    base_scores = scores(base)
    assert written[0]["pairs"][PAIR]["navca"] == base_scores["navca"]
    assert written[0]["checkpoint"] == str(model_dir)
    adapter_scores = scores(PeftModel.from_pretrained(base, str(lora_run / "checkpoint-2")))
    # ANC is continuous: equal values mean the same activations, i.e. the base with exactly this adapter (step 1's
    # adapter was taken off the shared base before step 2's went on) ...
    anc_step2 = written[2]["pairs"][PAIR]["similarity"]["anc:nav"]["per_layer"]
    assert anc_step2 == pytest.approx(adapter_scores["similarity"]["anc:nav"]["per_layer"], abs=1e-9)
    assert written[2]["pairs"][PAIR]["navca"] == adapter_scores["navca"]
    # ... and the adapter does change them (init_lora_weights=False), so the comparison can fail.
    assert anc_step2 != pytest.approx(base_scores["similarity"]["anc:nav"]["per_layer"], abs=1e-6)


def test_cli_score_run_dir_and_errors(full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    out = tmp_path / "cli.jsonl"
    assert (
        main(["--quiet", "score", str(run), "--num-pairs", "8", "--representation", "nas", "--output", str(out)]) == 0
    )
    steps = [json.loads(line)["step"] for line in out.read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (
        main(["--quiet", "score", str(run), "--num-pairs", "8", "--representation", "nas", "--output", str(out)]) == 0
    )
    assert len(out.read_text().splitlines()) == 3
    assert main(["--quiet", "score", str(tmp_path / "missing-run")]) == 2
    assert "missing-run" in capsys.readouterr().err


def test_watch_polls_until_max_polls(full_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(full_run / "checkpoint-1", run / "checkpoint-1")
    partial = run / "checkpoint-2"
    shutil.copytree(full_run / "checkpoint-2", partial)
    (partial / "trainer_state.json").unlink()  # still being written: skipped while watching
    seen = []
    score_checkpoints(run, num_pairs=6, representations="nas", watch=0.01, max_polls=2, on_record=seen.append)
    assert [r["step"] for r in seen] == [1]
