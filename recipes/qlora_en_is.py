"""QLoRA fine-tuning on English<->X parallel data with NeuronXA monitoring: the paper's Appendix B set-up.

Launch (GPU; the hub for model and data; W&B online if logged in)::

    python recipes/qlora_en_is.py --model meta-llama/Llama-3.1-8B --train-data nllb --num-train-pairs 1000000 \\
        --eval-data flores --output-dir runs/llama31-en-is --hf-token $HF_TOKEN
    python recipes/qlora_en_is.py --target-lang fao_Latn --train-data pairs.tsv      # any other language
    # CPU smoke run, no network: a local model directory, a few steps on the bundled sample (--no-4bit: no bitsandbytes)
    python recipes/qlora_en_is.py --model ./tiny-llama --tiny --no-4bit --output-dir /tmp/qlora-smoke

Huang et al. (2025, App. B) fine-tuned with 4-bit quantized LoRA on 1 M English-Icelandic NLLB pairs (1:1 in both
directions) and correlated NASCA with COMET (r = 0.96) and CometKiwi (r = 0.93) across steps. This recipe: loads any
causal LM in 4-bit nf4 (bitsandbytes; bf16 compute), prepare_model_for_kbit_training, attaches a peft LoRA adapter,
trains on prompt -> translation examples in both directions with the loss on the translation only, and attaches
NeuronXACallback with COMET + CometKiwi (names or local checkpoint dirs) and plateau early stopping on NASCA.
Training data: "nllb" (allenai/nllb via datasets, streaming), "bundled" (the packaged en-is pairs), a .tsv/.jsonl file or
an NTREX-128 directory. Evaluation data: "flores" (FLORES+ devtest from the hub, gated: --hf-token), "bundled", or a path.
The token is passed to the hub only and never written to any output.
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
    TokenizedTexts,
    apply_lora,
    count_parameters,
    find_wandb_run_dir,
    translation_examples,
)

from neuronxa_callback.offline.run_summary import summary_lines  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="meta-llama/Llama-3.1-8B",
        help="hub id, local directory, or an embedded name (gemma-3-270m, smollm2-135m)",
    )
    parser.add_argument("--hf-token", default=None, help="hub token for gated models/data (default: $HF_TOKEN)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/qlora-en-is"))
    parser.add_argument("--source-lang", default="eng_Latn")
    parser.add_argument("--target-lang", default="isl_Latn", help="the other language (FLORES-200 code)")
    parser.add_argument("--train-data", default="nllb", help="nllb | bundled | a .tsv/.jsonl file | an NTREX-128 dir")
    parser.add_argument("--nllb-dataset", default="allenai/nllb", help="hub dataset for --train-data nllb")
    parser.add_argument("--num-train-pairs", type=int, default=None, help="use the first N pairs (default: all)")
    parser.add_argument("--eval-data", default="flores", help="flores | bundled | a FLORES-200/NTREX dir | .tsv/.jsonl")
    parser.add_argument("--num-eval-pairs", type=int, default=100)
    parser.add_argument("--directions", choices=["both", "src2tgt", "tgt2src"], default="both")
    parser.add_argument(
        "--no-4bit",
        dest="four_bit",
        action="store_false",
        help="load the model unquantized (CPU runs without bitsandbytes, embedded GGUF models)",
    )
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-alpha", type=float, default=32.0)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--lora-targets", default="all-linear")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (max_steps)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--eval-steps", type=int, default=100, help="NeuronXA measurement every k steps")
    parser.add_argument("--quality-every", type=int, default=1, help="translate + COMET every k-th measurement")
    parser.add_argument("--comet-model", default="Unbabel/wmt22-comet-da", help="name or local dir; 'none' = off")
    parser.add_argument(
        "--cometkiwi-model", default="Unbabel/wmt22-cometkiwi-da", help="name or local dir; 'none' = off"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--patience", type=int, default=5, help="plateau early stopping on NASCA (0 = off)")
    parser.add_argument("--min-delta", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument(
        "--deepspeed",
        default=None,
        metavar="JSON",
        help="DeepSpeed config file (e.g. ZeRO-3), passed to TrainingArguments(deepspeed=...)",
    )
    parser.add_argument(
        "--fsdp", default="", help='FSDP options for TrainingArguments(fsdp=...), e.g. "full_shard auto_wrap"'
    )
    parser.add_argument("--wandb-project", default="neuronxa-qlora")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="CPU smoke configuration: bundled data, 2 steps, 8 eval pairs, no COMET (add --no-4bit to skip bitsandbytes)",
    )
    args = parser.parse_args(argv)
    if args.tiny:  # 4-bit stays as asked: bitsandbytes 4-bit works on CPU too (slowly); --no-4bit turns it off
        for name, value in (("train_data", "bundled"), ("eval_data", "bundled")):
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
        args.num_train_pairs = args.num_train_pairs or 16
        args.num_eval_pairs, args.steps, args.eval_steps, args.batch_size, args.grad_accum = 8, 2, 1, 4, 1
        args.max_length, args.warmup_steps, args.max_new_tokens = 64, 0, 8
        args.comet_model = args.cometkiwi_model = "none"
    for name in ("comet_model", "cometkiwi_model"):
        if str(getattr(args, name)).lower() == "none":
            setattr(args, name, None)
    args.hf_token = args.hf_token or os.environ.get("HF_TOKEN") or None
    return args


def nllb_pairs(dataset: str, source_lang: str, target_lang: str, limit: int | None, token: str | None):
    """(source, target) pairs streamed from the NLLB corpus (config '<lang>-<lang>', codes in alphabetical order)."""
    from datasets import load_dataset

    config = "-".join(sorted((source_lang, target_lang)))
    try:
        stream = load_dataset(dataset, config, split="train", streaming=True, token=token)
        pairs = []
        for record in itertools.islice(stream, limit):
            texts = record.get("translation", record)
            pairs.append((texts[source_lang], texts[target_lang]))
    except Exception as error:
        raise SystemExit(
            f"could not stream {dataset} ({config}): {type(error).__name__}: {error}. Offline? Pass "
            f"--train-data FILE.tsv (or 'bundled' for en-is)."
        ) from error
    return pairs


def load_model(args):
    """(model ready for LoRA, tokenizer): 4-bit nf4 through bitsandbytes, or unquantized (embedded names included)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neuronxa_callback.instrument.models import EMBEDDED_MODELS, load_model_and_tokenizer, prepare_for_training

    if args.model in EMBEDDED_MODELS or not args.four_bit:
        if args.four_bit:
            print(f"[qlora] {args.model} is an embedded GGUF model: loading it unquantized (as with --no-4bit)")
        # No dtype= here: models.py passes it to the tokenizer too, whose save_pretrained then fails (dtype is not JSON).
        model, tokenizer = load_model_and_tokenizer(args.model, token=args.hf_token)
        prepare_for_training(model)
        return model, tokenizer
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    # Sharded training (FSDP / ZeRO-3) flattens and splits the 4-bit weights: they must be stored in a float dtype, and
    # the engine, not device_map, places them. DDP: each rank loads the model onto its own GPU.
    sharded = bool(args.deepspeed or args.fsdp)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_storage=torch.bfloat16 if sharded else torch.uint8,
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model, token=args.hf_token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device_map = {"": int(os.environ.get("LOCAL_RANK", 0))} if torch.cuda.is_available() else {"": "cpu"}
    if sharded:
        device_map = None
    model = AutoModelForCausalLM.from_pretrained(
        args.model, quantization_config=quantization, dtype=torch.bfloat16, device_map=device_map, token=args.hf_token
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=torch.cuda.is_available())
    return model, tokenizer


