"""The recipes (demo, QLoRA en-is, continued pretraining) end to end on a tiny local model, and their shared helpers."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from neuronxa_callback.offline.run_summary import alignment_change, summary_lines
from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PAIR = "eng_Latn-isl_Latn"


def _load(name: str):
    """Import recipes/<name>.py as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load("_common")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch):
    """The recipes set WANDB_DIR / WANDB_PROJECT for their run; monkeypatch puts the environment back afterwards."""
    for name in ("WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "neuronxa" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ----- helpers ------------------------------------------------------------------------------------------------------------
def test_translation_examples_mix_both_directions():
    pairs = [("Hello.", "Halló."), ("Thanks.", "Takk.")]
    examples = common.translation_examples(pairs, source_lang="eng_Latn", target_lang="isl_Latn", seed=1)
    assert sorted(examples) == sorted(
        [
            ("English: Hello.\nIcelandic:", " Halló."),
            ("Icelandic: Halló.\nEnglish:", " Hello."),
            ("English: Thanks.\nIcelandic:", " Takk."),
            ("Icelandic: Takk.\nEnglish:", " Thanks."),
        ]
    )
    one_way = common.translation_examples(pairs, source_lang="eng_Latn", target_lang="isl_Latn", directions="tgt2src")
    assert all(prompt.startswith("Icelandic:") for prompt, _ in one_way) and len(one_way) == 2
    with pytest.raises(ValueError, match="directions"):
        common.translation_examples(pairs, source_lang="eng_Latn", target_lang="isl_Latn", directions="sideways")


def test_tokenized_texts_masks_the_prompt_only_when_asked():
    tokenizer = tiny_tokenizer()
    example = ("English: The river runs.\nIcelandic:", " Fljótið rennur.")
    prompt_length = len(tokenizer(example[0])["input_ids"])
    full = common.TokenizedTexts(tokenizer, [example], max_length=64)[0]
    masked = common.TokenizedTexts(tokenizer, [example], max_length=64, completion_only=True)[0]
    assert full["input_ids"] == masked["input_ids"] and full["input_ids"][-1] == tokenizer.eos_token_id
    assert full["labels"] == full["input_ids"]
    assert masked["labels"][:prompt_length] == [-100] * prompt_length
    assert masked["labels"][prompt_length:] == masked["input_ids"][prompt_length:]
    cut = common.TokenizedTexts(tokenizer, [example], max_length=5)
    assert len(cut[0]["input_ids"]) == 5 and cut.truncated == 1


def test_collator_pads_right_and_masks_padding():
    collate = common.CausalLMCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8], "labels": [-100]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [-100, -100, -100]]


def test_packed_blocks_are_full_length():
    tokenizer = tiny_tokenizer()
    texts = ["Fljótið rennur hægt í gegnum dalinn og börnin leika sér á bakkanum á sumrin."] * 10
    blocks = common.PackedBlocks(tokenizer, texts, block_size=16)
    assert len(blocks) >= 2 and all(len(blocks[i]["input_ids"]) == 16 for i in range(len(blocks)))
    assert len(common.PackedBlocks(tokenizer, texts, block_size=16, max_blocks=2)) == 2
    with pytest.raises(ValueError, match="fewer than one block"):
        common.PackedBlocks(tokenizer, ["Takk."], block_size=512)


def test_train_mlp_only_freezes_everything_else():
    model = tiny_model("llama")
    trainable = common.train_mlp_only(model)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert names and all(".mlp." in name for name in names)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_time_budget_stops_training_when_the_deadline_nears():
    from transformers import TrainerControl, TrainerState

    callback = common.make_time_budget_callback(time.monotonic() + 3600, final_reserve_seconds=10)
    callback.before_train = time.monotonic()
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(None, state, control)
    state.global_step = 1
    assert not callback.on_step_end(None, state, control).should_training_stop
    near = common.make_time_budget_callback(time.monotonic() + 5, final_reserve_seconds=10)
    near.on_train_begin(None, state, control)
    assert near.on_step_end(None, state, control).should_training_stop and near.stopped_at == 1


