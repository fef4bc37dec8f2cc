"""NeuronXACallback.attach(trainer) in real tiny Trainer runs reporting to W&B (offline), TensorBoard, MLflow (local
SQLite store) and trackio (local): each backend's own files, read back with that backend's reader, hold the same
alignment values as the JSONL on the same steps, once each; the console and log_history stay short."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuronxa_callback.sinks.jsonl import read_jsonl
from neuronxa_callback.sinks.names import backend_key, detail_scalars, headline_for, trainer_scalars
from tests._records import items_to_dict, wait_for_run_file

REPO = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"
MEAN = f"{PAIR}/nasca_mean"
LAYER = f"neuronxa/{PAIR}/nasca/layer_01"
ALL_TRACKERS = ("wandb", "tensorboard", "mlflow", "trackio")


def run_worker(root: Path, report_to, *extra: str, steps: int = 5) -> dict:
    """tests/_tracker_run.py in its own process (trackio reads TRACKIO_DIR at import); returns what it printed."""
    env = {
        **os.environ,
        "TRACKIO_DIR": str(root / "trackio"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "WANDB_DIR": str(root),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO),
        "TRACKIO_DISABLE_TELEMETRY": "1",
        "DISABLE_MLFLOW_INTEGRATION": "FALSE",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests._tracker_run",
            str(root / "out"),
            ",".join(report_to),
            "--steps",
            str(steps),
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("LOG_HISTORY ")]
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "log_history": json.loads(line[len("LOG_HISTORY ") :])["log_history"],
        "records": read_jsonl(root / "out" / "neuronxa" / "metrics.jsonl"),
    }


# ----- readers: each backend's files through its own reader -----------------------------------------------------------
def wandb_history(root: Path) -> list[dict]:
    (run_file,) = (root / "wandb").glob("offline-run-*/run-*.wandb")
    return [
        items_to_dict(r.history.item) for r in wait_for_run_file(run_file) if r.WhichOneof("record_type") == "history"
    ]


def wandb_summary(root: Path) -> dict:
    (run_file,) = (root / "wandb").glob("offline-run-*/run-*.wandb")
    summary: dict = {}
    for record in wait_for_run_file(run_file):
        if record.WhichOneof("record_type") == "summary":
            summary.update(items_to_dict(record.summary.update))
    return summary


def assert_best_in_summary(summary: dict, records: list[dict]) -> None:
    """The run summary keeps the best layer-mean NASCA and its (first) step, named after the headline."""
    best = max(records, key=lambda r: (r["pairs"][PAIR]["nasca_mean"], -r["step"]))
    assert summary[f"eval/neuronxa/{MEAN}_best"] == pytest.approx(best["pairs"][PAIR]["nasca_mean"])
    assert summary[f"eval/neuronxa/{MEAN}_best_step"] == best["step"]


def tensorboard_scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = (root / "out" / "runs").iterdir()  # the Trainer's one run directory: no second writer, no subdir
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    out = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in tags["scalars"]}
    out["__images__"] = {tag: [e.step for e in accumulator.Images(tag)] for tag in tags["images"]}
    out["__text__"] = sorted(tags["tensors"])
    return out


def mlflow_history(root: Path, names) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)) for name in names}


def trackio_logs(root: Path, project: str = "neuronxa-test", run: str = "tiny") -> list[dict]:
    code = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
        f"print(json.dumps(S.get_logs({project!r}, {run!r}), default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TRACKIO_DIR": str(root / "trackio")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def by_step(rows: list[dict], key: str, step_key: str = "train/global_step") -> list[tuple[int, float]]:
    return sorted((int(row[step_key]), float(row[key])) for row in rows if key in row)


def assert_series(actual: list[tuple[int, float]], wanted: list[tuple[int, float]], *, may_be_empty=False) -> None:
    """Same steps, same values (TensorBoard stores float32: relative 1e-6)."""
    assert [step for step, _ in actual] == [step for step, _ in wanted]
    assert [value for _, value in actual] == pytest.approx([value for _, value in wanted], rel=1e-6, abs=1e-9)
    assert wanted or may_be_empty, "nothing to compare"


def expected(records: list[dict], key: str, *, detail: bool = False) -> list[tuple[int, float]]:
    pick = detail_scalars if detail else trainer_scalars
    return sorted((r["step"], pick(r)[key]) for r in records if key in pick(r))


def wandb_scalars_by_step(history: list[dict]) -> dict[int, dict[str, float]]:
    """{step: {name: value}} of every number with "neuronxa" in its name in a W&B run (media are dicts: left out)."""
    out: dict[int, dict[str, float]] = {}
    for row in history:
        for key, value in row.items():
            if "neuronxa" in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(int(row["train/global_step"]), {})[key] = float(value)
    return out


def tensorboard_scalars_by_step(scalars: dict) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for tag, series in scalars.items():
        if "neuronxa" in tag and not tag.startswith("__"):
            for step, value in series:
                out.setdefault(int(step), {})[tag] = float(value)
    return out


def assert_one_name_per_number(by_step: dict[int, dict[str, float]], records: list[dict], backend: str) -> None:
    """At each measured step the backend holds exactly the headline under its backend names and the details, and
    the layer-mean NASCA under one name only (no neuronxa/<pair>/nasca_mean, no eval_neuronxa_<pair>_nasca next to
    it). Per-layer series and early stopping's smoothed/best can hold the same value: other quantities."""
    assert sorted(by_step) == [r["step"] for r in records]
    for record in records:
        logged = by_step[record["step"]]
        assert set(logged) == set(headline_for(record, backend)) | set(detail_scalars(record)), record["step"]
        mean = record["pairs"][PAIR]["nasca_mean"]
        aliases = [
            key
            for key, value in logged.items()
            if re.search(r"nasca(_mean)?$", key) and value == pytest.approx(mean, rel=1e-6, abs=1e-9)
        ]
        assert aliases == [backend_key(f"eval_neuronxa/{MEAN}", backend)]


