"""AlignmentMonitor driven by a plain PyTorch loop (no Trainer): schedule, records, plateau stop, resume from
state_dict, and a model left as found."""

from __future__ import annotations

import json

import pytest
import torch

from neuronxa_callback import AlignmentMonitor
from neuronxa_callback.sinks.jsonl import read_jsonl
from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer
from tests._runs import FAST


def plain_loop(
    monitor: AlignmentMonitor,
    output_dir,
    *,
    steps: int,
    learning_rate: float = 5e-3,
    start: int = 0,
    model=None,
    tokenizer=None,
):
    """The few lines a user adds to their own loop: begin, baseline, due -> measure, should_stop, end."""
    tokenizer = tokenizer or tiny_tokenizer()
    model = model or tiny_model("llama", tokenizer=tokenizer, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    batch = tokenizer(corpus_sentences()[:4], return_tensors="pt", padding=True)
    monitor.begin(model, tokenizer, output_dir=output_dir, step=start)
    if start == 0:
        monitor.measure(model, tokenizer, step=0, trigger="train_begin")
    step = start
    while step < steps:
        model.train()
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if monitor.due(step):
            monitor.measure(model, tokenizer, step=step)
        if monitor.should_stop:
            break
    monitor.end(model, tokenizer, step=step)
    return model, step


def test_a_plain_loop_gets_the_schedule_and_a_final_measurement(tmp_path):
    monitor = AlignmentMonitor(eval_steps=2, quality_every=2, quality_num_pairs=2, **FAST)
    plain_loop(monitor, tmp_path, steps=5)
    records = read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")
    assert [(r["step"], r["trigger"]) for r in records] == [
        (0, "train_begin"),
        (2, "step"),
        (4, "step"),
        (5, "train_end"),
    ]
    assert ["quality" in r for r in records] == [True, False, True, True]
    assert [r["measurement_index"] for r in records] == [0, 1, 2, 3]
    summary = json.loads((tmp_path / "neuronxa" / "summary.json").read_text())
    assert summary["steps"] == [0, 2, 4, 5] and summary["measured"] == 4


def test_should_stop_on_a_plateau(tmp_path):
    monitor = AlignmentMonitor(eval_steps=1, early_stopping_patience=1, **FAST)
    _, last = plain_loop(monitor, tmp_path, steps=10, learning_rate=0.0)
    assert monitor.should_stop and last == 1 and monitor.stop_reason
    assert [r["step"] for r in read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")] == [0, 1]


def test_resume_from_state_dict_continues_without_duplicates(tmp_path):
    straight = AlignmentMonitor(eval_steps=2, early_stopping_patience=10, **FAST)
    plain_loop(straight, tmp_path / "straight", steps=4, learning_rate=0.0)

    first = AlignmentMonitor(eval_steps=2, early_stopping_patience=10, **FAST)
    model, _ = plain_loop(first, tmp_path / "resumed", steps=2, learning_rate=0.0)
    saved = json.loads(json.dumps(first.state_dict()))  # what a checkpoint would hold
    second = AlignmentMonitor(eval_steps=2, early_stopping_patience=10, **FAST)
    second.load_state_dict(saved)
    plain_loop(second, tmp_path / "resumed", steps=4, learning_rate=0.0, start=2, model=model)
    resumed = read_jsonl(tmp_path / "resumed" / "neuronxa" / "metrics.jsonl")
    expected = read_jsonl(tmp_path / "straight" / "neuronxa" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in expected] == [0, 2, 4]
    assert [r["early_stopping"]["bad_measurements"] for r in resumed] == [0, 1, 2]
    assert second.history.steps == [0, 2, 4]


def test_a_measurement_leaves_the_model_as_found(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer, seed=0)
    model.train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng = torch.get_rng_state()
    monitor = AlignmentMonitor(eval_steps=1, **FAST)
    monitor.begin(model, tokenizer, output_dir=tmp_path)
    assert monitor.measure(model, tokenizer, step=0, trigger="train_begin")
    assert model.training and tokenizer.padding_side == "left"
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert not monitor.measure(model, tokenizer, step=0)  # a step is measured once


def test_settings_or_keywords_not_both():
    from neuronxa_callback.settings import CallbackSettings

    with pytest.raises(TypeError, match="not both"):
        AlignmentMonitor(CallbackSettings.from_kwargs(**FAST), eval_steps=2)
    assert AlignmentMonitor(CallbackSettings.from_kwargs(**FAST)).settings.num_pairs == FAST["num_pairs"]


def test_the_schedule_is_what_the_monitor_follows():
    monitor = AlignmentMonitor(eval_steps=3, quality_every=2, **FAST)
    schedule = monitor.schedule
    assert [step for step in range(10) if schedule.measures_at(step)] == [0, 3, 6, 9]
    assert [schedule.translates(index) for index in range(4)] == [True, False, True, False]
    assert schedule.translates(3, final=True)
    assert not AlignmentMonitor(eval_steps=0, **FAST).schedule.measures_at(5)