def test_time_budget_knows_when_the_final_measurement_translates(tmp_path):
    """The last measurement translates whenever quality is on (the callback's rule at train end), whatever the
    schedule; only a run without quality may budget for alignment alone."""
    from transformers import TrainerControl, TrainerState

    from neuronxa_callback import NeuronXACallback

    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text(json.dumps({"step": 0, "timing": {"alignment_seconds": 2.0, "generation_seconds": 98.0}}) + "\n")
    for quality_every, should_stop in ((0, False), (5, True)):
        neuronxa = NeuronXACallback(quality_every=quality_every)
        guard = common.make_time_budget_callback(
            time.monotonic() + 60, final_reserve_seconds=10, neuronxa=neuronxa, jsonl_path=jsonl
        )
        guard.before_train = time.monotonic() - 100  # the baseline (with translations, if any) took 100 s
        state, control = TrainerState(), TrainerControl()
        guard.on_train_begin(None, state, control)
        state.global_step = 1
        neuronxa.measurement_index = 1  # off the quality schedule, yet the final measurement still translates
        assert guard.on_step_end(None, state, control).should_training_stop is should_stop, quality_every


def _record(step: int, per_layer: list[float], chrf=None, n: int = 100) -> dict:
    record = {
        "step": step,
        "data": {"ids": [str(i) for i in range(n)]},
        "pairs": {PAIR: {"nasca": per_layer, "nasca_mean": sum(per_layer) / len(per_layer), "nasca_pvalue": 1e-5}},
    }
    if chrf is not None:
        record["quality"] = {PAIR: {"chrf": chrf}}
    return record


def test_alignment_change_verdicts():
    baseline = _record(0, [0.05] * 10)
    rose = alignment_change([baseline, _record(50, [0.15] * 10)], PAIR)
    assert rose["verdict"].startswith("alignment ROSE") and rose["delta"] == pytest.approx(0.10)
    assert rose["layers_rose"] == 10 and rose["sign_test_p"] < 0.01
    flat = alignment_change([baseline, _record(50, [0.05, 0.06] * 5)], PAIR)
    assert flat["verdict"].startswith("alignment did NOT move")  # +0.005 is below 2/n
    fell = alignment_change([baseline, _record(50, [0.0] * 10)], PAIR)
    assert fell["verdict"].startswith("alignment FELL")
    assert "fewer than two" in alignment_change([baseline], PAIR)["verdict"]


def test_summary_lines_one_row_per_measurement():
    records = [_record(0, [0.1, 0.3], chrf=20.0), _record(10, [0.2, 0.1])]
    lines = summary_lines(records, PAIR)
    assert len(lines) == 4 and "step" in lines[0]
    assert " 1: 0.300" in lines[2] and "20.0" in lines[2]
    assert " 0: 0.200" in lines[3]