# ----- the tests ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_trackers_run(tmp_path_factory):
    for module in ("trackio", "tensorboard", "mlflow", "wandb"):
        pytest.importorskip(module)
    root = tmp_path_factory.mktemp("trackers")
    return root, run_worker(root, ALL_TRACKERS)


def test_jsonl_and_log_history_have_one_entry_per_measurement(all_trackers_run):
    root, run = all_trackers_run
    records = run["records"]
    # 5 steps, eval_steps=2: 0, 2, 4, and the final step 5 (measured at train end, before the trackers closed).
    assert [(r["step"], r["trigger"]) for r in records] == [
        (0, "train_begin"),
        (2, "step"),
        (4, "step"),
        (5, "train_end"),
    ]
    ours = [entry for entry in run["log_history"] if any(k.startswith("eval_neuronxa/") for k in entry)]
    assert [entry["step"] for entry in ours] == [0, 2, 4, 5]
    for entry, record in zip(ours, records):
        assert {k: v for k, v in entry.items() if k not in ("epoch", "step")} == pytest.approx(trainer_scalars(record))
    # The Trainer's own logging is untouched: a loss at every logging step (logging_steps=1), also at the measured
    # steps (trainer.log resets control.should_log, which the Trainer checks after on_step_end), loss entries carry
    # no neuronxa key, and no per-layer key anywhere.
    assert [entry["step"] for entry in run["log_history"] if "loss" in entry] == [1, 2, 3, 4, 5]
    assert all(not any("neuronxa" in k for k in entry) for entry in run["log_history"] if "loss" in entry)
    assert not any("/layer_" in k for entry in run["log_history"] for k in entry)


