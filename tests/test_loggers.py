"""JsonlLogger (append, resume, crash tolerance), read_jsonl errors, flat metric names, and W&B offline read-back of
the W&B sink used without a Trainer to log through (WandbLogger, the public name of trackers.WandbSink)."""

from __future__ import annotations

import json
import logging

import pytest

from neuronxa_callback import WandbLogger
from neuronxa_callback.sinks.jsonl import JsonlFormatError, JsonlLogger, read_jsonl
from neuronxa_callback.sinks.names import flatten_record
from tests._records import PAIR, RECORDS, items_to_dict, make_record, wait_for_run_file


def test_jsonl_appends_one_line_per_measurement(tmp_path):
    path = tmp_path / "neuronxa" / "metrics.jsonl"
    logger = JsonlLogger(path)
    for record in RECORDS:
        logger.log_measurement(record)
    logger.finish()
    assert len(path.read_text().splitlines()) == 3
    assert read_jsonl(path) == RECORDS
    assert logger.records == RECORDS


def test_jsonl_resume_drops_records_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = JsonlLogger(path)
    for record in RECORDS:
        first.log_measurement(record)
    resumed = JsonlLogger(path, resume_step=50)  # the checkpoint was at step 50; step 100 will be measured again
    assert [r["step"] for r in resumed.records] == [0, 50]
    assert [r["step"] for r in read_jsonl(path)] == [0, 50]
    resumed.log_measurement(make_record(100, [0.3, 0.3, 0.3], index=2))
    assert [r["step"] for r in read_jsonl(path)] == [0, 50, 100]
    assert read_jsonl(path)[-1]["pairs"][PAIR]["nasca"] == [0.3, 0.3, 0.3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary file left behind


def test_jsonl_relogging_a_step_replaces_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = JsonlLogger(path)
    for record in RECORDS:
        logger.log_measurement(record)
    again = make_record(50, [0.5, 0.5, 0.5], index=1)
    JsonlLogger(path).log_measurement(again)  # e.g. a resumed run measuring its checkpoint's step once more
    assert [r["step"] for r in read_jsonl(path)] == [0, 100, 50]
    assert read_jsonl(path)[-1] == again


def test_jsonl_resume_without_step_keeps_everything_and_appends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    JsonlLogger(path).log_measurement(RECORDS[0])
    again = JsonlLogger(path)
    again.log_measurement(RECORDS[1])
    assert read_jsonl(path) == RECORDS[:2]


def test_jsonl_drops_a_truncated_last_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(r) for r in RECORDS[:2]]
    path.write_text(lines[0] + "\n" + lines[1] + "\n" + json.dumps(RECORDS[2])[:40])  # crash mid-write
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback.sinks.jsonl"):
        logger = JsonlLogger(path, resume_step=100)
    assert f"{path}:3" in caplog.text and "truncated" in caplog.text
    assert logger.records == RECORDS[:2]
    logger.log_measurement(RECORDS[2])
    assert read_jsonl(path) == RECORDS  # the broken piece is gone, the new line is whole