def main(argv=None) -> int:
    args = parse_args(argv)
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DIR", str(output_dir))
    os.environ.setdefault("WANDB_PROJECT", args.wandb_project)

    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from neuronxa_callback import NeuronXACallback, load_training_pairs, write_report
    from neuronxa_callback.data.loaders import normalize_language
    from neuronxa_callback.sinks.jsonl import read_jsonl

    set_seed(args.seed)
    source_lang, target_lang = normalize_language(args.source_lang), normalize_language(args.target_lang)
    if args.train_data == "nllb":
        pairs = nllb_pairs(args.nllb_dataset, source_lang, target_lang, args.num_train_pairs, args.hf_token)
    else:
        pairs = load_training_pairs(args.train_data, source_lang, target_lang)[: args.num_train_pairs]

    model, tokenizer = load_model(args)
    examples = translation_examples(
        pairs, source_lang=source_lang, target_lang=target_lang, directions=args.directions, seed=args.seed
    )
    train_dataset = TokenizedTexts(tokenizer, examples, max_length=args.max_length, completion_only=True)
    model = apply_lora(
        model, rank=args.lora_rank, alpha=args.lora_alpha, dropout=args.lora_dropout, target_modules=args.lora_targets
    )
    trainable, total = count_parameters(model)
    print(
        f"[qlora] {args.model}: {'4-bit nf4 ' if args.four_bit else ''}LoRA r={args.lora_rank}, "
        f"{trainable / 1e6:.2f} M of {total / 1e6:.1f} M parameters trainable; {len(pairs)} pairs -> "
        f"{len(train_dataset)} examples ({args.directions})",
        flush=True,
    )

    on_gpu = torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_steps,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        logging_steps=10,
        save_strategy="steps",
        save_steps=max(args.eval_steps, 1) * 5,
        save_total_limit=2,
        report_to=[] if args.no_wandb else ["wandb"],
        run_name=output_dir.name,
        seed=args.seed,
        remove_unused_columns=False,
        disable_tqdm=not sys.stderr.isatty(),
        deepspeed=args.deepspeed,
        fsdp=args.fsdp,
    )
    neuronxa = NeuronXACallback(
        data=args.eval_data,
        languages=[target_lang],
        pivot=source_lang,
        num_pairs=args.num_eval_pairs,
        eval_steps=args.eval_steps,
        quality_every=args.quality_every,
        direction="x2en",
        quality_metrics=["chrf", "bleu"],
        comet_model=args.comet_model,
        cometkiwi_model=args.cometkiwi_model,
        max_new_tokens=args.max_new_tokens,
        early_stopping_patience=args.patience or None,
        early_stopping_min_delta=args.min_delta,
        early_stopping_smoothing="ema",
        early_stopping_min_steps=args.eval_steps * 3,
        seed=args.seed,
        strict=args.tiny,  # a smoke run must fail loudly
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=CausalLMCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[neuronxa],
    )
    trainer.train()
    trainer.save_model(str(output_dir / "adapter"))

    jsonl = output_dir / "neuronxa" / "metrics.jsonl"
    records = [r for r in read_jsonl(jsonl) if r.get("event", "measurement") == "measurement"]
    report = write_report(output_dir)
    pair = f"{source_lang}-{target_lang}"
    print(f"\nNeuronXA {pair}:")
    for line in summary_lines(records, pair):
        print("  " + line)
    wandb_run = None if args.no_wandb else find_wandb_run_dir(output_dir)
    print(f"\nJSONL:   {jsonl}\nAdapter: {output_dir / 'adapter'}\nReport:  {report['summary']}")
    if wandb_run is not None:
        print(f"W&B:     {wandb_run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
