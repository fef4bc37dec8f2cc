"""Benchmark: NeuronXACallback's share of wall time in a short LoRA run on Gemma 3 270M (CPU).

Usage::

    .venv/bin/python bench/bench_callback.py                      # 20 steps, batch 4, seq 64, eval_steps=10
    .venv/bin/python bench/bench_callback.py --steps 40 --eval-steps 20 --num-pairs 50

Trains LoRA (r=8 on q/v) on the bundled English-Icelandic training pairs with NeuronXACallback (chrF only,
quality_every=2 by default) and splits the callback's time into alignment, generation and quality from the JSONL
timing fields. Also extrapolates to the callback's default schedule (eval_steps=50) from the measured per-step
and per-measurement costs. Prints `name: value` lines, headline (total share) last.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--quality-every", type=int, default=2)
    parser.add_argument("--num-pairs", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--default-eval-steps", type=int, default=50, help="schedule to extrapolate to")
    parser.add_argument("--output-dir", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    options = parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from neuronxa_callback.callback import NeuronXACallback
    from neuronxa_callback.data import load_training_pairs
    from neuronxa_callback.loggers import read_jsonl
    from neuronxa_callback.models import load_model_and_tokenizer, prepare_for_training

    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
    load_seconds = time.perf_counter() - started
    model = prepare_for_training(model)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    pairs = load_training_pairs("bundled")
    texts = [f"Icelandic: {isl}\nEnglish: {eng}" for eng, isl in pairs]
    encoded = [tokenizer(t, truncation=True, max_length=options.seq_len)["input_ids"] for t in texts]

    class Examples(torch.utils.data.Dataset):
        def __len__(self):
            return len(encoded)

        def __getitem__(self, i):
            return {"input_ids": encoded[i]}

    output_dir = Path(options.output_dir or tempfile.mkdtemp(prefix="neuronxa-bench-"))
    callback = NeuronXACallback(eval_steps=options.eval_steps, quality_every=options.quality_every,
                                quality_metrics=("chrf",), num_pairs=options.num_pairs,
                                max_new_tokens=options.max_new_tokens)
    args = TrainingArguments(output_dir=str(output_dir), max_steps=options.steps,
                             per_device_train_batch_size=options.batch_size, learning_rate=1e-3, logging_steps=5,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=Examples(), processing_class=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[callback])
    started = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - started

    records = read_jsonl(output_dir / "neuronxa" / "metrics.jsonl")
    alignment = sum(r["timing"]["alignment_seconds"] for r in records)
    generation = sum(r["timing"]["generation_seconds"] for r in records)
    quality = sum(r["timing"]["quality_seconds"] for r in records)
    callback_seconds = alignment + generation + quality
    training = total - callback_seconds
    step_seconds = training / options.steps
    quality_records = [r for r in records if "quality" in r]
    per_alignment = alignment / len(records)
    per_translation = (generation + quality) / max(1, len(quality_records))

    # Extrapolation: one measurement every `default_eval_steps` steps, translations every quality_every-th.
    every = options.default_eval_steps
    window_train = every * step_seconds
    window_align = per_alignment
    window_quality = per_translation / options.quality_every if options.quality_every else 0.0
    window_total = window_train + window_align + window_quality

    pair = next(iter(records[0]["pairs"]))
    lines = {
        "model_load_seconds": load_seconds,
        "train_total_seconds": total,
        "train_steps": options.steps,
        "measurements": len(records),
        "measurements_with_quality": len(quality_records),
        "training_seconds_per_step": step_seconds,
        "alignment_seconds_per_measurement": per_alignment,
        "generation_plus_quality_seconds_per_quality_measurement": per_translation,
        f"nasca_mean_{pair}_first": records[0]["pairs"][pair]["nasca_mean"],
        f"nasca_mean_{pair}_last": records[-1]["pairs"][pair]["nasca_mean"],
        f"chrf_{pair}_first": quality_records[0]["quality"][pair]["chrf"] if quality_records else None,
        "share_alignment": alignment / total,
        "share_generation": generation / total,
        "share_quality": quality / total,
        f"extrapolated_share_alignment_eval_steps_{every}": window_align / window_total,
        f"extrapolated_share_total_eval_steps_{every}": (window_align + window_quality) / window_total,
        "callback_share_total": callback_seconds / total,
    }
    for name, value in lines.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    (output_dir / "bench.json").write_text(json.dumps(lines, indent=1))


if __name__ == "__main__":
    main()