# ----- recipes end to end --------------------------------------------------------------------------------------------------
def test_demo_end_to_end_tiny(model_dir, tmp_path):
    """The demo as users run it (its own process, W&B offline), on a tiny model for two steps."""
    import os
    import subprocess

    out = tmp_path / "demo"
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    env.pop("WANDB_DIR", None)  # the demo puts its W&B run inside --output-dir
    completed = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "demo.py"),
            "--model",
            str(model_dir),
            "--steps",
            "2",
            "--eval-steps",
            "1",
            "--num-pairs",
            "8",
            "--quality-pairs",
            "4",
            "--max-new-tokens",
            "4",
            "--batch-size",
            "4",
            "--output-dir",
            str(out),
            "--started-at",
            str(time.time() - 30),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = _records(out)
    assert [r["step"] for r in records] == [0, 1, 2]
    # Length-bucketed batches; the time before the demo (make's .venv set-up) counts in its budget.
    assert "length-bucketed batches in random order" in completed.stdout
    assert "since `make demo` started" in completed.stdout
    assert all(len(r["pairs"][PAIR]["nasca"]) == 2 for r in records)
    # chrF at the first, middle and last measurement (default quality_every = (steps // eval_steps) // 2), on 4 pairs
    assert [PAIR in (r.get("quality") or {}) for r in records] == [True, True, True]
    assert len(records[0]["quality"][PAIR]["translations"]) == 4
    # NTREX-128 by default, the eng-deu control pair measured for alignment only, prompted zero-shot in the
    # training format, the copy rate next to chrF.
    assert records[0]["data"]["origin"].startswith("NTREX-128 lines 1-100")
    assert all(set(r["pairs"]) == {PAIR, "eng_Latn-deu_Latn"} for r in records)
    assert set(records[0]["quality"]) == {PAIR}
    quality = records[0]["quality"][PAIR]
    assert quality["copies"] == 0 and quality["fewshot"]["ids"] == [] and quality["copy_policy"] == "scored as empty"
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["steps_done"] == 2 and summary["wall_seconds"] > 0 and summary["seconds_before_demo"] >= 30
    assert summary["alignment_change"]["final_step"] == 2
    assert summary["control_alignment_change"]["final_step"] == 2 and summary["cpu_seconds"] > 0
    # The verdict is the paired test over the 8 sentences (the records carry each sentence's verdicts).
    assert summary["alignment_change"]["method"] in ("exact", "no_change") and summary["alignment_change"]["n"] == 8
    assert "(paired p=" in completed.stdout and "sign-flip test" in completed.stdout
    assert (out / "neuronxa" / "report" / "report.md").is_file()
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb")), "W&B offline run missing"
    # trackio too (inside the run directory), and the last line is the command that opens its dashboard.
    assert (out / "trackio" / "neuronxa-demo.db").is_file()
    # Progress while it runs: one line per measurement, and no whole-dict lines of the Trainer's printer.
    assert [line.split(":")[0] for line in completed.stdout.splitlines() if line.startswith("NeuronXA step ")] == [
        "NeuronXA step 0",
        "NeuronXA step 1",
        "NeuronXA step 2",
    ]
    assert "{'eval_neuronxa" not in completed.stdout and "/layer_" not in completed.stdout
    assert completed.stdout.strip().splitlines()[-1].endswith("trackio show --project neuronxa-demo")
    assert f"TRACKIO_DIR={out / 'trackio'}" in completed.stdout.strip().splitlines()[-1]
    # the printed table: one row per measurement, then the paths
    assert "step  nasca mean" in completed.stdout and "JSONL:" in completed.stdout and "W&B:" in completed.stdout
    assert "eng_Latn-deu_Latn (control pair)" in completed.stdout and "copies" in completed.stdout


def test_qlora_recipe_tiny(model_dir, tmp_path, capsys):
    qlora = _load("qlora_en_is")
    out = tmp_path / "qlora"
    assert qlora.main(["--model", str(model_dir), "--tiny", "--no-4bit", "--no-wandb", "--output-dir", str(out)]) == 0
    records = _records(out)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all("early_stopping" in r for r in records)
    assert records[0]["quality"][PAIR]["chrf"] is not None and records[0]["data"]["ids"][:1]
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "neuronxa" / "report" / "report.md").is_file()


