"""The checks to run the day a GPU is available: the callback in bf16 and 4-bit QLoRA Trainer runs on CUDA.

Usage::

    .venv/bin/python bench/gpu_check.py                      # on a CUDA machine: Gemma 3 270M (embedded, offline)
    .venv/bin/python bench/gpu_check.py --tiny               # a tiny random Llama from config: a minute
    .venv/bin/python bench/gpu_check.py --tiny --allow-cpu   # dry run of the same checks on the CPU (tested)

Without CUDA (and without --allow-cpu) it prints a skip line and exits 0. Otherwise:

1. Reference: the model in float32 on the CPU, NASCA/NAVCA per layer on the bundled eng-isl pairs.
2. Two short Trainer runs with bf16=True and the callback attached (alignment at step 0 and at the end; translation
   with chrF++ and COMET from a tiny offline COMET model built here, on the same device): a bf16 model with LoRA,
   and a 4-bit nf4 QLoRA model (bitsandbytes, bf16 compute, prepare_model_for_kbit_training).
3. Each run's step-0 scores against the CPU float32 reference (weights are unchanged at step 0).
4. Peak GPU memory (torch.cuda.max_memory_allocated above what was allocated before) of one alignment measurement and
   of one training step (forward + backward of a batch), on the trained model.
5. The callback's share of the run's wall time (its own timings in the JSONL over the Trainer's train_runtime), and
   extrapolated to measuring every 50 steps.

Prints `name: value` lines and `check_<name>: PASS|FAIL|SKIP` per check; the headline `gpu_check: PASS|FAIL` last.
Exits 1 when a check fails.

Tolerances (per-layer score vs CPU float32, n = 100 unless --num-pairs): bf16 from the CPU bf16-vs-fp32 run of Gemma
3 270M (bench/precision_gemma.py, README "Mixed precision": largest per-layer difference 0.02 for NASCA, NAVCA and
MEXA, layer means within 0.002), with a margin for another kernel library: 0.05 per layer, 0.01 for the layer mean.
QLoRA: 4-bit weights move scores further; the tiny-model nf4 matrix (tests/test_precision_matrix.py) moved per-layer
scores by up to 4 of 32 sentences. The 0.20 per layer / 0.10 mean bound is PROVISIONAL until the first GPU run
measures Gemma in 4-bit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import emit, only_name_value_lines, setup_environment  # noqa: E402

setup_environment()

PAIR = "eng_Latn-isl_Latn"
BOUNDS = {  # run -> (max per-layer |difference|, |difference| of the layer mean), see the module docstring
    "bf16": (0.05, 0.01),
    "qlora": (0.20, 0.10),
}


class Checks:
    """PASS / FAIL / SKIP lines, remembered for the headline."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}

    def record(self, name: str, ok: bool | None, detail: str = "") -> None:
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        self.results[name] = status
        emit(f"check_{name}", status + (f" ({detail})" if detail else ""))

    @property
    def failed(self) -> list[str]:
        return [name for name, status in self.results.items() if status == "FAIL"]


def _checkpoint(args, workdir: Path) -> Path:
    """A transformers checkpoint directory (with tokenizer) both runs load from."""
    if args.tiny:
        from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

        path = workdir / "tiny-llama"
        tokenizer = tiny_tokenizer()
        # hidden 64: bitsandbytes quantizes in blocks of 64.
        tiny_model("llama", tokenizer=tokenizer, num_layers=2, hidden_size=64).save_pretrained(path)
        tokenizer.save_pretrained(path)
        return path
    from neuronxa_callback.instrument.models import converted_dir, load_model_and_tokenizer

    load_model_and_tokenizer(args.model)  # converts an embedded GGUF once into the cache
    return converted_dir(args.model) if (converted_dir(args.model) / "config.json").exists() else Path(args.model)


def _load(path: Path, kind: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neuronxa_callback.instrument.models import prepare_for_training

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "fp32":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    elif kind == "bf16":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(device)
    else:
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.bfloat16, quantization_config=config, device_map={"": device}
        )
    prepare_for_training(model)
    return model, tokenizer


def _with_lora(model, kind: str):
    from peft import LoraConfig, get_peft_model

    if kind == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))


