"""NeuronXACallback.attach() on TRL's SFTTrainer (a Trainer subclass), in real tiny runs: a prompt-completion
dataset, a conversational one (the tokenizer's chat template drives TRL's formatting and the callback's translation
prompts), a model given by path and a LoRA adapter made by TRL itself; report_to=[] and TensorBoard."""

from __future__ import annotations

from pathlib import Path

import pytest

trl = pytest.importorskip("trl")

from neuronxa_callback.hosts.trainer import NeuronXACallback  # noqa: E402
from neuronxa_callback.sinks.jsonl import read_jsonl  # noqa: E402
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer  # noqa: E402
from tests._runs import FAST  # noqa: E402

PAIR = "eng_Latn-isl_Latn"
MEAN = f"eval_neuronxa/{PAIR}/nasca_mean"
# A minimal chat template (the tiny tokenizer has none): role-prefixed turns, then the assistant's prefix.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def prompt_completion_dataset():
    from datasets import Dataset

    english, icelandic = corpus_sentences()[:10], corpus_sentences()[10:16]
    return Dataset.from_list([{"prompt": f"Translate: {e}\n", "completion": i} for e, i in zip(english, icelandic)])


def conversational_dataset():
    from datasets import Dataset

    english, icelandic = corpus_sentences()[:10], corpus_sentences()[10:16]
    return Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "user", "content": f"Translate to Icelandic: {e}"},
                    {"role": "assistant", "content": i},
                ]
            }
            for e, i in zip(english, icelandic)
        ]
    )


def sft_trainer(output_dir: Path, dataset, *, model=None, tokenizer=None, max_steps: int = 4, **config):
    from trl import SFTConfig, SFTTrainer

    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    if model is None:
        model = tiny_model("llama", tokenizer=tokenizer, seed=0)
        model.train()
    defaults = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        max_length=48,
    )
    defaults.update(config)
    peft_config = defaults.pop("peft_config", None)
    return SFTTrainer(
        model=model,
        args=SFTConfig(**defaults),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def measured(trainer) -> list[tuple[int, float]]:
    return [(entry["step"], entry[MEAN]) for entry in trainer.state.log_history if MEAN in entry]


def records_of(output_dir: Path) -> list[dict]:
    return read_jsonl(Path(output_dir) / "neuronxa" / "metrics.jsonl")


def test_prompt_completion_sft_run_is_measured_and_trains_as_without_the_callback(tmp_path):
    import torch

    def run(name, attach):
        trainer = sft_trainer(tmp_path / name, prompt_completion_dataset(), bf16=False)
        callback = NeuronXACallback(eval_steps=2, **FAST).attach(trainer) if attach else None
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        return trainer, callback, losses

    plain, _, plain_losses = run("plain", attach=False)
    trainer, callback, losses = run("measured", attach=True)
    records = records_of(tmp_path / "measured")
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    assert measured(trainer) == [(r["step"], pytest.approx(r["pairs"][PAIR]["nasca_mean"])) for r in records]
    # The callback leaves TRL's training alone: same losses, same weights.
    assert losses == plain_losses and len(losses) == 4
    assert all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), trainer.model.parameters()))


def test_trl_train_metrics_stay_on_the_loss_entries(tmp_path):
    trainer = sft_trainer(tmp_path, prompt_completion_dataset(), bf16=False)
    NeuronXACallback(eval_steps=2, **FAST).attach(trainer)
    trainer.train()
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all("mean_token_accuracy" in entry for entry in losses)
    assert not any("mean_token_accuracy" in entry for entry in trainer.state.log_history if MEAN in entry)


def test_conversational_sft_run_from_a_model_path_reports_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    model_dir = tmp_path / "tiny-llama"
    tiny_model("llama", tokenizer=tokenizer, seed=0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    # TRL's defaults as a user gets them (bf16 autocast on CPU, gradient checkpointing); TRL loads the model by path.
    trainer = sft_trainer(
        tmp_path / "out", conversational_dataset(), model=str(model_dir), tokenizer=tokenizer, report_to=["tensorboard"]
    )
    assert trainer.args.bf16 and trainer.args.gradient_checkpointing
    NeuronXACallback(eval_steps=2, quality_every=2, **FAST).attach(trainer)
    trainer.train()
    records = records_of(tmp_path / "out")
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    assert ["quality" in r for r in records] == [True, False, True]
    from neuronxa_callback.quality.prompts import resolve_style

    # prompt="auto" translates through the chat template of the tokenizer TRL hands to the callback.
    assert records[0]["settings"]["prompt"] == "auto" and resolve_style("auto", trainer.processing_class) == "chat"
    assert len(records[0]["quality"][PAIR]["translations"]) == FAST["num_pairs"]
    assert measured(trainer) == [(r["step"], pytest.approx(r["pairs"][PAIR]["nasca_mean"])) for r in records]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    events = accumulator.Scalars(f"eval/neuronxa/{PAIR}/nasca_mean")
    assert [e.step for e in events] == [0, 2, 4]
    assert [e.value for e in events] == pytest.approx([r["pairs"][PAIR]["nasca_mean"] for r in records])
    assert "train/loss" in accumulator.Tags()["scalars"]


def test_lora_adapter_made_by_trl_is_measured(tmp_path):
    from peft import LoraConfig

    trainer = sft_trainer(
        tmp_path,
        prompt_completion_dataset(),
        bf16=False,
        max_steps=2,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    assert type(trainer.model).__name__.startswith("Peft")
    NeuronXACallback(eval_steps=1, **FAST).attach(trainer)
    trainer.train()
    records = records_of(tmp_path)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(r["pairs"][PAIR]["num_layers"] == 2 for r in records)
