"""NeuronXAPlugin (neuronxa_callback/hosts/axolotl.py) against the real Axolotl: its plugin loader and config schema, the
plugin hooks on a Trainer, and a whole `axolotl train config.yml` run of the tiny Llama on the CPU.

Axolotl pins its own transformers/trl/peft/accelerate/datasets, so it is not in the project's .venv and these tests
skip there; docs/hosts/axolotl.md says how they are run in a separate environment."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._runs import FAST, make_trainer, records_of

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"
MEAN = f"eval_neuronxa/{PAIR}/nasca_mean"
PLUGIN = "neuronxa_callback.hosts.axolotl.NeuronXAPlugin"


def _axolotl_importable() -> str | None:
    """None when axolotl's plugin API imports, else why not (the skip reason)."""
    if importlib.util.find_spec("axolotl") is None:
        return "axolotl is not installed (it pins its own transformers; see docs/hosts/axolotl.md)"
    try:
        import axolotl.integrations.base  # noqa: F401
    except Exception as error:  # an axolotl that does not fit this environment's versions
        return f"axolotl does not import here: {type(error).__name__}: {error}"
    return None


WHY_NOT = _axolotl_importable()
needs_axolotl = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def test_importing_the_package_does_not_import_axolotl():
    code = "import sys, neuronxa_callback; print('axolotl' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout.strip()
    assert output == "False"


@pytest.mark.skipif(importlib.util.find_spec("axolotl") is not None, reason="axolotl is installed")
def test_without_axolotl_the_plugin_module_says_what_is_missing():
    with pytest.raises(ImportError, match="pip install axolotl"):
        import neuronxa_callback.hosts.axolotl  # noqa: F401


@pytest.fixture
def plugin_manager():
    """Axolotl's PluginManager singleton, with its registered plugins put back afterwards."""
    from axolotl.integrations.base import PluginManager

    manager = PluginManager.get_instance()
    saved = manager.plugins.copy()
    yield manager
    manager.plugins.clear()
    manager.plugins.update(saved)


@needs_axolotl
def test_the_yaml_plugin_name_loads_a_base_plugin():
    from axolotl.integrations.base import BasePlugin, load_plugin

    from neuronxa_callback.hosts.axolotl import NeuronXAArgs, NeuronXAPlugin

    plugin = load_plugin(PLUGIN)  # what `plugins: [neuronxa_callback.hosts.axolotl.NeuronXAPlugin]` does
    assert isinstance(plugin, NeuronXAPlugin) and isinstance(plugin, BasePlugin)
    assert plugin.get_input_args() == "neuronxa_callback.hosts.axolotl.NeuronXAArgs"
    assert set(NeuronXAArgs.model_fields) == {
        "neuronxa_languages",
        "neuronxa_eval_steps",
        "neuronxa_quality_every",
        "neuronxa",
    }


@needs_axolotl
def test_axolotl_validation_keeps_the_declared_keys_and_checks_their_types(plugin_manager, model_dir, tmp_path):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from pydantic import ValidationError

    base = dict(
        base_model=str(model_dir),
        datasets=[{"path": str(tmp_path / "d.jsonl"), "ds_type": "json", "type": "completion"}],
        micro_batch_size=1,
        learning_rate=1e-3,
        output_dir=str(tmp_path / "out"),
        sequence_len=64,
    )
    keys = dict(
        neuronxa_languages=["isl_Latn"], neuronxa_eval_steps=2, neuronxa_quality_every=0, neuronxa={"num_pairs": 8}
    )
    # Not listed under plugins: Axolotl's schema drops keys it does not declare (why get_input_args is needed).
    unlisted = validate_config(DictDefault(dict(base, **keys)))
    assert all(unlisted.get(key) is None for key in keys)

    plugin_manager.register(PLUGIN)
    listed = validate_config(DictDefault(dict(base, plugins=[PLUGIN], **keys)))
    assert {key: listed.get(key) for key in keys} == keys
    with pytest.raises(ValidationError, match="neuronxa_eval_steps"):
        validate_config(DictDefault(dict(base, plugins=[PLUGIN], neuronxa_eval_steps="often")))


@needs_axolotl
def test_register_checks_the_arguments_before_the_model_is_loaded():
    from neuronxa_callback.hosts.axolotl import NeuronXAPlugin, callback_kwargs

    assert callback_kwargs(
        {"neuronxa_languages": "isl_Latn", "neuronxa_eval_steps": 5, "neuronxa": {"num_pairs": 8, "eval_steps": 5}}
    ) == dict(languages="isl_Latn", eval_steps=5, num_pairs=8)
    plugin = NeuronXAPlugin()
    with pytest.raises(TypeError, match="did you mean 'eval_steps'"):
        plugin.register({"neuronxa": {"eval_step": 2}})
    with pytest.raises(ValueError, match="neuronxa_eval_steps=2 and neuronxa.eval_steps=3 disagree"):
        plugin.register({"neuronxa_eval_steps": 2, "neuronxa": {"eval_steps": 3}})
    with pytest.raises(ValueError, match="languages"):
        plugin.register({"neuronxa_languages": ["not_a_language"]})
    plugin.register({"neuronxa_languages": ["isl_Latn"], "neuronxa": FAST})
    assert plugin.callback.settings.languages == ("isl_Latn",)


