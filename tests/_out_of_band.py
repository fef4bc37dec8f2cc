"""Shared by the out-of-band tests: a plain training loop driving AlignmentMonitor on a tiny model (plain or LoRA),
and what of a record legitimately differs between in-process and out-of-band measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuronxa_callback import AlignmentMonitor
from neuronxa_callback.sinks.jsonl import read_jsonl
from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer
from tests._runs import FAST

SETTINGS = dict(data="bundled", eval_steps=1, quality_every=2, strict=True, **FAST)
WORKER = dict(measure_in="worker", worker_threads=1)
# What legitimately differs between an in-process and an out-of-band record of the same weights.
_RUN_SPECIFIC = ("time", "timing", "settings")


def tiny_run_model(kind: str):
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    if kind == "peft":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    return model, tokenizer


def train_step(model, step: int) -> None:
    """A deterministic stand-in for an optimizer step: every trainable weight moves (LoRA B leaves zero)."""
    import torch

    generator = torch.Generator().manual_seed(step)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def run_loop(output_dir: Path, kind: str = "plain", steps: int = 3, on_submit=None, **settings) -> tuple[list, Any]:
    model, tokenizer = tiny_run_model(kind)
    monitor = AlignmentMonitor(**{**SETTINGS, **settings})
    monitor.begin(model, tokenizer, output_dir=output_dir)
    monitor.measure(model, tokenizer, step=0, trigger="train_begin")
    for step in range(1, steps + 1):
        train_step(model, step)
        if monitor.due(step):
            monitor.measure(model, tokenizer, step=step)
            if on_submit is not None:
                on_submit(monitor, step)
    monitor.end(model, tokenizer, step=steps)
    return read_jsonl(Path(output_dir) / "neuronxa" / "metrics.jsonl"), monitor


def comparable(record: dict) -> dict:
    out = {key: value for key, value in record.items() if key not in _RUN_SPECIFIC}
    if "early_stopping" in out:
        out["early_stopping"] = {k: v for k, v in out["early_stopping"].items() if k != "applied_at_step"}
    return out