class _Examples:
    """Bundled English-Icelandic training pairs as causal-LM examples ("source = target")."""

    def __init__(self, tokenizer, count: int) -> None:
        from neuronxa_callback.data.loaders import load_training_pairs

        pairs = load_training_pairs("bundled")[:count]
        self.items = [tokenizer(f"{s} = {t}", truncation=True, max_length=64)["input_ids"] for s, t in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.items[i]}


def _train(model, tokenizer, args, kind: str, device: str, comet_dir: Path, output_dir: Path):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from neuronxa_callback.hosts.trainer import NeuronXACallback

    callback = NeuronXACallback(
        data="bundled",
        languages=["isl_Latn"],
        num_pairs=args.num_pairs,
        eval_steps=args.steps,
        quality_every=1,
        quality_num_pairs=args.quality_pairs,
        max_new_tokens=args.max_new_tokens,
        comet_model=str(comet_dir),
        comet_device=device,
        report_to="none",
        strict=True,
    )
    training = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-4,
        bf16=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=device == "cpu",
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=_Examples(tokenizer, args.batch_size * args.steps),
        processing_class=tokenizer,
        callbacks=[callback],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    result = trainer.train()
    return trainer, float(result.metrics["train_runtime"])


def _peak_memory(model, tokenizer, data, device: str, batch_size: int) -> tuple[float, float]:
    """(MiB of one alignment measurement, MiB of one training step) above what was allocated before each."""
    import torch

    from neuronxa_callback.alignment.report import measure_alignment

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    measure_alignment(model, tokenizer, data)
    torch.cuda.synchronize()
    measurement = (torch.cuda.max_memory_allocated() - base) / 2**20
    examples = _Examples(tokenizer, batch_size)
    batch = tokenizer.pad({"input_ids": [examples[i]["input_ids"] for i in range(len(examples))]}, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    torch.cuda.synchronize()
    step = (torch.cuda.max_memory_allocated() - base) / 2**20
    model.zero_grad(set_to_none=True)
    return measurement, step


def _compare(record: dict, reference: dict, kind: str, checks: Checks) -> None:
    per_layer_bound, mean_bound = BOUNDS[kind]
    worst_layer = worst_mean = 0.0
    for metric in ("nasca", "navca"):
        got, ref = record["pairs"][PAIR][metric], reference[metric]
        layer_diff = max(abs(a - b) for a, b in zip(got, ref))
        mean_diff = abs(sum(got) / len(got) - sum(ref) / len(ref))
        emit(f"{kind}_{metric}_mean", sum(got) / len(got))
        emit(f"{kind}_{metric}_max_layer_diff_vs_cpu_fp32", layer_diff)
        emit(f"{kind}_{metric}_mean_diff_vs_cpu_fp32", mean_diff)
        worst_layer, worst_mean = max(worst_layer, layer_diff), max(worst_mean, mean_diff)
    checks.record(
        f"{kind}_scores_vs_cpu_fp32",
        worst_layer <= per_layer_bound and worst_mean <= mean_bound,
        f"max layer diff {worst_layer:.3f} <= {per_layer_bound}, mean diff {worst_mean:.3f} <= {mean_bound}",
    )


def run(args) -> int:
    import torch

    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.data.loaders import load_parallel
    from neuronxa_callback.sinks.jsonl import read_jsonl

    device = "cuda" if torch.cuda.is_available() else "cpu"
    checks = Checks()
    emit("device", torch.cuda.get_device_name(0) if device == "cuda" else "cpu (--allow-cpu dry run)")
    emit("model", "tiny-llama (random, from config)" if args.tiny else args.model)
    emit("torch", torch.__version__)
    data = load_parallel("bundled", languages=["isl_Latn"], num_pairs=args.num_pairs)
    with tempfile.TemporaryDirectory(prefix="neuronxa-gpu-check-") as tmp:
        workdir = Path(args.output_dir) if args.output_dir else Path(tmp)
        path = _checkpoint(args, workdir)
        from neuronxa_callback.testing.comet import build_tiny_comet

        comet_dir = build_tiny_comet(workdir / "tiny-comet", data.sentences("eng_Latn") + data.sentences("isl_Latn"))
        model, tokenizer = _load(path, "fp32", "cpu")
        started = time.perf_counter()
        report = measure_alignment(model, tokenizer, data)
        reference = {m: list(report.score(m, PAIR).per_layer) for m in ("nasca", "navca")}
        emit("cpu_fp32_seconds", time.perf_counter() - started, 1)
        emit("cpu_fp32_nasca_mean", report.mean("nasca", PAIR))
        emit("cpu_fp32_navca_mean", report.mean("navca", PAIR))
        del model
        for kind in ("bf16", "qlora"):
            if kind == "qlora" and args.skip_qlora:
                checks.record("qlora_run", None, "--skip-qlora")
                continue
            try:
                model, tokenizer = _load(path, kind, device)
                model = _with_lora(model, kind)
                trainer, runtime = _train(model, tokenizer, args, kind, device, comet_dir, workdir / f"run-{kind}")
            except Exception as error:  # noqa: BLE001 - a failed run is a FAIL line, the other checks still run
                checks.record(f"{kind}_run", False, f"{type(error).__name__}: {error}"[:300])
                continue
            records = read_jsonl(workdir / f"run-{kind}" / "neuronxa" / "metrics.jsonl")
            steps = [r["step"] for r in records]
            quality = [r.get("quality", {}).get(PAIR, {}) for r in records]
            complete = (
                steps == [0, args.steps]
                and all("navca" in r["pairs"][PAIR] for r in records)
                and all(q.get("chrf") is not None and q.get("comet") is not None for q in quality)
            )
            checks.record(f"{kind}_run", complete, f"measured steps {steps}, chrF and COMET at each")
            if not records:
                continue
            _compare(records[0], reference, kind, checks)
            for step, q in zip(steps, quality):
                emit(f"{kind}_step{step}_chrf", q.get("chrf") if q.get("chrf") is not None else "n/a")
                emit(f"{kind}_step{step}_comet", q.get("comet") if q.get("comet") is not None else "n/a")
            timing = {
                key: sum(r["timing"].get(key, 0.0) or 0.0 for r in records)
                for key in ("alignment_seconds", "generation_seconds", "quality_seconds")
            }
            callback_seconds = sum(timing.values())
            emit(f"{kind}_train_runtime_seconds", runtime, 1)
            emit(f"{kind}_callback_seconds", callback_seconds, 1)
            emit(f"{kind}_callback_share", callback_seconds / runtime if runtime > 0 else float("nan"))
            # The Trainer's runtime includes the callback; per step without it, then one measurement per 50 steps.
            step_seconds = max(runtime - callback_seconds, 1e-9) / args.steps
            per_measurement = timing["alignment_seconds"] / len(records)
            emit(f"{kind}_alignment_share_at_eval_steps_50", per_measurement / (per_measurement + 50 * step_seconds))
            if device == "cuda":
                measurement, step = _peak_memory(trainer.model, tokenizer, data, device, args.batch_size)
                emit(f"{kind}_peak_mib_measurement", measurement, 1)
                emit(f"{kind}_peak_mib_training_step", step, 1)
                checks.record(
                    f"{kind}_measurement_memory",
                    measurement <= step,
                    f"{measurement:.0f} MiB measurement <= {step:.0f} MiB training step",
                )
            else:
                checks.record(f"{kind}_measurement_memory", None, "no CUDA: torch.cuda.max_memory_allocated n/a")
            del trainer, model
            if device == "cuda":
                torch.cuda.empty_cache()
    failed = checks.failed
    emit("gpu_check", "FAIL: " + ", ".join(failed) if failed else f"PASS ({len(checks.results)} checks)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m", help="embedded name or local checkpoint directory")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama built from config instead")
    parser.add_argument("--allow-cpu", action="store_true", help="without CUDA, run the same checks on the CPU")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--num-pairs", type=int, default=None, help="scored pairs (default 100; --tiny 16)")
    parser.add_argument("--quality-pairs", type=int, default=None, help="translated pairs (default 16; --tiny 4)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 48; --tiny 4")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--skip-qlora", action="store_true")
    parser.add_argument("--output-dir", help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    args.num_pairs = args.num_pairs or (16 if args.tiny else 100)
    args.quality_pairs = args.quality_pairs or (4 if args.tiny else 16)
    args.max_new_tokens = args.max_new_tokens or (4 if args.tiny else 48)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(
            f"gpu_check: SKIP: no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False); "
            "run it on a GPU machine, or pass --allow-cpu for a dry run of the same checks on the CPU",
            flush=True,
        )
        return 0
    with only_name_value_lines():
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
