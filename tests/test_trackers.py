"""trackers.py and metric_names.py without a Trainer: which numbers go through trainer.log and which straight to a
backend (never both), the names each backend shows (the same attached or not), the console line, the translations
table, the TensorBoard and W&B adapters, and that tracker failures stay warnings."""

from __future__ import annotations

import logging

import pytest

from neuronxa_callback.sinks.names import (
    backend_key,
    best_values,
    detail_scalars,
    flatten_record,
    headline_for,
    headline_scalars,
    summary_line,
    trainer_scalars,
    translation_rows,
)
from neuronxa_callback.sinks.trackers import TensorBoardSink, TrackerHub, TrackerSink, WandbSink
from tests._records import PAIR, RECORDS, make_record


def full_record() -> dict:
    record = make_record(100, [0.2, 0.4, 0.4], chrf=20.5, index=2)
    record["quality"][PAIR]["copy_rate"] = 0.25  # quality numbers this module does not know by name
    record["quality"][PAIR]["copies"] = 2
    record["quality"][PAIR]["copy_policy"] = "scored as empty"  # not a number: not logged
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
        "value": 0.33,
        "smoothed": 0.3,
        "best": 0.31,
        "best_step": 50,
        "bad_measurements": 1,
        "should_stop": False,
        "reason": None,
    }
    return record


def test_trainer_scalars_are_the_headline_floats_under_eval_neuronxa():
    scalars = trainer_scalars(full_record())
    assert all(type(v) is float for v in scalars.values())
    assert scalars == pytest.approx(
        {
            f"eval_neuronxa/{PAIR}/nasca_mean": 1.0 / 3,
            f"eval_neuronxa/{PAIR}/navca_mean": 1.0 / 6,
            f"eval_neuronxa/{PAIR}/nasca_best_layer": 1.0,  # tie between layers 1 and 2: the lower one
            f"eval_neuronxa/{PAIR}/chrf": 20.5,
            f"eval_neuronxa/{PAIR}/bleu": 10.25,
            f"eval_neuronxa/{PAIR}/copy_rate": 0.25,
            f"eval_neuronxa/{PAIR}/copies": 2.0,
            f"eval_neuronxa/{PAIR}/r_chrf": 0.9,
            "eval_neuronxa_early_stopping/smoothed": 0.3,
            "eval_neuronxa_early_stopping/best": 0.31,
            "eval_neuronxa_early_stopping/bad_measurements": 1.0,
            "eval_neuronxa_early_stopping/should_stop": 0.0,
        }
    )
    # No per-layer key: those would flood the console's log line and log_history.
    assert not any("/layer_" in key for key in scalars)


def test_details_and_headline_split_flatten_record_without_overlap():
    record = full_record()
    headline, details, flat = headline_scalars(record), detail_scalars(record), flatten_record(record)
    headline_as_flat = {f"neuronxa/{name}" for name in headline}
    assert not headline_as_flat & set(details)  # nothing is logged twice
    # ... and nothing of flatten_record is lost but early stopping's raw value (= the pair's nasca_mean).
    assert set(details) | (headline_as_flat & set(flat)) == set(flat) - {"neuronxa/early_stopping/value"}
    assert details[f"neuronxa/{PAIR}/nasca/layer_01"] == 0.4
    assert details[f"neuronxa/{PAIR}/nasca_pvalue"] == 0.01
    assert details[f"neuronxa/{PAIR}/r_chrf_pvalue"] == 0.28
    assert details["neuronxa/timing/alignment_seconds"] == 1.5


def test_headline_leaves_out_missing_values_and_nan():
    record = make_record(0, [0.1, float("nan"), 0.3])
    record["pairs"][PAIR]["navca_mean"] = None
    headline = headline_scalars(record)
    assert f"{PAIR}/navca_mean" not in headline
    assert headline[f"{PAIR}/nasca_best_layer"] == 2.0  # NaN is not a best layer
    assert "early_stopping/should_stop" not in headline  # early stopping off: no such keys at all


def test_summary_line_is_one_short_line_per_measurement():
    line = summary_line(full_record())
    assert "\n" not in line and len(line) < 300
    assert line.startswith(f"step 100: {PAIR} NASCA 0.333 (best layer 1: 0.400), NAVCA 0.167")
    assert "chrf 20.5" in line and "r_chrf 0.900" in line and "copy_rate 0.250" in line and "copies 2," in line
    assert "early stopping: 1 bad" in line and line.endswith("[alignment 2 s]")


