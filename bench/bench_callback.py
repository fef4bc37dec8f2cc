"""Benchmark: the same short LoRA run of Gemma 3 270M with and without NeuronXACallback, side by side (CPU).

Usage::

    flock /tmp/neuronxa-heavy.lock .venv/bin/python bench/bench_callback.py     # defaults: 3 steps, 2 rounds
    .venv/bin/python bench/bench_callback.py --quality-every 1 --steps 2 --rounds 1   # cost of translating too
    .venv/bin/python bench/bench_callback.py --quick                            # tiny model, seconds (smoke test)

The model is loaded once; LoRA (r=8 on q/v) is reset to the same initial weights before every run, so both sides
train exactly the same steps on the bundled English-Icelandic pairs (batch 4, 64 tokens, seed 0). The callback
runs at its DEFAULTS (read from CallbackSettings: its default data, 100 pairs, eval_steps=50, quality_every=0,
NAS+NAV) unless an option overrides one. After a warm-up run on each side, the two sides alternate for --rounds
rounds (order reversed every other round). A run shorter than eval_steps is measured twice, at step 0 (the
baseline) and at its last step, so its overhead ratio is dominated by those two measurements. The default sizes
(3 steps, 2 rounds) took 89 s on the project's idle 2-core machine (2026-12-02: 1.38 s per step, 13.9 s per
100-pair measurement); under a load average of ~6 the same costs were 11.7 s and 60-82 s. What a long run pays
follows from the measured costs (below).

Prints, as `name: value` lines: wall seconds per side (min/median/max), the per-round ratio, the callback's split
(alignment, generation, quality, and what the timing block does not cover: set-up, snapshots, JSONL), then the
share of wall time a LONG run at the default schedule would spend in the callback, computed from the measured cost
of one full measurement (the default 100 pairs; no run is scaled down to fewer pairs) and the median time between
two optimizer steps of the runs without the callback (so no per-run start-up cost is spread over steps), and the smallest
eval_steps that meets each target (alignment <= 5 %, everything <= 10 %). Headline last: the measured overhead
ratio (median over rounds of with / without).
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (  # noqa: E402
    alternating,
    bench_model,
    bench_parser,
    emit,
    emit_spread,
    only_name_value_lines,
    parse_with_quick,
    setup_environment,
)

setup_environment()

ALIGNMENT_TARGET = 0.05
TOTAL_TARGET = 0.10
QUICK = dict(
    steps=4,
    rounds=1,
    warmup_steps=1,
    batch_size=2,
    seq_len=32,
    eval_steps=2,
    num_pairs=8,
    quality_every=1,
    max_new_tokens=4,
    data="bundled",
)


def parse_args(argv=None):
    parser = bench_parser(__doc__, quick_help="tiny random model and sizes: a smoke test in seconds")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run (>= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating with/without rounds after the warm-up")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    # None: the callback's own default (the point of this benchmark).
    parser.add_argument("--data", default=None)
    parser.add_argument("--eval-steps", type=int, default=None)
    parser.add_argument("--num-pairs", type=int, default=None)
    parser.add_argument("--quality-every", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--output-dir", default=None)
    options = parse_with_quick(parser, argv, QUICK)
    if options.steps < 2:
        parser.error("--steps must be >= 2: the time per step is taken between two optimizer steps")
    return options


def callback_kwargs(options) -> dict:
    """Only the settings an option overrides; everything else stays at NeuronXACallback's default."""
    names = ("data", "eval_steps", "num_pairs", "quality_every", "max_new_tokens")
    return {name: getattr(options, name) for name in names if getattr(options, name) is not None}


def schedule_shares(
    alignment: float, translation: float, step_seconds: float, eval_steps: int, quality_every: int
) -> tuple[float, float]:
    """(alignment share, callback share) of wall time in a long run that measures every `eval_steps` steps.

    One window = eval_steps training steps + one alignment measurement + 1/quality_every of a translation-and-score.
    """
    per_window = alignment + (translation / quality_every if quality_every else 0.0)
    window = eval_steps * step_seconds + per_window
    return alignment / window, per_window / window