def test_continued_pretraining_recipe_tiny(model_dir, tmp_path):
    cpt = _load("continued_pretraining")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(["Fljótið rennur hægt í gegnum dalinn og börnin leika sér á bakkanum á sumrin."] * 20),
        encoding="utf-8",
    )
    out = tmp_path / "cpt"
    code = cpt.main(
        [
            "--model",
            str(model_dir),
            "--text-data",
            str(corpus),
            "--steps",
            "2",
            "--eval-steps",
            "1",
            "--batch-size",
            "2",
            "--block-size",
            "16",
            "--num-eval-pairs",
            "8",
            "--no-wandb",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    records = _records(out)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert (out / "adapter" / "adapter_config.json").is_file()
    with pytest.raises(SystemExit, match="no .txt files"):
        cpt.main(["--model", str(model_dir), "--text-data", str(tmp_path / "cpt"), "--output-dir", str(out)])


def test_qlora_recipe_4bit_on_cpu(tmp_path):
    """The real QLoRA path (bitsandbytes nf4 + prepare_model_for_kbit_training) on CPU. Hidden size 64: bitsandbytes'
    CPU kernels quantize in blocks of 64, so the 32-wide tiny model of the other tests cannot be loaded in 4-bit."""
    pytest.importorskip("bitsandbytes")
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model_dir = tmp_path / "tiny64"
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    qlora = _load("qlora_en_is")
    out = tmp_path / "qlora4"
    assert qlora.main(["--model", str(model_dir), "--tiny", "--no-wandb", "--output-dir", str(out)]) == 0
    assert [r["step"] for r in _records(out)] == [0, 1, 2]
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter_config["r"] == 16 and adapter_config["peft_type"] == "LORA"


def test_time_budget_counts_the_scheduled_measurement_of_the_next_step_only(monkeypatch, tmp_path):
    """A step's cost is its training plus a measurement only when the callback's schedule has one there: counting a
    measurement step's duration as the cost of every step stopped `make demo` at step 35 of 40 with minutes left."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from neuronxa_callback import NeuronXACallback

    clock = [1000.0]
    monkeypatch.setattr(common, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text(json.dumps({"step": 0, "timing": {"alignment_seconds": 25.0}}) + "\n")  # 30 s with the margin
    neuronxa = NeuronXACallback(eval_steps=2, quality_every=0)
    neuronxa.measurement_index = 1
    guard = common.make_time_budget_callback(1100.0, final_reserve_seconds=10, neuronxa=neuronxa, jsonl_path=jsonl)
    guard.before_train = 980.0
    state, control = TrainerState(max_steps=100), TrainerControl()
    guard.on_train_begin(None, state, control)

    def step(number: int, train_seconds: float, measure_seconds: float) -> bool:
        guard.on_step_begin(None, state, control)
        clock[0] += train_seconds
        guard.on_optimizer_step(None, state, control)
        clock[0] += measure_seconds  # the callback measures in on_step_end, before the guard's
        state.global_step = number
        return guard.on_step_end(None, state, control).should_training_stop

    assert not step(1, 5, 0)  # 95 s left: next step 5 + its measurement 30, then the final 30 + 10
    assert not step(2, 5, 30)  # 60 s left: step 3 has no measurement (5), final 30 + 10
    assert step(3, 5, 0) and guard.stopped_at == 3  # 55 s left: step 4 (5 + 30) and the final (40) do not fit


def test_demo_budget_counts_from_started_at(model_dir, tmp_path):
    """`make demo` passes its own start: time spent before the demo (the .venv set-up) comes out of the 15 minutes.
    Started 14 minutes ago with a 14-minute budget, the demo stops after one step and still writes its report."""
    import os
    import subprocess

    out = tmp_path / "late"
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "demo.py"),
            "--model",
            str(model_dir),
            "--steps",
            "6",
            "--eval-steps",
            "3",
            "--num-pairs",
            "8",
            "--quality-pairs",
            "4",
            "--max-new-tokens",
            "4",
            "--batch-size",
            "4",
            "--no-wandb",
            "--no-trackio",
            "--output-dir",
            str(out),
            "--started-at",
            str(time.time() - 14 * 60),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["steps_done"] == 1 and summary["stopped_by_time_budget"] == 1
    assert summary["seconds_before_demo"] >= 14 * 60
    assert [r["step"] for r in _records(out)] == [0, 1]


def test_length_bucketed_order_pads_less_without_favouring_long_examples():
    import random
    import statistics

    rng = random.Random(1)
    lengths = [rng.randint(20, 128) for _ in range(4000)]
    order = common.length_bucketed_order(lengths, batch_size=8, seed=0)
    assert sorted(order) == list(range(len(lengths)))

    def padded(indices):
        return sum(max(lengths[i] for i in indices[k : k + 8]) * 8 for k in range(0, 320, 8))  # the first 40 batches

    shuffled = list(range(len(lengths)))
    rng.shuffle(shuffled)
    assert padded(order) < 0.8 * padded(shuffled)
    # The first 40 batches are a random sample: their mean length is the data's, not the longest examples'.
    first = [lengths[i] for i in order[:320]]
    assert abs(statistics.mean(first) - statistics.mean(lengths)) < 5
    # ... and the batches come in random order, not sorted.
    batch_maxima = [max(first[k : k + 8]) for k in range(0, 320, 8)]
    assert batch_maxima != sorted(batch_maxima) and batch_maxima != sorted(batch_maxima, reverse=True)
    assert common.length_bucketed_order(lengths, batch_size=8, seed=0) == order


def test_length_bucketed_order_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        common.length_bucketed_order([3, 4], batch_size=0)


def test_training_examples_use_the_prompt_format_the_callback_translates_with():
    from neuronxa_callback.quality.prompts import build_prompt

    ((prompt, completion),) = common.translation_examples(
        [("Hello.", "Halló.")], source_lang="eng_Latn", target_lang="isl_Latn", directions="tgt2src"
    )
    assert (prompt, completion) == ("Icelandic: Halló.\nEnglish:", " Hello.")
    assert prompt == build_prompt("Halló.", source_lang="isl_Latn", target_lang="eng_Latn", prompt="auto")