def test_wandb_offline_run_has_the_jsonl_values_on_the_trainer_steps(all_trackers_run):
    root, run = all_trackers_run
    history = wandb_history(root)
    records = run["records"]
    assert_series(by_step(history, f"eval/neuronxa/{MEAN}"), expected(records, f"eval_neuronxa/{MEAN}"))
    assert_series(by_step(history, LAYER), expected(records, LAYER, detail=True))
    assert_series(by_step(history, f"eval/neuronxa/{PAIR}/chrf"), expected(records, f"eval_neuronxa/{PAIR}/chrf"))
    # Media: one heatmap per measurement, the translations table whenever quality was scored, the report's figures.
    heatmaps = [row["train/global_step"] for row in history if f"neuronxa/{PAIR}/nasca_heatmap" in row]
    assert heatmaps == [0, 2, 4, 5]
    assert (
        history[[i for i, row in enumerate(history) if f"neuronxa/{PAIR}/translations" in row][0]][
            f"neuronxa/{PAIR}/translations"
        ]["_type"]
        == "table-file"
    )
    figures = {key for row in history for key in row if key.startswith("neuronxa/figures/")}
    assert f"neuronxa/figures/trend/{PAIR}" in figures
    assert not any(key.startswith("neuronxa/figures/heatmap") for key in figures)  # = the last live heatmap
    # Nothing is logged twice: the headline mean exists only under eval/, the per-layer series only under neuronxa/.
    assert not any(f"neuronxa/{MEAN}" in row for row in history)
    assert not any(f"eval/{LAYER}" in row for row in history)


def test_tensorboard_event_file_has_the_jsonl_values_on_the_trainer_steps(all_trackers_run):
    root, run = all_trackers_run
    scalars = tensorboard_scalars(root)
    records = run["records"]
    assert_series(scalars[f"eval/neuronxa/{MEAN}"], expected(records, f"eval_neuronxa/{MEAN}"))
    assert_series(scalars[LAYER], expected(records, LAYER, detail=True))
    assert scalars["__images__"][f"neuronxa/{PAIR}/nasca_heatmap"] == [0, 2, 4, 5]
    assert any(tag.startswith(f"neuronxa/{PAIR}/translations") for tag in scalars["__text__"])
    assert f"neuronxa/{MEAN}" not in scalars


def test_wandb_and_tensorboard_publish_each_number_under_one_name(all_trackers_run):
    root, run = all_trackers_run
    assert_one_name_per_number(wandb_scalars_by_step(wandb_history(root)), run["records"], "wandb")
    assert_best_in_summary(wandb_summary(root), run["records"])
    assert_one_name_per_number(tensorboard_scalars_by_step(tensorboard_scalars(root)), run["records"], "tensorboard")


def test_mlflow_store_has_the_jsonl_values_on_the_trainer_steps(all_trackers_run):
    root, run = all_trackers_run
    records = run["records"]
    names = [
        f"eval_neuronxa/{MEAN}",
        LAYER,
        f"eval_neuronxa/{PAIR}/chrf",
        f"eval_neuronxa/{PAIR}/r_chrf",
        f"neuronxa/{MEAN}",
    ]
    history = mlflow_history(root, names)
    assert_series(history[f"eval_neuronxa/{MEAN}"], expected(records, f"eval_neuronxa/{MEAN}"))
    assert_series(history[LAYER], expected(records, LAYER, detail=True))
    assert_series(history[f"eval_neuronxa/{PAIR}/chrf"], expected(records, f"eval_neuronxa/{PAIR}/chrf"))
    # r exists once 3 quality points exist and neither series is constant (a tiny random model may give constants).
    assert_series(
        history[f"eval_neuronxa/{PAIR}/r_chrf"], expected(records, f"eval_neuronxa/{PAIR}/r_chrf"), may_be_empty=True
    )
    assert history[f"neuronxa/{MEAN}"] == []


def test_trackio_database_has_the_jsonl_values_on_the_trainer_steps(all_trackers_run):
    root, run = all_trackers_run
    logs = trackio_logs(root)
    records = run["records"]
    assert_series(by_step(logs, f"eval/neuronxa/{MEAN}"), expected(records, f"eval_neuronxa/{MEAN}"))
    assert_series(by_step(logs, LAYER), expected(records, LAYER, detail=True))
    media = [row for row in logs if f"neuronxa/{PAIR}/nasca_heatmap" in row]
    # Media rows carry the training step as their own step too (the Media tab labels them with it).
    assert [(int(row["train/global_step"]), int(row["step"])) for row in media] == [(0, 0), (2, 2), (4, 4), (5, 5)]
    assert not any(f"neuronxa/{MEAN}" in row for row in logs)