def test_translation_rows_cover_every_direction():
    record = full_record()
    assert translation_rows(record) == {
        PAIR: (
            ["step", "direction", "id", "source", "hypothesis", "reference", "language"],
            [[100, "isl_Latn->eng_Latn", "s0", "Halló heimur", "Hello world", "Hello, world", ""]],
        )
    }
    one = record["quality"][PAIR]
    record["quality"][PAIR] = {
        "direction": "both",
        "chrf": 1.0,
        "directions": {"isl_Latn->eng_Latn": one, "eng_Latn->isl_Latn": {**one, "direction": "eng_Latn->isl_Latn"}},
    }
    assert [row[1] for row in translation_rows(record)[PAIR][1]] == ["isl_Latn->eng_Latn", "eng_Latn->isl_Latn"]
    assert translation_rows(RECORDS[0] | {"quality": {}}) == {}


class FakeControl:
    should_log = False


class FakeTrainer:
    """trainer.log as transformers does it: CallbackHandler.on_log sets control.should_log = False."""

    def __init__(self, fail: bool = False) -> None:
        self.logged: list[dict] = []
        self.fail = fail
        self.control = FakeControl()

    def log(self, logs):
        self.control.should_log = False
        if self.fail:
            raise RuntimeError("tracker down")
        self.logged.append(logs)


def test_hub_keeps_the_trainers_pending_loss_log():
    """Measured at a logging step (on_step_end, after DefaultFlowCallback set should_log): the loss must still be
    logged, so the flag trainer.log clears is put back; a step that was not going to log stays that way."""
    trainer = FakeTrainer()
    hub = TrackerHub(trainer, sinks=[])
    trainer.control.should_log = True
    hub.log_measurement(full_record())
    assert trainer.logged and trainer.control.should_log is True
    trainer.control.should_log = False
    hub.log_measurement(make_record(200, [0.1, 0.1, 0.1]))
    assert trainer.control.should_log is False


class RecordingSink(TrackerSink):
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log(self, step, scalars, images, tables):
        # The hub's PNGs live only during the call (backends copy them): check them here.
        self.calls.append((step, scalars, {key: (path.suffix, path.is_file()) for key, path in images.items()}, tables))


def test_hub_sends_headline_to_trainer_log_and_details_media_to_sinks(tmp_path):
    trainer, sink = FakeTrainer(), RecordingSink()
    hub = TrackerHub(trainer, previous_records=RECORDS[:1], sinks=[sink])
    hub.log_measurement(full_record())
    assert trainer.logged == [trainer_scalars(full_record())]
    ((step, scalars, images, tables),) = sink.calls
    assert step == 100 and scalars == detail_scalars(full_record())
    # The heatmap holds the earlier record too (seeded from previous_records, e.g. the JSONL after a resume).
    assert set(images) == {f"neuronxa/{PAIR}/nasca_heatmap"}
    assert set(images.values()) == {(".png", True)}
    assert set(tables) == {f"neuronxa/{PAIR}/translations"}
    figure = tmp_path / "trend.png"
    figure.write_bytes(b"png")
    hub.log_figures({"trend/x": figure})
    assert sink.calls[-1][0] == 100 and set(sink.calls[-1][2]) == {"neuronxa/figures/trend/x"}


def test_hub_turns_tracker_failures_into_warnings(caplog):
    class Broken(RecordingSink):
        def log(self, *args):
            raise OSError("disk full")

    hub = TrackerHub(FakeTrainer(fail=True), sinks=[Broken()], heatmaps=False)
    with caplog.at_level(logging.WARNING, logger="neuronxa_callback.sinks.trackers"):
        hub.log_measurement(full_record())
    assert "trainer.log of step 100 failed (RuntimeError: tracker down)" in caplog.text
    assert "to recording failed (OSError: disk full)" in caplog.text


def test_tensorboard_sink_writes_through_the_trainers_writer(tmp_path):
    class Writer:
        def __init__(self):
            self.scalars, self.images, self.texts, self.flushed = [], [], [], 0

        def add_scalar(self, key, value, step):
            self.scalars.append((key, value, step))

        def add_image(self, key, image, step, dataformats):
            self.images.append((key, image.shape, step, dataformats))

        def add_text(self, key, text, step):
            self.texts.append((key, text, step))

        def flush(self):
            self.flushed += 1

    class TensorBoardCallback:
        tb_writer = None

    callback = TensorBoardCallback()
    sink = TensorBoardSink(callback)
    sink.log(5, {"a": 1.0}, {}, {})  # writer not open yet (before train begin / after train end): nothing, no error
    callback.tb_writer = writer = Writer()
    hub = TrackerHub(FakeTrainer(), sinks=[sink])
    hub.log_measurement(full_record())
    assert (f"neuronxa/{PAIR}/nasca/layer_02", 0.4, 100) in writer.scalars
    key, shape, step, fmt = writer.images[0]
    assert step == 100 and fmt == "HWC" and shape[2] == 3
    ((key, text, step),) = writer.texts
    assert key == f"neuronxa/{PAIR}/translations" and "| Halló heimur | Hello world |" in text
    assert writer.flushed == 1