def test_read_jsonl_names_file_and_line_of_malformed_input(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n{not json\n" + json.dumps(RECORDS[1]) + "\n")
    with pytest.raises(JsonlFormatError, match=rf"{path}:2: not valid JSON"):
        read_jsonl(path)
    with pytest.raises(JsonlFormatError, match=rf"{path}:2"):
        JsonlLogger(path)
    path.write_text(json.dumps(RECORDS[0]) + "\n[1, 2]\n")
    with pytest.raises(JsonlFormatError, match=rf"{path}:2: expected a JSON object, got list"):
        read_jsonl(path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_flatten_record_uses_the_design_names():
    record = dict(RECORDS[2])
    record["correlation"] = {
        PAIR: {
            "chrf": {
                "n": 3,
                "pearson": 0.9,
                "pearson_pvalue": 0.28,
                "spearman": 1.0,
                "spearman_pvalue": 0.0,
                "per_layer_pearson": [0.1, 0.9, None],
                "best_layer": 1,
            }
        }
    }
    record["early_stopping"] = {
        "metric": "nasca",
        "pair": PAIR,
        "value": 0.27,
        "smoothed": 0.25,
        "best": 0.25,
        "best_step": 100,
        "bad_measurements": 0,
        "should_stop": False,
        "reason": None,
    }
    flat = flatten_record(record)
    assert flat[f"neuronxa/{PAIR}/nasca_mean"] == pytest.approx(0.8 / 3)
    assert flat[f"neuronxa/{PAIR}/nasca/layer_01"] == 0.4
    assert flat[f"neuronxa/{PAIR}/navca/layer_02"] == 0.1
    assert flat[f"neuronxa/{PAIR}/chrf"] == 20.5
    assert f"neuronxa/{PAIR}/comet" not in flat  # None is left out, not logged as 0
    assert flat[f"neuronxa/{PAIR}/r_chrf"] == 0.9
    assert flat[f"neuronxa/{PAIR}/best_layer_chrf"] == 1
    assert flat["neuronxa/early_stopping/smoothed"] == 0.25
    assert flat["neuronxa/early_stopping/should_stop"] == 0.0
    assert all(isinstance(v, float) for v in flat.values())


# --- W&B offline: write a real run file and read it back -------------------------------------------------------


def test_wandb_offline_run_holds_the_series_on_the_trainer_step_axis(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert not WandbLogger.active()
    logger = WandbLogger(
        project="neuronxa-test",
        name="offline",
        dir=tmp_path,
        config={"every_steps": 50, "token": "hf_SECRETVALUE", "data": {"hub_token": "hf_OTHER"}},
    )
    assert WandbLogger.active() and logger.run is not None
    # The Trainer logs its loss at step 120 before the callback logs the step-100 measurement: with step= this
    # would be rejected as "step less than current step"; on the shared step axis it is fine.
    wandb.log({"train/loss": 2.5, "train/global_step": 120})
    for record in RECORDS:
        logger.log_measurement(record)
    logger.finish()
    assert not WandbLogger.active()

    run_files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    records = wait_for_run_file(run_files[0])
    history = [items_to_dict(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    # The headline under the name the Trainer's W&B integration gives it (the same series as when attached) ...
    measured = [row for row in history if f"eval/neuronxa/{PAIR}/nasca_mean" in row]
    assert [row["train/global_step"] for row in measured] == [0, 50, 100]
    assert [row[f"eval/neuronxa/{PAIR}/nasca_mean"] for row in measured] == pytest.approx(
        [r["pairs"][PAIR]["nasca_mean"] for r in RECORDS]
    )
    assert [row[f"eval/neuronxa/{PAIR}/chrf"] for row in measured] == [19.0, 19.5, 20.5]
    # ... the details under neuronxa/, and no number under a second name.
    assert [row[f"neuronxa/{PAIR}/nasca/layer_01"] for row in measured] == [0.2, 0.3, 0.4]
    assert not any(f"neuronxa/{PAIR}/nasca_mean" in row or f"neuronxa/{PAIR}/chrf" in row for row in history)
    assert [row["_step"] for row in history] == list(range(len(history)))  # W&B's own counter never went back
    assert all(row[f"neuronxa/{PAIR}/translations"]["_type"] == "table-file" for row in measured)
    assert all(row[f"neuronxa/{PAIR}/nasca_heatmap"]["_type"] == "image-file" for row in measured)

    metrics = [record.metric for record in records if record.WhichOneof("record_type") == "metric"]
    assert any(m.glob_name == "neuronxa/*" and m.step_metric == "train/global_step" for m in metrics)
    assert any(m.glob_name == "eval/neuronxa/*" and m.step_metric == "train/global_step" for m in metrics)

    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update(items_to_dict(record.summary.update))
    assert summary[f"eval/neuronxa/{PAIR}/nasca_mean_best"] == pytest.approx(0.8 / 3)
    assert summary[f"eval/neuronxa/{PAIR}/nasca_mean_best_step"] == 100
    assert summary[f"eval/neuronxa/{PAIR}/chrf_best"] == 20.5
    # nothing that looks like a credential went into the run
    config_file = next(run_files[0].parent.glob("files/config.yaml"), None)
    written = run_files[0].read_bytes() + (config_file.read_bytes() if config_file else b"")
    assert b"every_steps" in written
    assert b"hf_SECRETVALUE" not in written and b"hf_OTHER" not in written


def test_wandb_failures_become_warnings(tmp_path, monkeypatch, caplog):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(project="neuronxa-test", dir=tmp_path, heatmaps=False)
    run = logger.run

    class BrokenRun:
        """Stands in for a W&B run whose backend has died."""

        summary: dict = {}

        def log(self, payload):
            raise RuntimeError("backend gone")

        def finish(self):
            raise RuntimeError("backend gone")

    logger._run = BrokenRun()
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback.sinks.trackers"):
        logger.log_measurement(RECORDS[0])  # must not raise: training goes on, the JSONL has the record
        logger.finish()
    assert "logging step 0 to W&B failed" in caplog.text and "backend gone" in caplog.text
    run.finish()


def test_wandb_logger_without_run_and_without_init_logs_nothing(monkeypatch, caplog):
    pytest.importorskip("wandb")
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback.sinks.trackers"):
        logger = WandbLogger(init=False)
    assert logger.run is None and "init=False" in caplog.text
    logger.log_measurement(RECORDS[0])
    logger.finish()


def test_wandb_logger_joins_an_active_run_and_leaves_it_open(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    trainer_run = wandb.init(project="neuronxa-test", dir=tmp_path)  # what the Trainer's WandbCallback would start
    try:
        logger = WandbLogger(project="ignored", heatmaps=False, tables=False)
        assert logger.run is trainer_run
        logger.log_measurement(RECORDS[0])
        logger.finish()
        assert wandb.run is trainer_run  # the Trainer finishes its own run
    finally:
        trainer_run.finish()
