"""Helpers shared by the recipes (demo.py, qlora_en_is.py, continued_pretraining.py): data shaping, adapters, a wall-time
guard and the end-of-run summary table. Kept small on purpose: each recipe still reads top to bottom.

    from _common import translation_examples, TokenizedTexts, CausalLMCollator, apply_lora, summary_lines

Recipes import this module as a sibling (``sys.path`` holds the script's own directory when run as a script).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuronxa_callback.quality.prompts import training_example

logger = logging.getLogger("neuronxa.recipes")


def language_name(code: str) -> str:
    """'isl_Latn' -> 'Icelandic' (the words the few-shot prompts use, so training and measuring read alike)."""
    from neuronxa_callback.quality.prompts import language_name as _name

    return _name(code)


def translation_examples(
    pairs: Sequence[tuple[str, str]],
    *,
    source_lang: str,
    target_lang: str,
    directions: str = "both",
    seed: int = 0,
) -> list[tuple[str, str]]:
    """(prompt, completion) training examples from (source, target) pairs, in the few-shot prompt format:
    ("English: <en>\nIcelandic:", " <is>"). directions: "both" (each pair twice, target-first too; shuffled),
    "src2tgt" or "tgt2src". Both directions matter for alignment: sequences where the new language comes first are
    the ones that moved eng-isl NASCA in the demo runs."""
    if directions not in ("both", "src2tgt", "tgt2src"):
        raise ValueError(f"directions must be 'both', 'src2tgt' or 'tgt2src', got {directions!r}")
    if not pairs:
        raise ValueError("translation_examples: no training pairs")
    examples = []
    for source, target in pairs:
        if directions in ("both", "src2tgt"):
            examples.append(training_example(source, target, source_lang=source_lang, target_lang=target_lang))
        if directions in ("both", "tgt2src"):
            examples.append(training_example(target, source, source_lang=target_lang, target_lang=source_lang))
    random.Random(seed).shuffle(examples)
    return examples


class TokenizedTexts:
    """A map-style dataset of {"input_ids", "labels"} rows: each example tokenized (with BOS), EOS appended, cut to
    max_length. Examples are strings or (prompt, completion) pairs; completion_only=True masks the prompt's tokens
    out of the loss (supervised fine-tuning as in LLaMA-Factory), False trains on the whole sequence."""

    def __init__(
        self,
        tokenizer: Any,
        examples: Sequence[str | tuple[str, str]],
        *,
        max_length: int,
        completion_only: bool = False,
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        eos = tokenizer.eos_token_id
        texts = [e if isinstance(e, str) else e[0] + e[1] for e in examples]
        encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length - 1)["input_ids"]
        prompt_lengths = [0] * len(texts)
        if completion_only:
            prompts = [e[0] if not isinstance(e, str) else "" for e in examples]
            prompt_lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]
        self.rows = []
        for ids, prompt_length in zip(encoded, prompt_lengths):
            ids = ids + [eos] if eos is not None else ids
            labels = [-100] * min(prompt_length, len(ids)) + ids[prompt_length:]
            self.rows.append({"input_ids": ids, "labels": labels})
        self.truncated = sum(len(ids) >= max_length - 1 for ids in encoded)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]

    def bucket_by_length(self, *, batch_size: int, seed: int = 0) -> TokenizedTexts:
        """Reorder the rows in place (see length_bucketed_order); train on them with sequential sampling."""
        order = length_bucketed_order([len(row["input_ids"]) for row in self.rows], batch_size=batch_size, seed=seed)
        self.rows = [self.rows[i] for i in order]
        return self


def length_bucketed_order(
    lengths: Sequence[int], *, batch_size: int, bucket_batches: int = 8, seed: int = 0
) -> list[int]:
    """An order of the examples for sequential batching with little padding and no bias: shuffle, cut into buckets of
    `bucket_batches` batches, sort each bucket by length, cut it into batches, shuffle the batches. Each batch holds
    examples of similar length, and the first k batches are still a random sample of the data. (transformers'
    group_by_length sorts megabatches of 50 batches longest-first: a 40-step run would train on long sequences only.)"""
    if batch_size < 1 or bucket_batches < 1:
        raise ValueError(f"batch_size and bucket_batches must be >= 1, got {batch_size} and {bucket_batches}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), bucket):
        members = sorted(order[start : start + bucket], key=lambda i: lengths[i])
        batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    rng.shuffle(batches)
    return [index for batch in batches for index in batch]


class PackedBlocks:
    """Continued-pretraining dataset: all texts tokenized, joined with EOS, cut into fixed blocks of block_size tokens."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], *, block_size: int, max_blocks: int | None = None) -> None:
        if block_size < 2:
            raise ValueError(f"block_size must be >= 2, got {block_size}")
        eos = tokenizer.eos_token_id
        stream: list[int] = []
        for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
            stream.extend(ids + ([eos] if eos is not None else []))
            if max_blocks is not None and len(stream) >= block_size * max_blocks:
                break
        count = len(stream) // block_size
        if max_blocks is not None:
            count = min(count, max_blocks)
        if count == 0:
            raise ValueError(f"the text gives {len(stream)} tokens, fewer than one block of {block_size}")
        self.rows = [stream[i * block_size : (i + 1) * block_size] for i in range(count)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.rows[index]}


