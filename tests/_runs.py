"""Tiny Hugging Face Trainer runs for the tests: a seeded tiny Llama on the tiny corpus, and the records it leaves."""

from __future__ import annotations

from pathlib import Path

from neuronxa_callback.sinks.jsonl import read_jsonl
from neuronxa_callback.testing.tiny import CorpusDataset, tiny_model, tiny_tokenizer

PAIR = "eng_Latn-isl_Latn"
# Small and quick: 8 bundled pairs, short inputs, few new tokens.
FAST = dict(num_pairs=8, batch_size=8, max_length=48, max_new_tokens=4, num_fewshot=1)


def make_trainer(
    output_dir: Path,
    callbacks=(),
    *,
    max_steps: int = 4,
    learning_rate: float = 5e-3,
    dropout: float = 0.0,
    with_eval: bool = False,
    model=None,
    **training_args,
):
    """A Trainer on a fresh tiny Llama (seeded, so two calls give identical runs)."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tokenizer = tiny_tokenizer()
    if model is None:
        model = tiny_model("llama", tokenizer=tokenizer, seed=0)
        for layer in model.model.layers:  # dropout makes any stolen RNG draw visible in the losses
            layer.self_attn.attention_dropout = dropout
        model.train()
    defaults = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=learning_rate,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    defaults.update(training_args)
    args = TrainingArguments(**defaults)
    dataset = CorpusDataset(tokenizer)
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=CorpusDataset(tokenizer, 1) if with_eval else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )


def records_of(output_dir: Path) -> list[dict]:
    return read_jsonl(Path(output_dir) / "neuronxa" / "metrics.jsonl")
