"""NeuronXACallback inside real (tiny) Hugging Face Trainer runs: schedule, JSONL, eval metrics, early stopping,
resume, strictness, W&B, and the guarantee that training is bitwise the same with and without the callback."""

from __future__ import annotations

import logging

import pytest
import torch

from neuronxa_callback.hosts.trainer import MeasurementError, NeuronXACallback
from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer
from tests._runs import FAST, PAIR, make_trainer, records_of


def test_schedule_baseline_every_eval_steps_on_evaluate_and_at_end_without_duplicates(tmp_path):
    callback = NeuronXACallback(eval_steps=2, **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=7, with_eval=True, eval_strategy="steps", eval_steps=3)
    trainer.train()
    records = records_of(tmp_path)
    # 6 coincides for eval_steps and evaluation: measured once (by on_step_end, which runs first). The Trainer
    # also evaluates at the last step, so on_train_end finds step 7 measured and skips it.
    assert [(r["step"], r["trigger"]) for r in records] == [
        (0, "train_begin"),
        (2, "step"),
        (3, "evaluate"),
        (4, "step"),
        (6, "step"),
        (7, "evaluate"),
    ]
    assert [r["measurement_index"] for r in records] == list(range(6))
    # The evaluation metrics carry the alignment (mutated in on_evaluate after the Trainer logged its metrics).
    metrics = trainer.evaluate()
    last = records_of(tmp_path)[-1]
    assert last["step"] == 7  # evaluate() at the already-measured final step did not measure again
    assert metrics["eval_neuronxa_nasca"] == pytest.approx(last["pairs"][PAIR]["nasca_mean"])
    assert metrics["eval_neuronxa_navca"] == pytest.approx(last["pairs"][PAIR]["navca_mean"])
    assert metrics[f"eval_neuronxa_{PAIR}_nasca"] == pytest.approx(last["pairs"][PAIR]["nasca_mean"])
    # ... and the Trainer's own logs stay clean.
    assert not any(key.startswith("neuronxa") for entry in trainer.state.log_history for key in entry)


def test_eval_steps_zero_measures_only_at_begin_and_end_and_jsonl_has_the_schema(tmp_path):
    callback = NeuronXACallback(eval_steps=0, languages="isl_Latn,deu_Latn", **FAST)
    make_trainer(tmp_path, [callback], max_steps=3).train()
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (3, "train_end")]
    record = records[0]
    assert record["schema"] == 1 and record["event"] == "measurement"
    assert set(record["pairs"]) == {PAIR, "eng_Latn-deu_Latn"}
    pair = record["pairs"][PAIR]
    assert len(pair["nasca"]) == len(pair["navca"]) == pair["num_layers"] == 2
    assert pair["nasca_mean"] == pytest.approx(sum(pair["nasca"]) / 2)
    assert "quality" not in record  # quality_every=0: never translates
    assert set(record["timing"]) >= {"alignment_seconds", "generation_seconds", "quality_seconds"}
    assert record["timing"]["alignment_seconds"] > 0 and record["timing"]["generation_seconds"] == 0
    assert len(record["data"]["ids"]) == 8 and record["data"]["origin"].startswith("NTREX-128")  # the default data
    assert record["settings"]["languages"] == ["isl_Latn", "deu_Latn"]


def test_training_is_bitwise_identical_with_and_without_the_callback(tmp_path):
    def run(callbacks, name):
        torch.manual_seed(1234)  # same global RNG state before both runs
        trainer = make_trainer(tmp_path / name, callbacks, max_steps=3, dropout=0.2)
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        return losses, {name: p.detach().clone() for name, p in trainer.model.named_parameters()}, trainer.model

    plain_losses, plain_params, _ = run([], "plain")
    callback = NeuronXACallback(eval_steps=1, quality_every=2, **FAST)
    measured_losses, measured_params, model = run([callback], "measured")
    assert len(records_of(tmp_path / "measured")) == 4 and "quality" in records_of(tmp_path / "measured")[0]
    assert measured_losses == plain_losses
    assert plain_params.keys() == measured_params.keys()
    assert all(torch.equal(plain_params[k], measured_params[k]) for k in plain_params)
    assert model.training  # left in train mode


