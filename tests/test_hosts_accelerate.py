"""AlignmentMonitor in a plain Accelerate loop with AccelerateTrackers: a real Accelerator logging to TensorBoard
gets the measurements' headline numbers on the measured steps (gradient accumulation counts optimizer steps)."""

from __future__ import annotations

import pytest
import torch

from neuronxa_callback import AlignmentMonitor
from neuronxa_callback.hosts.accelerate import AccelerateTrackers
from neuronxa_callback.sinks.jsonl import read_jsonl
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer
from tests._runs import FAST

PAIR = "eng_Latn-isl_Latn"


def accelerate_loop(project_dir, monitor: AlignmentMonitor, *, max_steps: int, accumulation: int = 1):
    """The documented loop (neuronxa_callback/hosts/accelerate.py) on the tiny Llama."""
    from accelerate import Accelerator

    accelerator = Accelerator(
        log_with="tensorboard", project_dir=str(project_dir), cpu=True, gradient_accumulation_steps=accumulation
    )
    accelerator.init_trackers("run")
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)

    def collate(sentences):
        batch = tokenizer(sentences, return_tensors="pt", padding=True, truncation=True, max_length=24)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return dict(batch)

    loader = torch.utils.data.DataLoader(corpus_sentences() * 4, batch_size=4, collate_fn=collate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    monitor.begin(
        accelerator.unwrap_model(model),
        tokenizer,
        output_dir=project_dir,
        sinks=lambda measured: [AccelerateTrackers(accelerator)],
    )
    monitor.measure(accelerator.unwrap_model(model), tokenizer, step=0, trigger="train_begin")
    step = 0
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            step += 1
            accelerator.log({"train_loss": loss.item()}, step=step)
            if monitor.due(step):
                monitor.measure(accelerator.unwrap_model(model), tokenizer, step=step)
            if monitor.should_stop or step >= max_steps:
                break
    monitor.end(accelerator.unwrap_model(model), tokenizer, step=step)
    accelerator.end_training()
    return step


def tensorboard_scalars(project_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(project_dir / "run"), size_guidance={"scalars": 0})  # init_trackers("run")
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_tensorboard_through_accelerate_has_the_measurements_on_the_optimizer_steps(tmp_path):
    monitor = AlignmentMonitor(eval_steps=2, quality_every=2, **FAST)
    last = accelerate_loop(tmp_path, monitor, max_steps=5, accumulation=2)
    assert last == 5
    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    assert [(r["step"], r["trigger"]) for r in records] == [
        (0, "train_begin"),
        (2, "step"),
        (4, "step"),
        (5, "train_end"),
    ]
    scalars = tensorboard_scalars(tmp_path)
    nasca = scalars[f"eval/neuronxa/{PAIR}/nasca_mean"]
    assert [s for s, _ in nasca] == [0, 2, 4, 5]
    assert [v for _, v in nasca] == pytest.approx([r["pairs"][PAIR]["nasca_mean"] for r in records], abs=1e-6)
    chrf = scalars[f"eval/neuronxa/{PAIR}/chrf"]
    assert [s for s, _ in chrf] == [r["step"] for r in records if "quality" in r] == [0, 4, 5]
    assert [s for s, _ in scalars["train_loss"]] == [1, 2, 3, 4, 5]  # the loop's own metric shares the run


def test_a_tracker_failure_is_a_warning_not_a_stopped_run(tmp_path, caplog):
    from accelerate import Accelerator
    from accelerate.tracking import GeneralTracker

    class DownTracker(GeneralTracker):
        name = "down"
        requires_logging_directory = False

        def __init__(self):
            super().__init__()

        @property
        def tracker(self):
            return None

        def store_init_configuration(self, values):
            pass

        def log(self, values, step=None, **kwargs):
            raise RuntimeError("tracker down")

    accelerator = Accelerator(log_with=[DownTracker()], cpu=True)
    accelerator.init_trackers("run")
    sink = AccelerateTrackers(accelerator)
    with caplog.at_level("WARNING", logger="neuronxa_callback"):
        sink.log_measurement({"step": 3, "pairs": {PAIR: {"nasca_mean": 0.5, "nasca": [0.5]}}})
    assert any("tracker down" in message and "step 3" in message for message in caplog.messages)
