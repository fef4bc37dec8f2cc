"""Continued pretraining on monolingual text in a new language, with NeuronXA watching its alignment to English.

Launch::

    # hub text (needs network): Icelandic Wikipedia, LoRA on all linear layers
    python recipes/continued_pretraining.py --model meta-llama/Llama-3.2-1B --language isl_Latn \\
        --text-data wikimedia/wikipedia --hub-config 20231101.is --max-documents 200000 --output-dir runs/cpt-is
    # local text files (one document per line, or a directory of .txt files), full fine-tuning
    python recipes/continued_pretraining.py --model gemma-3-270m --text-data corpus_is/ --full --steps 500
    # offline smoke run: the Icelandic side of the bundled training pairs
    python recipes/continued_pretraining.py --model gemma-3-270m --text-data bundled --steps 20 --eval-steps 10

The causal-LM objective on text packed into fixed-length blocks (--block-size tokens, documents joined with EOS), so
no padding is wasted. NeuronXACallback measures NASCA/NAVCA of (pivot, --language) on --eval-data at step 0 and every
--eval-steps steps (and, with --quality-every, chrF of the model's own translations). Whether monolingual text alone
raises cross-lingual alignment is exactly what this run can show: compare its curve with a parallel-data run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - after the sys.path line on purpose
    CausalLMCollator,
    PackedBlocks,
    apply_lora,
    count_parameters,
)

from neuronxa_callback.offline.run_summary import summary_lines  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m", help="embedded name, local directory or hub id")
    parser.add_argument("--hf-token", default=None, help="hub token (default: $HF_TOKEN); never written to outputs")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/continued-pretraining"))
    parser.add_argument("--language", default="isl_Latn", help="the new language (FLORES-200 code)")
    parser.add_argument("--pivot", default="eng_Latn")
    parser.add_argument(
        "--text-data",
        default="bundled",
        help="'bundled' (Icelandic side of the bundled pairs), a text file or directory of .txt files, "
        "or a hub dataset id (with --hub-config)",
    )
    parser.add_argument("--hub-config", default=None, help="dataset config, e.g. 20231101.is for wikimedia/wikipedia")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--max-documents", type=int, default=None)
    parser.add_argument(
        "--eval-data",
        default="ntrex",
        help="parallel data for NeuronXA (ntrex = packaged NTREX-128 lines 1-100, bundled, flores, dir, file)",
    )
    parser.add_argument("--num-eval-pairs", type=int, default=100)
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-alpha", type=float, default=32.0)
    parser.add_argument("--lora-targets", default="all-linear")
    parser.add_argument("--lr", type=float, default=None, help="default 5e-4 (LoRA) / 2e-5 (--full)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--quality-every", type=int, default=0, help="chrF every k-th measurement (0 = never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-wandb", action="store_true")
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = 2e-5 if args.full else 5e-4
    args.hf_token = args.hf_token or os.environ.get("HF_TOKEN") or None
    return args


def load_texts(args) -> list[str]:
    """Monolingual documents from the bundled pairs, local files, or a hub dataset (streamed)."""
    if args.text_data == "bundled":
        from neuronxa_callback import load_training_pairs

        return [target for _, target in load_training_pairs("bundled", args.pivot, args.language)][: args.max_documents]
    path = Path(args.text_data)
    if path.exists():
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise SystemExit(f"--text-data {path}: no .txt files in this directory")
        lines = (line.strip() for file in files for line in file.read_text(encoding="utf-8").splitlines())
        texts = list(itertools.islice((line for line in lines if line), args.max_documents))
        if not texts:
            raise SystemExit(f"--text-data {path}: no text")
        return texts
    from datasets import load_dataset

    try:
        stream = load_dataset(args.text_data, args.hub_config, split="train", streaming=True, token=args.hf_token)
        return [record[args.text_field] for record in itertools.islice(stream, args.max_documents or 100_000)]
    except Exception as error:
        raise SystemExit(
            f"--text-data {args.text_data!r} is not a local path and the hub did not provide it "
            f"({type(error).__name__}: {error}). Offline? Pass a text file or 'bundled'."
        ) from error


def main(argv=None) -> int:
    args = parse_args(argv)
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DIR", str(output_dir))
    os.environ.setdefault("WANDB_PROJECT", "neuronxa-continued-pretraining")

    from transformers import Trainer, TrainingArguments, set_seed

    from neuronxa_callback import NeuronXACallback, write_report
    from neuronxa_callback.data.loaders import normalize_language
    from neuronxa_callback.instrument.models import load_model_and_tokenizer, prepare_for_training
    from neuronxa_callback.sinks.jsonl import read_jsonl

    set_seed(args.seed)
    args.language, args.pivot = normalize_language(args.language), normalize_language(args.pivot)
    texts = load_texts(args)
    model, tokenizer = load_model_and_tokenizer(args.model, token=args.hf_token)
    prepare_for_training(model)
    # Enough blocks for every step; more text than that would only cost tokenization time.
    blocks = PackedBlocks(tokenizer, texts, block_size=args.block_size, max_blocks=args.steps * args.batch_size)
    if args.full:
        model.requires_grad_(True)
    else:
        model = apply_lora(model, rank=args.lora_rank, alpha=args.lora_alpha, target_modules=args.lora_targets)
    trainable, total = count_parameters(model)
    print(
        f"[cpt] {args.model}: {'full' if args.full else f'LoRA r={args.lora_rank}'}, {trainable / 1e6:.2f} M of "
        f"{total / 1e6:.1f} M parameters trainable; {len(texts)} documents -> {len(blocks)} blocks of "
        f"{args.block_size} tokens",
        flush=True,
    )

    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=min(50, args.steps // 10),
        logging_steps=10,
        save_strategy="no",
        report_to=[] if args.no_wandb else ["wandb"],
        run_name=output_dir.name,
        seed=args.seed,
        remove_unused_columns=False,
        disable_tqdm=not sys.stderr.isatty(),
    )
    neuronxa = NeuronXACallback(
        data=args.eval_data,
        languages=[args.language],
        pivot=args.pivot,
        num_pairs=args.num_eval_pairs,
        eval_steps=args.eval_steps,
        quality_every=args.quality_every,
        quality_metrics=["chrf"],
        max_new_tokens=48,
        seed=args.seed,
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=blocks,
        data_collator=CausalLMCollator(pad_id),
        processing_class=tokenizer,
        callbacks=[neuronxa],
    )
    trainer.train()
    trainer.save_model(str(output_dir / ("model" if args.full else "adapter")))

    jsonl = output_dir / "neuronxa" / "metrics.jsonl"
    records = [r for r in read_jsonl(jsonl) if r.get("event", "measurement") == "measurement"]
    report = write_report(output_dir)
    pair = f"{args.pivot}-{args.language}"
    print(f"\nNeuronXA {pair} during continued pretraining:")
    for line in summary_lines(records, pair):
        print("  " + line)
    print(f"\nJSONL:  {jsonl}\nReport: {report['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