def test_attach_adds_the_callback_once_and_a_link_ahead_of_the_integrations(tmp_path):
    pytest.importorskip("tensorboard")
    from neuronxa_callback import NeuronXACallback
    from tests._runs import FAST, make_trainer

    trainer = make_trainer(tmp_path, [], report_to=["tensorboard"])
    callback = NeuronXACallback(**FAST)
    assert callback.attach(trainer) is callback and callback.attach(trainer) is callback
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    assert names.count("NeuronXACallback") == 1 and names.count("TrainerLink") == 1
    # The link's on_train_end must run before TensorBoardCallback's, which closes the writer.
    assert names.index("TrainerLink") < names.index("TensorBoardCallback") < names.index("NeuronXACallback")
    # A checkpoint restore replaces the instance (type(cb)(**args)); the link re-attaches the new one at train begin.
    rebuilt = NeuronXACallback(**FAST)
    trainer.callback_handler.remove_callback(callback)
    trainer.callback_handler.add_callback(rebuilt)
    link = trainer.callback_handler.callbacks[names.index("TrainerLink")]
    link.on_train_begin(trainer.args, trainer.state, trainer.control)
    assert rebuilt._trainer is trainer
    with pytest.raises(TypeError, match="needs a transformers Trainer, got str"):
        NeuronXACallback(**FAST).attach("trainer")