class CausalLMCollator:
    """Pads a batch on the right to its longest row; labels are the rows' "labels" (default: the input ids), -100 on
    padding so it never counts in the loss."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(row["input_ids"]) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, row in enumerate(rows):
            ids = torch.tensor(row["input_ids"], dtype=torch.long)
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
            labels[i, : len(ids)] = torch.tensor(row.get("labels", row["input_ids"]), dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def apply_lora(
    model: Any, *, rank: int, alpha: float, dropout: float = 0.0, target_modules: str | Sequence[str] = "all-linear"
):
    """Wrap `model` with a PEFT LoRA adapter (all linear layers but the LM head by default) and return it."""
    from peft import LoraConfig, get_peft_model

    if isinstance(target_modules, str) and target_modules != "all-linear":
        target_modules = [name.strip() for name in target_modules.split(",") if name.strip()]
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def train_mlp_only(model: Any) -> int:
    """Freeze everything except the feed-forward (MLP) weights of the decoder layers; return the trainable count.

    Full fine-tuning of the MLP weights gave the steadiest eng-isl NASCA rise in the demo runs,
    which fits NeuronXA: it reads the MLP neurons' activations."""
    trainable = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad = ".mlp." in f".{name}."
        trainable += parameter.numel() if parameter.requires_grad else 0
    if trainable == 0:
        raise ValueError("train_mlp_only: no parameter name contains '.mlp.'; use LoRA for this architecture")
    return trainable


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def make_time_budget_callback(
    deadline: float, *, final_reserve_seconds: float, neuronxa: Any = None, jsonl_path: str | Path | None = None
):
    """A TrainerCallback that stops training early enough that the final measurement and the report still finish
    before `deadline` (a time.monotonic() value). List it AFTER NeuronXACallback: its on_train_begin then runs after
    the baseline measurement, whose duration it takes as the cost of a measurement that translates. With `neuronxa`
    (the callback) and `jsonl_path` (its metrics.jsonl) it also knows the callback's schedule and what a measurement
    without translations costs (the baseline's alignment_seconds), so it budgets each step as what it will cost:
    the training step, plus a measurement when the step is on the schedule."""
    from transformers import TrainerCallback

    class TimeBudgetCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stopped_at: int | None = None
            self.before_train = None
            self._baseline_seconds = 0.0
            self._alignment_seconds = None
            self._step_began = None
            self._last_step_end = 0.0
            self._train_step_seconds = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            now = time.monotonic()
            self._baseline_seconds = now - (self.before_train if self.before_train is not None else now)
            self._alignment_seconds = _baseline_alignment_seconds(jsonl_path)
            self._last_step_end = now
            return control

        def on_step_begin(self, args, state, control, **kwargs):
            self._step_began = time.monotonic()
            return control

        def on_optimizer_step(self, args, state, control, **kwargs):
            # Forward, backward and optimizer only: the callback measures later, in on_step_end. The slowest step so
            # far bounds what the next one may cost (batches differ in length).
            if self._step_began is not None:
                self._train_step_seconds = max(self._train_step_seconds, time.monotonic() - self._step_began)
            return control

        def _measurement_cost(self, *, translates: bool) -> float:
            if neuronxa is None or self._alignment_seconds is None or translates:
                return self._baseline_seconds
            return self._alignment_seconds

        def _final_cost(self) -> float:
            # The callback's last measurement (at train end, after this guard stops training) always translates when
            # quality is on, whatever the schedule: only a run without quality can count on alignment alone. (Counting
            # on the schedule let `make demo` overrun its 12-minute budget by 3 minutes on a loaded machine.)
            return self._measurement_cost(translates=neuronxa is None or bool(neuronxa.settings.quality_every))

        def _next_step_cost(self, step: int, max_steps: int) -> float:
            """The training step after `step`, plus the measurement the callback will make there, if any (at
            max_steps that measurement is the final one, already counted)."""
            train = self._train_step_seconds or (time.monotonic() - self._last_step_end)
            if neuronxa is None:
                return train
            schedule, upcoming = neuronxa.monitor.schedule, step + 1
            if not schedule.measures_at(upcoming) or (0 < max_steps <= upcoming):
                return train
            return train + self._measurement_cost(translates=schedule.translates(neuronxa.monitor.measurement_index))

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            self._last_step_end = now
            left = deadline - now
            need = self._final_cost() + final_reserve_seconds
            if left < need + self._next_step_cost(state.global_step, state.max_steps):
                control.should_training_stop = True
                self.stopped_at = state.global_step
                logger.warning(
                    "time budget: stopping at step %d (%.0f s left, the final measurement needs ~%.0f s)",
                    state.global_step,
                    left,
                    need,
                )
            return control

    return TimeBudgetCallback()


def _baseline_alignment_seconds(jsonl_path: str | Path | None) -> float | None:
    """alignment_seconds of the first record in a NeuronXA metrics.jsonl, or None if it cannot be read."""
    if jsonl_path is None:
        return None
    try:
        import json

        with open(jsonl_path, encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        return float(first["timing"]["alignment_seconds"]) * 1.2  # a margin: load varies between measurements
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_wandb_run_dir(wandb_dir: Path) -> Path | None:
    """The newest W&B offline run directory under <wandb_dir>/wandb/, if any."""
    runs = sorted((wandb_dir / "wandb").glob("offline-run-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None