def test_console_shows_each_measurement_once_without_per_layer_keys(all_trackers_run):
    root, run = all_trackers_run
    out = run["stdout"]
    assert "/layer_" not in out
    progress = [line for line in out.splitlines() if "NeuronXA step" in line]
    assert [line.split("NeuronXA step ")[1].split(":")[0] for line in progress] == ["0", "2", "4", "5"]
    assert all(len(line) < 400 for line in progress)


# ----- slow: each tracker alone, and the trackio dashboard in a real browser -------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("tracker", ALL_TRACKERS)
def test_each_tracker_alone_gets_the_jsonl_alignment(tracker, tmp_path):
    pytest.importorskip(tracker)
    run = run_worker(tmp_path, [tracker], steps=4)
    records = run["records"]
    wanted = expected(records, f"eval_neuronxa/{MEAN}")
    assert [step for step, _ in wanted] == [0, 2, 4]
    if tracker == "wandb":
        assert_series(by_step(wandb_history(tmp_path), f"eval/neuronxa/{MEAN}"), wanted)
    elif tracker == "tensorboard":
        assert_series(tensorboard_scalars(tmp_path)[f"eval/neuronxa/{MEAN}"], wanted)
    elif tracker == "mlflow":
        assert_series(mlflow_history(tmp_path, [f"eval_neuronxa/{MEAN}"])[f"eval_neuronxa/{MEAN}"], wanted)
    else:
        assert_series(by_step(trackio_logs(tmp_path), f"eval/neuronxa/{MEAN}"), wanted)


@pytest.mark.slow
def test_out_of_band_headline_is_on_the_measured_step_in_every_tracker(tmp_path):
    """measure_in="worker" (at most 2 in flight): results arrive steps after the step they measured, and every
    backend still shows the headline on the measured step, as the JSONL has it, not on the step it arrived at."""
    for module in ALL_TRACKERS:
        pytest.importorskip(module)
    run = run_worker(tmp_path, ALL_TRACKERS, "--measure-in", "worker", "--eval-steps", "1", steps=4)
    records = run["records"]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    late = [r["step"] for r in records if r["early_stopping"]["applied_at_step"] > r["step"]]
    assert late, "every result arrived at its own step: this run did not test a late one"
    wanted = expected(records, f"eval_neuronxa/{MEAN}")
    history = wandb_history(tmp_path)
    assert_series(by_step(history, f"eval/neuronxa/{MEAN}"), wanted)
    assert_series(tensorboard_scalars(tmp_path)[f"eval/neuronxa/{MEAN}"], wanted)
    assert_series(mlflow_history(tmp_path, [f"eval_neuronxa/{MEAN}"])[f"eval_neuronxa/{MEAN}"], wanted)
    assert_series(by_step(trackio_logs(tmp_path), f"eval/neuronxa/{MEAN}"), wanted)
    # The same names as in process, each number once; the sinks wrote the headline, so log_history has none of it.
    assert_one_name_per_number(wandb_scalars_by_step(history), records, "wandb")
    assert_one_name_per_number(tensorboard_scalars_by_step(tensorboard_scalars(tmp_path)), records, "tensorboard")
    assert not any("neuronxa" in key for entry in run["log_history"] for key in entry)


