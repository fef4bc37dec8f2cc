"""A tiny Lightning fine-tuning run for the NeuronXALightningCallback tests (CPU, seconds).

Usage::

    from tests._lightning_run import fit

    trainer, module = fit(tmp_path, [NeuronXALightningCallback(eval_steps=2, **FAST)], max_steps=4)

The LightningModule holds the tiny Llama of neuronxa_callback/testing/tiny.py as ``self.model`` and its tokenizer as
``self.tokenizer``, the layout the callback expects by default. Data: the tiny corpus, in order (no shuffling), so
two runs from the same seed train identically and a resumed run continues exactly where a checkpoint left off.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from neuronxa_callback.hosts.lightning import pl  # the Lightning package the callback derives from
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer


class TinyCausalLM(pl.LightningModule):
    def __init__(self, learning_rate: float = 5e-3, seed: int = 0) -> None:
        super().__init__()
        self.tokenizer = tiny_tokenizer()
        self.model = tiny_model("llama", tokenizer=self.tokenizer, seed=seed)
        self.model.train()
        self.learning_rate = learning_rate

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.model(**batch).loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate)


def loader(tokenizer, repeat: int = 2, batch_size: int = 4) -> DataLoader:
    def collate(sentences):
        batch = tokenizer(sentences, return_tensors="pt", padding=True, truncation=True, max_length=24)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return dict(batch)

    return DataLoader(corpus_sentences() * repeat, batch_size=batch_size, shuffle=False, collate_fn=collate)


def fit(
    root: Path,
    callbacks,
    *,
    max_steps: int = 4,
    learning_rate: float = 5e-3,
    loggers=None,
    ckpt_path=None,
    with_validation: bool = False,
    module: TinyCausalLM | None = None,
    **trainer_args,
):
    """Train a fresh (seeded) TinyCausalLM with `callbacks`; returns (trainer, module)."""
    pl.seed_everything(0, verbose=False)
    module = module or TinyCausalLM(learning_rate=learning_rate)
    defaults = dict(
        default_root_dir=str(root),
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=loggers or False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    defaults.update(trainer_args)
    if not with_validation:
        defaults.setdefault("limit_val_batches", 0)
    trainer = pl.Trainer(callbacks=list(callbacks), **defaults)
    tokenizer = tiny_tokenizer()  # the module's own may be absent (a test passes it to the callback instead)
    val = loader(tokenizer, repeat=1) if with_validation else None
    trainer.fit(module, train_dataloaders=loader(tokenizer), val_dataloaders=val, ckpt_path=ckpt_path)
    return trainer, module
