"""One tiny Trainer run with NeuronXACallback, for tests/test_fault_injection.py: run it, SIGKILL it, run it again.

Usage::

    python tests/_fault_run.py OUTPUT_DIR                       # trains, or resumes from the last complete checkpoint
    NEURONXA_FAULT=jsonl:3 python tests/_fault_run.py OUTPUT_DIR  # ... and SIGKILLs itself at the 3rd JSONL write

A tiny Llama from config (seeded), checkpoints every SAVE_STEPS steps, the callback measuring every EVAL_STEPS
steps (quality every 2nd measurement) into OUTPUT_DIR/neuronxa/metrics.jsonl. NEURONXA_FAULT="<point>:<n>" kills
the process with SIGKILL the n-th time (counted from this process's start) it reaches <point>:
  step        after a training step's backward, before the optimizer step
  measure     inside a measurement: alignment scored, nothing recorded yet
  jsonl       half-way through writing a JSONL line (the first half is on disk, fsynced: a torn line)
  checkpoint  inside a checkpoint save: weights and optimizer written, trainer_state.json not yet
The hooks are this script's own monkeypatches: the library has no test-only code paths.

Resuming: transformers writes checkpoint-N in place, so a kill mid-save leaves a directory without
trainer_state.json (its last file). resume_from_checkpoint=True would pick it and fail; like a user would, this
script removes such incomplete checkpoints first, then resumes from the newest complete one. A run whose newest
complete checkpoint is at max_steps has finished training (its final record is written before that checkpoint is
saved) and is not started again: transformers 5 resuming at global_step == max_steps trains one step more.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_STEPS = 12
SAVE_STEPS = 2
EVAL_STEPS = 3
CALLBACK = dict(
    eval_steps=EVAL_STEPS,
    quality_every=2,
    num_pairs=8,
    batch_size=8,
    max_length=48,
    max_new_tokens=4,
    num_fewshot=1,
    quality_num_pairs=4,
)


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Fault:
    def __init__(self, spec: str | None) -> None:
        self.point, self.at, self.count = None, 0, 0
        if spec:
            self.point, at = spec.split(":")
            self.at = int(at)

    def reached(self, point: str) -> bool:
        """True when this is the n-th arrival at the chosen point (the caller then dies in its own way)."""
        if point != self.point:
            return False
        self.count += 1
        return self.count == self.at


def _install_faults(fault: _Fault):
    import neuronxa_callback.measure.measurement as measurement
    from neuronxa_callback.sinks.jsonl import JsonlLogger

    score = measurement.score_alignment

    def score_then_maybe_die(*args, **kwargs):
        report = score(*args, **kwargs)
        if fault.reached("measure"):
            _die()
        return report

    measurement.score_alignment = score_then_maybe_die

    log = JsonlLogger.log_measurement

    def log_or_tear(self, record):
        if fault.reached("jsonl"):
            import json

            line = json.dumps(record, ensure_ascii=False) + "\n"
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line[: len(line) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            _die()
        return log(self, record)

    JsonlLogger.log_measurement = log_or_tear


def _complete(checkpoint: Path) -> bool:
    return (checkpoint / "trainer_state.json").is_file()


def main(output_dir: str) -> None:
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    from neuronxa_callback import NeuronXACallback
    from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

    fault = _Fault(os.environ.get("NEURONXA_FAULT"))
    _install_faults(fault)

    class Announce(TrainerCallback):
        """Tells the test when training proper begins (after imports and set-up), to time random kills from there."""

        def on_train_begin(self, args, state, control, **kwargs):
            print(f"TRAIN_BEGIN step={state.global_step}", flush=True)

    class FaultyTrainer(Trainer):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            if fault.reached("step"):
                _die()
            return loss

        def _save_optimizer_and_scheduler(self, output_dir):
            super()._save_optimizer_and_scheduler(output_dir)
            if fault.reached("checkpoint"):
                _die()

    out = Path(output_dir)
    checkpoints = sorted(out.glob("checkpoint-*")) if out.is_dir() else []
    for checkpoint in checkpoints:
        if not _complete(checkpoint):
            print(f"removing incomplete {checkpoint.name}", flush=True)
            shutil.rmtree(checkpoint)
    complete = [c for c in checkpoints if _complete(c)]
    resume = bool(complete)
    if complete:
        import json

        last = max(json.loads((c / "trainer_state.json").read_text())["global_step"] for c in complete)
        if last >= MAX_STEPS:
            print(f"DONE step={last} resumed=finished-already", flush=True)
            return

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    model.train()
    items = [{"input_ids": tokenizer(s, truncation=True, max_length=24)["input_ids"]} for s in corpus_sentences()] * 2
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        report_to=[],
        save_strategy="steps",
        save_steps=SAVE_STEPS,
        logging_steps=1,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    torch.manual_seed(0)
    trainer = FaultyTrainer(
        model=model,
        args=args,
        train_dataset=items,
        processing_class=tokenizer,
        callbacks=[NeuronXACallback(**CALLBACK), Announce()],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.train(resume_from_checkpoint=True if resume else None)
    print(f"DONE step={trainer.state.global_step} resumed={resume}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