def test_correlation_block_equals_scipy_on_the_logged_numbers(tmp_path):
    from scipy import stats

    callback = NeuronXACallback(eval_steps=1, quality_every=1, **{**FAST, "num_pairs": 16})
    make_trainer(tmp_path, [callback], max_steps=4, learning_rate=5e-2).train()
    records = records_of(tmp_path)
    assert all("quality" in r for r in records)
    assert [bool(r["correlation"]) for r in records] == [False, False, True, True, True]
    nasca = [r["pairs"][PAIR]["nasca_mean"] for r in records]
    chrf = [r["quality"][PAIR]["chrf"] for r in records]
    logged = records[-1]["correlation"][PAIR]["chrf"]
    assert logged["n"] == 5
    # The comparison below is the test: a constant series (r undefined) would leave nothing to compare. The high
    # learning rate moves both series (measured: NASCA 0.06 -> 0 -> 0.03, chrF 1.87 -> 1.13 over the 5 points).
    assert len(set(nasca)) > 1 and len(set(chrf)) > 1, (nasca, chrf)
    assert logged["reason"] is None
    assert logged["pearson"] == pytest.approx(stats.pearsonr(nasca, chrf).statistic)
    assert logged["spearman"] == pytest.approx(stats.spearmanr(nasca, chrf).statistic)
    assert records[0]["quality"][PAIR]["direction"] == "isl_Latn->eng_Latn"
    assert len(records[0]["quality"][PAIR]["translations"]) == 16


def test_quality_num_pairs_translates_only_the_first_k_scored_pairs(tmp_path):
    callback = NeuronXACallback(eval_steps=0, quality_every=1, quality_num_pairs=3, **FAST)
    make_trainer(tmp_path, [callback], max_steps=1).train()
    records = records_of(tmp_path)
    assert len(records) == 2
    for record in records:
        translations = record["quality"][PAIR]["translations"]
        assert [t["id"] for t in translations] == record["data"]["ids"][:3]  # the first three of the 8 scored pairs
        assert record["pairs"][PAIR]["nasca"] and len(record["data"]["ids"]) == 8  # alignment still uses all 8


@pytest.mark.parametrize("max_steps", [3, 4])  # the last step measured by on_train_end (3) or by on_step_end (4)
def test_the_final_measurement_always_scores_quality(tmp_path, max_steps):
    callback = NeuronXACallback(eval_steps=2, quality_every=10, quality_num_pairs=2, **FAST)
    make_trainer(tmp_path, [callback], max_steps=max_steps).train()
    records = records_of(tmp_path)
    assert [r["step"] for r in records] == [0, 2, max_steps]
    assert ["quality" in r for r in records] == [True, False, True]  # baseline (index 0) and the final one


def test_plateau_early_stopping_fires_at_the_expected_measurement(tmp_path, caplog):
    # learning_rate=0: the weights never change, so alignment is constant and the 2nd measurement is not better.
    callback = NeuronXACallback(eval_steps=2, early_stopping_patience=1, **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=10, learning_rate=0.0)
    with caplog.at_level(logging.INFO, logger="neuronxa_callback"):
        trainer.train()
    assert trainer.state.global_step == 2
    records = records_of(tmp_path)
    assert [r["step"] for r in records] == [0, 2]
    assert [r["early_stopping"]["should_stop"] for r in records] == [False, True]
    assert records[1]["early_stopping"]["bad_measurements"] == 1 and records[1]["early_stopping"]["reason"]
    assert records[1]["early_stopping"]["pair"] == PAIR
    assert any("stopping training at step 2" in m for m in caplog.messages)