def test_a_subclass_of_the_callback_keeps_its_link_and_measures_before_the_integrations_close(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from neuronxa_callback import NeuronXACallback
    from tests._runs import FAST, make_trainer

    class MyCallback(NeuronXACallback):
        pass

    finished = []
    monkeypatch.setattr(
        MyCallback, "_finish_before_trackers_close", lambda self, *args, **kwargs: finished.append(self), raising=True
    )
    trainer = make_trainer(tmp_path, [], report_to=["tensorboard"])
    MyCallback(**FAST).attach(trainer)
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    link = trainer.callback_handler.callbacks[names.index("TrainerLink")]
    # A checkpoint restore replaces the instance with type(cb)(**args): a MyCallback, not a NeuronXACallback.
    old = trainer.callback_handler.callbacks[names.index("MyCallback")]
    rebuilt = MyCallback(**FAST)
    trainer.callback_handler.remove_callback(old)
    trainer.callback_handler.add_callback(rebuilt)
    link.on_train_begin(trainer.args, trainer.state, trainer.control)
    assert rebuilt._trainer is trainer
    # The link (first in the list, ahead of TensorBoardCallback) runs the final measurement of the subclass too.
    link.on_train_end(trainer.args, trainer.state, trainer.control)
    assert finished == [rebuilt]


# ----- one name per number and backend, attached or not ---------------------------------------------------------------
@pytest.mark.parametrize(
    "backend, mean",
    [
        ("wandb", f"eval/neuronxa/{PAIR}/nasca_mean"),
        ("trackio", f"eval/neuronxa/{PAIR}/nasca_mean"),
        ("tensorboard", f"eval/neuronxa/{PAIR}/nasca_mean"),
        ("mlflow", f"eval_neuronxa/{PAIR}/nasca_mean"),
    ],
)
def test_each_backend_has_one_name_per_number(backend, mean):
    record = full_record()
    headline, details = headline_for(record, backend), detail_scalars(record)
    # What the Trainer's integration makes of trainer.log's keys: the names a sink uses when there is no trainer.log.
    assert headline == {backend_key(key, backend): value for key, value in trainer_scalars(record).items()}
    assert headline[mean] == pytest.approx(1.0 / 3)
    assert not set(headline) & set(details)
    published = {**headline, **details}
    assert [key for key in published if key.endswith("nasca_mean") or key.endswith("_nasca")] == [mean]
    assert details[f"neuronxa/{PAIR}/nasca/layer_00"] == 0.2
    stopping = "eval_neuronxa_early_stopping" if backend == "mlflow" else "eval/neuronxa_early_stopping"
    assert headline[f"{stopping}/smoothed"] == 0.3


def test_backend_key_follows_the_trainer_integrations():
    assert backend_key("eval_neuronxa/p/nasca_mean", "tensorboard") == "eval/neuronxa/p/nasca_mean"
    assert backend_key("eval_neuronxa_early_stopping/best", "trackio") == "eval/neuronxa_early_stopping/best"
    assert backend_key("eval_neuronxa/p(q)/nasca_mean", "mlflow") == "eval_neuronxa/p_q_/nasca_mean"  # MLflowCallback
    assert backend_key("neuronxa/p/nasca/layer_00", "wandb") == "neuronxa/p/nasca/layer_00"


def test_best_values_keep_the_best_headline_and_its_first_step():
    records = [
        make_record(0, [0.3, 0.3, 0.3], chrf=19.0),
        make_record(50, [0.1, 0.2, 0.3], chrf=21.0),
        make_record(100, [0.3, 0.3, 0.3], chrf=20.0),
    ]
    best = best_values(records)
    assert best[f"eval/neuronxa/{PAIR}/nasca_mean_best"] == pytest.approx(0.3)
    assert best[f"eval/neuronxa/{PAIR}/nasca_mean_best_step"] == 0  # a tie: the earlier step
    assert best[f"eval/neuronxa/{PAIR}/chrf_best"] == 21.0 and best[f"eval/neuronxa/{PAIR}/chrf_best_step"] == 50
    assert not any("best_layer" in key or "early_stopping" in key for key in best)
    assert f"eval_neuronxa/{PAIR}/chrf_best" in best_values(records, "mlflow")


def test_hub_without_a_trainer_gives_each_sink_the_headline_under_its_backend_names(tmp_path):
    wandb_like, mlflow_like = RecordingSink(), RecordingSink()
    wandb_like.name, mlflow_like.name = "wandb", "mlflow"
    hub = TrackerHub(None, sinks=[wandb_like, mlflow_like], heatmaps=False)
    record = full_record()
    hub.log_measurement(record)
    assert wandb_like.calls[0][1] == {**headline_for(record, "wandb"), **detail_scalars(record)}
    assert mlflow_like.calls[0][1] == {**headline_for(record, "mlflow"), **detail_scalars(record)}
    figure = tmp_path / "trend.png"
    figure.write_bytes(b"png")
    hub.log_figures({"trend/x": figure, "heatmap/x": figure})  # no live heatmaps: the report's goes out
    assert wandb_like.calls[-1][0] == 100
    assert set(wandb_like.calls[-1][2]) == {"neuronxa/figures/trend/x", "neuronxa/figures/heatmap/x"}


class FakeWandbRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.defined: list[tuple[str, str | None]] = []
        self.summary: dict = {}

    def log(self, payload):
        self.logged.append(payload)

    def define_metric(self, name, step_metric=None, **kwargs):
        self.defined.append((name, step_metric))


def test_one_wandb_class_attached_leaves_the_headline_to_trainer_log(monkeypatch):
    wandb = pytest.importorskip("wandb")
    run = FakeWandbRun()
    monkeypatch.setattr(wandb, "run", run)
    trainer, sink = FakeTrainer(), WandbSink(follow_active_run=True)
    hub = TrackerHub(trainer, previous_records=RECORDS[:1], sinks=[sink], heatmaps=False)
    hub.log_measurement(full_record())
    assert trainer.logged == [trainer_scalars(full_record())]
    (payload,) = run.logged
    table = payload.pop(f"neuronxa/{PAIR}/translations")
    assert isinstance(table, wandb.Table) and payload.pop("train/global_step") == 100
    assert payload == detail_scalars(full_record())  # details only: no headline twice
    assert {("neuronxa/*", "train/global_step"), ("eval/neuronxa/*", "train/global_step")} <= set(run.defined)
    # The best values over every record (the earlier one seeded from previous_records) in the run summary.
    assert run.summary[f"eval/neuronxa/{PAIR}/nasca_mean_best"] == pytest.approx(1.0 / 3)
    assert run.summary[f"eval/neuronxa/{PAIR}/nasca_mean_best_step"] == 100
    assert run.summary[f"eval/neuronxa/{PAIR}/chrf_best"] == 20.5
    hub.finish()  # the Trainer's run: never finished here (FakeWandbRun has no finish())
    assert sink.run is run


def test_one_wandb_class_unattached_adds_the_headline_under_the_same_names(monkeypatch):
    wandb = pytest.importorskip("wandb")
    run = FakeWandbRun()
    monkeypatch.setattr(wandb, "run", run)
    sink = WandbSink(init=False, heatmaps=False, tables=False)  # joins the active run
    sink.log_measurement(full_record())
    (payload,) = run.logged
    assert payload.pop("train/global_step") == 100
    assert payload == {**headline_for(full_record(), "wandb"), **detail_scalars(full_record())}
    assert f"eval/neuronxa/{PAIR}/nasca_mean" in payload and f"neuronxa/{PAIR}/nasca_mean" not in payload
    sink.finish()
    assert sink.run is None and wandb.run is run  # a joined run is left open
