"""Benchmark: the same short LoRA run three ways: no monitor, in-process measurement, out-of-band worker (CPU).

Usage::

    .venv/bin/python bench/bench_out_of_band.py                  # a small Llama built from config: a few minutes
    .venv/bin/python bench/bench_out_of_band.py --gemma          # Gemma 3 270M (load_model_and_tokenizer): slower
    .venv/bin/python bench/bench_out_of_band.py --quick          # tiny sizes, a smoke test

A plain PyTorch loop (LoRA r=8 on q/v, AdamW, the bundled English-Icelandic pairs, fixed batches) trains with ONE
torch thread; the out-of-band worker (measure_in="worker") also gets one, so on a 2-core machine training and
measuring run side by side. The in-process mode measures on the training thread. Every run starts from the same
adapter weights. After a warm-up run of each mode, the modes alternate for --rounds rounds (order reversed every
other round, _benchlib.alternating).

Per mode (median over rounds): steps/s of the training loop (begin() with its step-0 baseline and end() with its
wait for the worker are left out; the measure() calls inside the loop are in), end-to-end wall seconds (monitor
built to end() returned), and the seconds training spent in measure() (in-process: the measurements; worker: the
snapshot and any wait on a full in-flight queue, worker_max_in_flight) with the queue wait the records report
(timing.worker_wait_seconds). Ratios: worker / no-monitor and in-process / no-monitor throughput (the target for the
worker: within 5 %). The load average before and after says how much else ran on the machine. Headline last:
out_of_band_training_throughput_ratio (worker steps/s over no-monitor steps/s, median over rounds).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (  # noqa: E402
    alternating,
    bench_parser,
    emit,
    emit_spread,
    only_name_value_lines,
    parse_with_quick,
    setup_environment,
)

setup_environment()

MODES = ("none", "process", "worker")
QUICK = dict(steps=6, rounds=1, eval_steps=3, num_pairs=8, batch_size=2, seq_len=32, layers=2, hidden=32)


def parse_args(argv=None):
    parser = bench_parser(__doc__, quick_help="tiny random model and sizes: a smoke test")
    parser.add_argument("--gemma", action="store_true", help="train --model (default gemma-3-270m) instead")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds after the warm-up")
    parser.add_argument("--eval-steps", type=int, default=10, help="a measurement every this many steps")
    parser.add_argument("--num-pairs", type=int, default=50, help="pairs per measurement (bundled sample)")
    parser.add_argument("--max-in-flight", type=int, default=2, help="worker_max_in_flight")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4, help="layers of the model built from config")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the model built from config")
    options = parse_with_quick(parser, argv, QUICK)
    if options.steps < options.eval_steps:
        parser.error("--steps must be >= --eval-steps: the loop has to measure at least once")
    return options


def main(argv=None) -> None:
    with only_name_value_lines():
        _main(argv)


def _model(options):
    """(model, tokenizer, name): Gemma with --gemma, else a small Llama built from config on the tiny tokenizer."""
    if options.gemma and not options.quick:
        from neuronxa_callback.instrument.models import load_model_and_tokenizer, prepare_for_training

        model, tokenizer = load_model_and_tokenizer(options.model)
        return prepare_for_training(model), tokenizer, options.model
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, num_layers=options.layers, hidden_size=options.hidden)
    return model, tokenizer, f"llama from config ({options.layers} layers, hidden {options.hidden}, random)"


def _main(argv=None) -> None:
    options = parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model

    from neuronxa_callback import AlignmentMonitor
    from neuronxa_callback.data.loaders import load_training_pairs
    from neuronxa_callback.sinks.jsonl import read_jsonl

    load_before = os.getloadavg()
    torch.set_num_threads(1)  # training on one core; the worker gets the other
    started = time.perf_counter()
    model, tokenizer, model_name = _model(options)
    load_seconds = time.perf_counter() - started
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    model.train()
    initial = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    pairs = load_training_pairs("bundled")
    texts = [f"Icelandic: {isl}\nEnglish: {eng}" for eng, isl in pairs]
    batches = []
    for start in range(0, len(texts) - options.batch_size + 1, options.batch_size):
        encoded = tokenizer(
            texts[start : start + options.batch_size],
            truncation=True,
            max_length=options.seq_len,
            padding=True,
            return_tensors="pt",
        )
        encoded["labels"] = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        batches.append(dict(encoded))

    monitor_settings = dict(
        data="bundled",
        num_pairs=options.num_pairs,
        eval_steps=options.eval_steps,
        quality_every=0,
        worker_max_in_flight=options.max_in_flight,
        strict=True,
    )
    temporary = tempfile.TemporaryDirectory(prefix="neuronxa-bench-out-of-band-")
    base = Path(temporary.name)
    run_number = [0]

    def run(mode: str, steps: int) -> dict:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in initial:
                    p.copy_(initial[name])
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        run_number[0] += 1
        output_dir = base / f"run{run_number[0]:02d}_{mode}"
        began = time.perf_counter()
        monitor = None
        if mode != "none":
            where = {"measure_in": "worker", "worker_threads": 1} if mode == "worker" else {"measure_in": "process"}
            monitor = AlignmentMonitor(**monitor_settings, **where)
            monitor.begin(model, tokenizer, output_dir=output_dir)
            monitor.measure(model, tokenizer, step=0, trigger="train_begin")
        loop_started = time.perf_counter()
        in_measure = 0.0
        for step in range(1, steps + 1):
            loss = model(**batches[(step - 1) % len(batches)]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if monitor is not None and monitor.due(step):
                measure_started = time.perf_counter()
                monitor.measure(model, tokenizer, step=step)
                in_measure += time.perf_counter() - measure_started
        loop_seconds = time.perf_counter() - loop_started
        if monitor is not None:
            monitor.end(model, tokenizer, step=steps)
        wall = time.perf_counter() - began
        records = []
        if monitor is not None:
            path = output_dir / "neuronxa" / "metrics.jsonl"
            records = [r for r in read_jsonl(path) if r.get("event", "measurement") == "measurement"]
            if not records:
                raise RuntimeError(f"bench_out_of_band: the {mode} run recorded no measurement")
        return {
            "steps_per_second": steps / loop_seconds,
            "wall_seconds": wall,
            "measure_call_seconds": in_measure,
            "queue_wait_seconds": sum(r.get("timing", {}).get("worker_wait_seconds", 0.0) for r in records),
            "measurements": len(records),
        }

    started = time.perf_counter()
    for mode in MODES:  # first-call costs (allocator, imports, the worker's start) are paid here
        run(mode, options.eval_steps)
    warmup_seconds = time.perf_counter() - started
    rounds = alternating({mode: (lambda mode=mode: run(mode, options.steps)) for mode in MODES}, options.rounds)
    load_after = os.getloadavg()
    temporary.cleanup()

    def per_mode(key: str, mode: str) -> list[float]:
        return [r[mode][1][key] for r in rounds]

    emit("model", model_name)
    emit("cpu_count", os.cpu_count())
    emit("torch_threads_training", torch.get_num_threads())
    emit("worker_threads", 1)
    emit("load_average_before", " ".join(f"{v:.2f}" for v in load_before))
    emit("load_average_after", " ".join(f"{v:.2f}" for v in load_after))
    emit("load_seconds", load_seconds, 1)
    emit("warmup_seconds", warmup_seconds, 1)
    emit(
        "run",
        f"{options.steps} steps, batch {options.batch_size}, max {options.seq_len} tokens, LoRA r=8 q_proj,v_proj; "
        f"eval_steps={options.eval_steps} num_pairs={options.num_pairs} quality_every=0 "
        f"worker_max_in_flight={options.max_in_flight}",
    )
    emit("rounds", options.rounds)
    for mode in MODES:
        emit_spread(f"{mode}_steps_per_second", per_mode("steps_per_second", mode), 3)
        emit(f"{mode}_wall_seconds_median", statistics.median(per_mode("wall_seconds", mode)), 2)
        if mode != "none":
            emit(f"{mode}_measurements_per_run", int(statistics.median(per_mode("measurements", mode))))
            emit(
                f"{mode}_seconds_in_measure_calls_median", statistics.median(per_mode("measure_call_seconds", mode)), 3
            )
    emit("worker_queue_wait_seconds_median", statistics.median(per_mode("queue_wait_seconds", "worker")), 3)
    ratios = {}
    for mode in ("process", "worker"):
        ratios[mode] = [r[mode][1]["steps_per_second"] / r["none"][1]["steps_per_second"] for r in rounds]
        for number, ratio in enumerate(ratios[mode]):
            emit(f"round_{number}_{mode}_throughput_ratio", ratio, 3)
        wall = [r[mode][1]["wall_seconds"] / r["none"][1]["wall_seconds"] for r in rounds]
        emit(f"{mode}_wall_ratio_median", statistics.median(wall), 3)
    emit("in_process_training_throughput_ratio", statistics.median(ratios["process"]), 3)
    emit("worker_within_5_percent", "yes" if statistics.median(ratios["worker"]) >= 0.95 else "no")
    emit("out_of_band_training_throughput_ratio", statistics.median(ratios["worker"]), 3)  # headline


if __name__ == "__main__":
    main()