@pytest.mark.parametrize("restore_states", [True, False], ids=["trainer-restores-state", "fresh-callback"])
def test_resume_from_checkpoint_restores_history_and_patience(tmp_path, restore_states):
    settings = dict(eval_steps=2, early_stopping_patience=10, **FAST)
    common = dict(
        max_steps=4,
        learning_rate=0.0,
        save_strategy="steps",
        save_steps=2,
        restore_callback_states_from_checkpoint=restore_states,
    )
    make_trainer(tmp_path / "straight", [NeuronXACallback(**settings)], **common).train()
    expected = records_of(tmp_path / "straight")

    make_trainer(tmp_path / "resumed", [NeuronXACallback(**settings)], **common).train()
    resumed = make_trainer(tmp_path / "resumed", [NeuronXACallback(**settings)], **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-2"))
    records = records_of(tmp_path / "resumed")
    assert [r["step"] for r in records] == [r["step"] for r in expected] == [0, 2, 4]
    assert [r["early_stopping"]["bad_measurements"] for r in records] == [0, 1, 2]
    assert [r["measurement_index"] for r in records] == [0, 1, 2]
    callback = next(cb for cb in resumed.callback_handler.callbacks if isinstance(cb, NeuronXACallback))
    assert callback.history.steps == [0, 2, 4]
    assert callback.plateau.bad_measurements == 2
    assert callback.monitor.restored is restore_states


def test_eval_metric_drives_best_model_selection(tmp_path):
    callback = NeuronXACallback(eval_steps=0, **FAST)
    trainer = make_trainer(
        tmp_path,
        [callback],
        max_steps=4,
        learning_rate=5e-2,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="eval_neuronxa_nasca",
        load_best_model_at_end=True,
    )
    trainer.train()
    evaluations = {
        r["step"]: r["pairs"][PAIR]["nasca_mean"] for r in records_of(tmp_path) if r["trigger"] == "evaluate"
    }
    assert sorted(evaluations) == [2, 4]
    best_step = max(evaluations, key=lambda s: (evaluations[s], -s))  # ties: the first one stays best
    assert trainer.state.best_metric == pytest.approx(evaluations[best_step])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")


def test_hf_early_stopping_callback_sees_the_alignment_metric(tmp_path):
    from transformers import EarlyStoppingCallback

    callbacks = [NeuronXACallback(eval_steps=0, **FAST), EarlyStoppingCallback(early_stopping_patience=1)]
    trainer = make_trainer(
        tmp_path,
        callbacks,
        max_steps=20,
        learning_rate=0.0,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="eval_neuronxa_nasca",
        load_best_model_at_end=True,
    )
    trainer.train()
    # Constant alignment: evaluation 1 sets the best, evaluation 2 does not improve -> HF stops at step 4.
    assert trainer.state.global_step == 4


def test_a_comet_model_that_does_not_load_stops_the_run_unless_strict_false(tmp_path, caplog):
    not_comet = tmp_path / "not-a-comet-model"
    not_comet.mkdir()  # exists, so construction accepts it; loading it fails at train begin
    settings = dict(eval_steps=0, quality_every=1, comet_model=str(not_comet), **FAST)
    with caplog.at_level(logging.ERROR, logger="neuronxa_callback"):
        trainer = make_trainer(tmp_path / "lenient", [NeuronXACallback(strict=False, **settings)], max_steps=2)
        trainer.train()
    assert trainer.state.global_step == 2
    assert any("comet_model" in m and "not-a-comet-model" in m for m in caplog.messages)
    records = records_of(tmp_path / "lenient")
    assert [r["step"] for r in records] == [0, 2]
    assert records[0]["quality"][PAIR]["chrf"] is not None and "comet" not in records[0]["quality"][PAIR]

    for strict in (None, True):
        trainer = make_trainer(
            tmp_path / f"strict-{strict}", [NeuronXACallback(strict=strict, **settings)], max_steps=2
        )
        with pytest.raises(MeasurementError, match="comet_model"):
            trainer.train()
        assert trainer.state.global_step == 0


def test_bad_data_file_fails_where_the_callback_is_built(tmp_path):
    from neuronxa_callback.settings import SettingsError

    with pytest.raises(SettingsError, match="missing.tsv"):
        NeuronXACallback(data=str(tmp_path / "missing.tsv"), **FAST)


def test_unsupported_architecture_surfaces_at_train_begin(tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    tokenizer = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        is_decoder=True,
    )
    trainer = make_trainer(
        tmp_path, [NeuronXACallback(strict=True, **FAST)], max_steps=1, model=BertLMHeadModel(config)
    )
    with pytest.raises(MeasurementError, match="register_architecture"):
        trainer.train()


@pytest.mark.slow  # W&B start-up and shutdown alone take ~30-60 s on 2 shared cores
def test_wandb_offline_run_has_the_measurements(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from tests._records import items_to_dict, wait_for_run_file

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    callback = NeuronXACallback(eval_steps=2, **FAST)
    make_trainer(tmp_path / "out", [callback], max_steps=4, report_to=["wandb"]).train()
    records = records_of(tmp_path / "out")
    run_files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    history = [
        items_to_dict(r.history.item)
        for r in wait_for_run_file(run_files[0])
        if r.WhichOneof("record_type") == "history"
    ]
    # The headline under the name the Trainer's W&B integration gives it when the callback is attached.
    measured = [row for row in history if f"eval/neuronxa/{PAIR}/nasca_mean" in row]
    assert [row["train/global_step"] for row in measured] == [r["step"] for r in records] == [0, 2, 4]
    assert [row[f"eval/neuronxa/{PAIR}/nasca_mean"] for row in measured] == pytest.approx(
        [r["pairs"][PAIR]["nasca_mean"] for r in records]
    )
    assert any("train/loss" in row or "loss" in row for row in history)  # the Trainer's own run, shared
    # At the end the report's figures (`neuronxa report`) go to the same run; its heatmap is the last live one
    # (neuronxa/<pair>/nasca_heatmap, logged at every measurement), so it is not logged again.
    figures = {key for row in history for key in row if key.startswith("neuronxa/figures/")}
    assert f"neuronxa/figures/trend/{PAIR}" in figures
    assert [row["train/global_step"] for row in history if f"neuronxa/{PAIR}/nasca_heatmap" in row] == [0, 2, 4]
    assert (tmp_path / "out" / "neuronxa" / "report" / "report.md").is_file()


def test_no_gradients_and_no_tensor_growth_over_20_measurements(tmp_path):
    import gc

    from transformers.trainer_callback import TrainerControl, TrainerState

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer)
    callback = NeuronXACallback(eval_steps=1, **{**FAST, "num_pairs": 4})
    trainer = make_trainer(tmp_path, [callback], max_steps=1, model=model)
    model.train()
    model.activation_checkpointing_enable()
    model.config.use_cache = True  # the Trainer set it to args.use_cache; the callback must leave whatever it finds
    state, control, args = TrainerState(), TrainerControl(), trainer.args
    kwargs = dict(model=model, processing_class=tokenizer)
    callback.on_train_begin(args, state, control, **kwargs)

    def live_tensors() -> int:
        gc.collect()
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))

    counts = {}
    for step in range(1, 21):
        state.global_step = step
        callback.on_step_end(args, state, control, **kwargs)
        if step in (2, 20):
            counts[step] = live_tensors()
    assert len(records_of(tmp_path)) == 21
    assert counts[20] == counts[2], counts  # nothing accumulates from one measurement to the next
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(m.training for m in model.modules())
    assert model.is_activation_checkpointing and model.config.use_cache is True and tokenizer.padding_side == "left"