def test_unattached_wandb_run_has_the_same_names_as_an_attached_one(tmp_path):
    """callbacks=[callback] without attach(): the callback's own W&B sink joins the Trainer's run and writes the
    headline itself, under the name the Trainer's integration gives it when attached."""
    pytest.importorskip("wandb")
    run = run_worker(tmp_path, ["wandb"], "--unattached")
    records = run["records"]
    assert [r["step"] for r in records] == [0, 2, 4, 5]
    history = wandb_history(tmp_path)
    assert_series(by_step(history, f"eval/neuronxa/{MEAN}"), expected(records, f"eval_neuronxa/{MEAN}"))
    layer = f"neuronxa/{PAIR}/nasca/layer_00"
    assert_series(by_step(history, layer), expected(records, layer, detail=True))
    assert_series(by_step(history, f"eval/neuronxa/{PAIR}/chrf"), expected(records, f"eval_neuronxa/{PAIR}/chrf"))
    assert_one_name_per_number(wandb_scalars_by_step(history), records, "wandb")
    assert_best_in_summary(wandb_summary(tmp_path), records)
    # Not through trainer.log: log_history and the console stay the Trainer's own.
    assert not any("neuronxa" in key for entry in run["log_history"] for key in entry)
    # Media as when attached: a heatmap per measurement, the translations, the report's figures at the end.
    assert [row["train/global_step"] for row in history if f"neuronxa/{PAIR}/nasca_heatmap" in row] == [0, 2, 4, 5]
    assert any(f"neuronxa/{PAIR}/translations" in row for row in history)
    figures = {key for row in history for key in row if key.startswith("neuronxa/figures/")}
    assert f"neuronxa/figures/trend/{PAIR}" in figures
    assert any(row.get("loss") is not None or "train/loss" in row for row in history)  # the Trainer's run, shared


def test_unattached_callback_writes_the_jsonl_and_says_once_that_trackers_need_attach(tmp_path, caplog):
    pytest.importorskip("tensorboard")
    import logging

    from neuronxa_callback import NeuronXACallback
    from tests._runs import FAST, make_trainer

    callback = NeuronXACallback(eval_steps=1, **FAST)
    trainer = make_trainer(tmp_path, [callback], max_steps=2, report_to=["tensorboard"])
    with caplog.at_level(logging.INFO, logger="neuronxa_callback"):
        trainer.train()
    assert [r["step"] for r in read_jsonl(tmp_path / "neuronxa" / "metrics.jsonl")] == [0, 1, 2]
    hints = [r for r in caplog.records if "attach(trainer)" in r.getMessage()]
    assert len(hints) == 1 and "tensorboard" in hints[0].getMessage()
    assert not any(k.startswith("eval_neuronxa/") for entry in trainer.state.log_history for k in entry)


@pytest.mark.slow
def test_trackio_dashboard_shows_the_neuronxa_metrics_in_a_real_browser(tmp_path):
    """A finished run (tiny model, 12 steps, a measurement every 3) in `trackio.show` on localhost, rendered by
    headless Chromium: the metric names, the heatmap and the translations are read from the page itself."""
    pytest.importorskip("trackio")
    from tests._trackio_browser import chromium_path, load_page, serve_dashboard

    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the dashboard test needs a real browser")
    run = run_worker(tmp_path, ["trackio"], "--eval-steps", "3", "--num-pairs", "16", steps=12)
    records = run["records"]
    assert [r["step"] for r in records] == [0, 3, 6, 9, 12]
    shots = Path(os.environ.get("NEURONXA_SCREENSHOT_DIR", tmp_path))
    with serve_dashboard(tmp_path / "trackio", "neuronxa-test") as base:
        metrics = load_page(
            f"{base}/?project=neuronxa-test&x_axis=train/global_step&smoothing=0",
            screenshot=shots / "trackio-metrics.png",
        )
        media = load_page(f"{base}/media?project=neuronxa-test", screenshot=shots / "trackio-media.png")
    names = [
        f"{PAIR}/nasca_mean",
        f"{PAIR}/navca_mean",
        f"{PAIR}/nasca_best_layer",
        f"{PAIR}/chrf",
        "nasca/layer_00",
        "nasca/layer_01",
        "neuronxa_early_stopping",
        "nasca_pvalue",
        "alignment_seconds",
    ]
    if f"eval_neuronxa/{PAIR}/r_chrf" in trainer_scalars(records[-1]):  # r needs 3 non-constant quality points
        names.append(f"{PAIR}/r_chrf")
    for name in names:
        assert name in metrics, f"{name!r} is not on the dashboard page"
    # The plots themselves are canvases (axes and values are not DOM text): the screenshot shows them.
    assert "nasca_heatmap" in media
    last = records[-1]["quality"][PAIR]["translations"][0]
    assert last["source"] in media  # the translations table, from the page
    assert (shots / "trackio-metrics.png").stat().st_size > 20_000