@needs_axolotl
def test_the_hooks_put_the_callback_ahead_of_early_stopping_and_attach_it(tmp_path):
    from transformers import EarlyStoppingCallback

    from neuronxa_callback.hosts.axolotl import NeuronXAPlugin

    cfg = {"neuronxa_languages": ["isl_Latn"], "neuronxa_eval_steps": 2, "neuronxa_quality_every": 0, "neuronxa": FAST}
    plugin = NeuronXAPlugin()
    plugin.register(cfg)
    # What Axolotl's trainer builder does: pre-trainer callbacks go into Trainer(callbacks=...), then it adds its own
    # (EarlyStoppingCallback among them) and each post-trainer callback with trainer.add_callback.
    trainer = make_trainer(
        tmp_path,
        plugin.add_callbacks_pre_trainer(cfg, model=None),
        max_steps=4,
        with_eval=True,
        eval_strategy="steps",
        eval_steps=2,
        metric_for_best_model="eval_neuronxa_nasca",
    )

    class RecordingEarlyStopping(EarlyStoppingCallback):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seen = []

        def on_evaluate(self, args, state, control, metrics, **kwargs):
            self.seen.append((state.global_step, "eval_neuronxa_nasca" in metrics))
            return super().on_evaluate(args, state, control, metrics, **kwargs)

    early_stopping = RecordingEarlyStopping(early_stopping_patience=3)
    trainer.add_callback(early_stopping)
    assert plugin.add_callbacks_post_trainer(cfg, trainer) == []
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    assert names[0] == "TrainerLink" and names.count("NeuronXACallback") == 1
    assert names.index("NeuronXACallback") < names.index("RecordingEarlyStopping")
    assert plugin.add_callbacks_post_trainer(cfg, trainer) == []  # a second call links nothing twice
    assert [type(cb).__name__ for cb in trainer.callback_handler.callbacks] == names

    trainer.train()
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    # At each Trainer evaluation (steps 2 and 4) EarlyStoppingCallback, after the callback, finds the alignment.
    assert early_stopping.seen == [(2, True), (4, True)]
    logged = [(entry["step"], entry[MEAN]) for entry in trainer.state.log_history if MEAN in entry]
    assert logged == [(r["step"], pytest.approx(r["pairs"][PAIR]["nasca_mean"])) for r in records]


@needs_axolotl
def test_axolotl_train_with_the_plugin_in_the_yaml_measures_and_reports_to_tensorboard(model_dir, tmp_path):
    import shutil

    from neuronxa_callback.testing.tiny import corpus_sentences

    axolotl_cli = shutil.which("axolotl", path=str(Path(sys.executable).parent))
    if axolotl_cli is None:
        pytest.skip("the axolotl command is not installed next to this Python")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": s}) + "\n" for s in corpus_sentences() * 2), encoding="utf-8")
    out = tmp_path / "out"
    config = f"""
base_model: {model_dir}
plugins:
  - {PLUGIN}
neuronxa_languages: [isl_Latn]
neuronxa_eval_steps: 2
neuronxa_quality_every: 2
neuronxa: {json.dumps(FAST)}
datasets:
  - path: {data}
    ds_type: json
    type: completion
dataset_prepared_path: {tmp_path / "prepared"}
dataset_num_proc: 1
val_set_size: 0
output_dir: {out}
sequence_len: 64
micro_batch_size: 2
max_steps: 4
num_epochs: 1
learning_rate: 0.005
optimizer: adamw_torch
lr_scheduler: constant
logging_steps: 1
save_strategy: "no"
use_tensorboard: true
bf16: false
fp16: false
tf32: false
"""
    (tmp_path / "config.yml").write_text(config, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "AXOLOTL_DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "2",
    }
    result = subprocess.run(
        [axolotl_cli, "train", str(tmp_path / "config.yml"), "--launcher", "python"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert f"Plugin loaded successfully: {PLUGIN}" in result.stdout + result.stderr

    records = records_of(out)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    assert ["quality" in r for r in records] == [True, False, True]
    assert records[0]["settings"]["languages"] == ["isl_Latn"] and records[0]["settings"]["num_pairs"] == 8

    # Attached: the measurements reach the tracker Axolotl configured (TensorBoard), on the measured steps.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events_file,) = out.rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events_file.parent), size_guidance={"scalars": 0})
    accumulator.Reload()
    series = accumulator.Scalars(f"eval/neuronxa/{PAIR}/nasca_mean")
    assert [e.step for e in series] == [0, 2, 4]
    assert [e.value for e in series] == pytest.approx([r["pairs"][PAIR]["nasca_mean"] for r in records])
    assert "train/loss" in accumulator.Tags()["scalars"]