def min_eval_steps(cost_per_measurement: float, step_seconds: float, target: float) -> int:
    """Smallest eval_steps E with cost / (E * step_seconds + cost) <= target."""
    return max(1, math.ceil(cost_per_measurement * (1 - target) / (target * step_seconds) - 1e-9))


def measurements_of(output_dir: Path) -> list[dict]:
    from neuronxa_callback.sinks.jsonl import read_jsonl

    path = output_dir / "neuronxa" / "metrics.jsonl"
    return [r for r in read_jsonl(path) if r.get("event", "measurement") == "measurement" and "timing" in r]


def main(argv=None) -> None:
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the Trainer's notices go to stderr anyway; keep them short
    try:
        with only_name_value_lines():
            _main(argv)
    finally:
        hf_logging.set_verbosity(verbosity)  # as found, when main() runs in-process (the smoke test)


def _main(argv=None) -> None:
    options = parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from neuronxa_callback import NeuronXACallback
    from neuronxa_callback.data.loaders import load_training_pairs
    from neuronxa_callback.instrument.models import prepare_for_training
    from neuronxa_callback.settings import CallbackSettings

    settings = CallbackSettings.from_kwargs(**callback_kwargs(options))
    started = time.perf_counter()
    model, tokenizer, model_name = bench_model(options)
    load_seconds = time.perf_counter() - started
    model = prepare_for_training(model)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    # Every run starts from these adapter weights, so both sides train the same steps from the same point.
    initial = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    pairs = load_training_pairs("bundled")
    texts = [f"Icelandic: {isl}\nEnglish: {eng}" for eng, isl in pairs]
    encoded = [tokenizer(t, truncation=True, max_length=options.seq_len)["input_ids"] for t in texts]

    class Examples(torch.utils.data.Dataset):
        def __len__(self):
            return len(encoded)

        def __getitem__(self, i):
            return {"input_ids": encoded[i]}

    temporary = None if options.output_dir else tempfile.TemporaryDirectory(prefix="neuronxa-bench-callback-")
    base = Path(options.output_dir or temporary.name)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    run_number = [0]

    class StepClock(TrainerCallback):
        """perf_counter() at every optimizer step's end: time per step without any per-run start-up cost."""

        def __init__(self) -> None:
            self.step_ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

    def run(with_callback: bool, steps: int, callback_overrides: dict | None = None) -> tuple[Path, list[float]]:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in initial:
                    p.copy_(initial[name])
        run_number[0] += 1
        output_dir = base / f"run{run_number[0]:02d}_{'with' if with_callback else 'without'}"
        clock = StepClock()
        callbacks = (
            [NeuronXACallback(**{**callback_kwargs(options), **(callback_overrides or {})})] if with_callback else []
        )
        callbacks.append(clock)  # after NeuronXACallback: on the "with" side a measurement falls inside an interval
        args = TrainingArguments(
            output_dir=str(output_dir),
            max_steps=steps,
            per_device_train_batch_size=options.batch_size,
            learning_rate=1e-3,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Examples(),
            processing_class=tokenizer,
            data_collator=collator,
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)  # its log dicts would break the `name: value` output
        trainer.train()
        return output_dir, [b - a for a, b in zip(clock.step_ends, clock.step_ends[1:])]

    # Warm-up on both sides: first-call costs (allocator, kernels, imports, data loading) are paid here.
    started = time.perf_counter()
    run(False, options.warmup_steps)
    run(True, options.warmup_steps, {"num_pairs": min(4, settings.num_pairs)})
    warmup_seconds = time.perf_counter() - started

    rounds = alternating(
        {"without": lambda: run(False, options.steps), "with": lambda: run(True, options.steps)}, options.rounds
    )
    without = [r["without"][0] for r in rounds]
    with_ = [r["with"][0] for r in rounds]
    ratios = [w / o for w, o in zip(with_, without)]
    records = [measurements_of(r["with"][1][0]) for r in rounds]
    step_intervals = [interval for r in rounds for interval in r["without"][1][1]]
    if not all(records):  # strict=False (the default) logs a failed measurement and trains on: no timing to read
        raise RuntimeError("bench_callback: a run with the callback recorded no measurement; see the errors on stderr")

    alignment = [sum(m["timing"]["alignment_seconds"] for m in run_records) for run_records in records]
    generation = [sum(m["timing"]["generation_seconds"] for m in run_records) for run_records in records]
    quality = [sum(m["timing"]["quality_seconds"] for m in run_records) for run_records in records]
    per_alignment = [m["timing"]["alignment_seconds"] for run_records in records for m in run_records]
    translated = [m for run_records in records for m in run_records if "quality" in m]
    per_translation = [m["timing"]["generation_seconds"] + m["timing"]["quality_seconds"] for m in translated]

    emit("model", model_name)
    emit("torch_threads", torch.get_num_threads())
    emit("load_seconds", load_seconds, 1)
    emit("warmup_seconds", warmup_seconds, 1)
    emit(
        "callback_settings",
        f"num_pairs={settings.num_pairs} eval_steps={settings.eval_steps} "
        f"quality_every={settings.quality_every} representations={','.join(settings.representations)} "
        f"data={settings.data} languages={','.join(settings.languages)}",
    )
    emit(
        "callback_at_defaults", "yes" if not callback_kwargs(options) else f"no, overridden: {callback_kwargs(options)}"
    )
    emit("lora", f"r=8 q_proj,v_proj batch {options.batch_size} max {options.seq_len} tokens")
    emit("steps_per_run", options.steps)
    emit("rounds", options.rounds)
    emit("measurements_per_run", len(records[0]))
    emit("measured_steps", ",".join(str(m["step"]) for m in records[0]))
    emit("measurements_with_quality_per_run", sum("quality" in m for m in records[0]))
    for number, (o, w) in enumerate(zip(without, with_)):
        emit(f"round_{number}_without_seconds", o, 2)
        emit(f"round_{number}_with_seconds", w, 2)
        emit(f"round_{number}_ratio", w / o, 3)
    emit_spread("without_seconds", without, 2)
    emit_spread("with_seconds", with_, 2)
    emit_spread("alignment_seconds_per_measurement", per_alignment, 2)
    if per_translation:
        emit_spread("translation_seconds_per_quality_measurement", per_translation, 2)

    # Split of the measured runs, as shares of the with-callback wall time (median over rounds).
    unaccounted = [w - o - (a + g + q) for w, o, a, g, q in zip(with_, without, alignment, generation, quality)]
    for name, values in (
        ("alignment", alignment),
        ("generation", generation),
        ("quality", quality),
        ("unaccounted", unaccounted),
    ):
        emit(f"run_share_{name}", statistics.median(v / w for v, w in zip(values, with_)))
    emit("run_share_total", statistics.median((w - o) / w for w, o in zip(with_, without)))

    # A long run at the schedule: one measurement per eval_steps steps, translation every quality_every-th.
    step_seconds = statistics.median(step_intervals)
    a = statistics.median(per_alignment)
    t = statistics.median(per_translation) if per_translation else 0.0
    every = settings.eval_steps
    q_every = settings.quality_every
    emit_spread("training_seconds_per_step", step_intervals, 3)

    if every:
        align_share, total_share = schedule_shares(a, t, step_seconds, every, q_every)
        emit(f"computed_share_alignment_eval_steps_{every}", align_share)
        emit(f"computed_share_total_eval_steps_{every}_quality_every_{q_every}", total_share)
        emit("alignment_target_met", "yes" if align_share <= ALIGNMENT_TARGET else "no")
        emit("total_target_met", "yes" if total_share <= TOTAL_TARGET else "no")
    emit("min_eval_steps_for_alignment_5pct", min_eval_steps(a, step_seconds, ALIGNMENT_TARGET))
    # Everything: at the configured quality_every, and (when translation cost was measured) at 1, 2 and 4.
    for k in sorted({q_every} | ({1, 2, 4} if per_translation else set())):
        emit(
            f"min_eval_steps_for_total_10pct_quality_every_{k}",
            min_eval_steps(a + (t / k if k else 0.0), step_seconds, TOTAL_TARGET),
        )
    emit("overhead_ratio_min", min(ratios), 3)
    emit("overhead_ratio_max", max(ratios), 3)
    emit("overhead_ratio", statistics.median(ratios), 3)  # headline: median over rounds of with / without
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