@pytest.mark.integration
@pytest.mark.slow
def test_gemma_lora_run_writes_a_sane_jsonl(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from neuronxa_callback.data.loaders import load_training_pairs
    from neuronxa_callback.instrument.models import load_model_and_tokenizer, prepare_for_training

    # A private copy (not the session `gemma` fixture): LoRA injects layers into the model it wraps.
    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
    model = get_peft_model(
        prepare_for_training(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    examples = [
        {"input_ids": tokenizer(f"Icelandic: {isl}\nEnglish: {eng}", truncation=True, max_length=32)["input_ids"]}
        for eng, isl in load_training_pairs("bundled")[:16]
    ]
    callback = NeuronXACallback(eval_steps=2, num_pairs=16, quality_every=2, max_new_tokens=16, batch_size=8)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        gradient_checkpointing=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=examples,
        processing_class=tokenizer,
        callbacks=[callback],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.train()
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (3, "train_end")]
    for record in records:
        pair = record["pairs"][PAIR]
        assert pair["num_layers"] == len(pair["nasca"]) == 18
        assert all(0.0 <= x <= 1.0 for x in pair["nasca"] + pair["navca"])
    assert [("quality" in r) for r in records] == [True, False, True]
    chrf = records[0]["quality"][PAIR]["chrf"]
    assert chrf is not None and 0.0 < chrf <= 100.0
    hypotheses = [t["hypothesis"] for t in records[0]["quality"][PAIR]["translations"]]
    assert len(hypotheses) == 16 and sum(bool(h.strip()) for h in hypotheses) >= 8
