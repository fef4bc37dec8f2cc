"""NeuronXA in LLaMA-Factory (neuronxa_callback/hosts/llamafactory.py): the self-attaching callback on a plain Trainer (runs
everywhere), and against the real LLaMA-Factory: run_exp(callbacks=[...]), the YAML entry point
`python -m neuronxa_callback.hosts.llamafactory config.yaml` reporting to TensorBoard, and what `llamafactory-cli train`
does with the same YAML.

LLaMA-Factory pins transformers<=5.6, so it is not in the project's .venv and those tests skip there; see
docs/hosts/llamafactory.md for the environment they run in."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

from neuronxa_callback import NeuronXACallback
from neuronxa_callback.hosts.llamafactory import LlamaFactoryNeuronXACallback, pop_callback_kwargs
from neuronxa_callback.testing.tiny import corpus_sentences
from tests._runs import FAST, make_trainer, records_of

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"
MEAN = f"eval_neuronxa/{PAIR}/nasca_mean"


def _llamafactory_importable() -> str | None:
    if importlib.util.find_spec("llamafactory") is None:
        return "llamafactory is not installed (it pins transformers<=5.6; see docs/hosts/llamafactory.md)"
    try:
        import llamafactory.train.tuner  # noqa: F401
    except Exception as error:  # a LLaMA-Factory that does not fit this environment's versions
        return f"llamafactory does not import here: {type(error).__name__}: {error}"
    return None


WHY_NOT = _llamafactory_importable()
needs_llamafactory = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def test_importing_the_package_or_the_module_does_not_import_llamafactory():
    code = "import sys, neuronxa_callback, neuronxa_callback.hosts.llamafactory; print('llamafactory' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout.strip()
    assert output == "False"


def test_the_neuronxa_keys_are_taken_out_of_the_config():
    config = {
        "stage": "sft",
        "neuronxa_languages": ["isl_Latn"],
        "neuronxa_eval_steps": 5,
        "neuronxa": {"num_pairs": 8, "eval_steps": 5},
    }
    assert pop_callback_kwargs(config) == dict(languages=["isl_Latn"], eval_steps=5, num_pairs=8)
    assert config == {"stage": "sft"}  # what LLaMA-Factory's parser then sees
    assert pop_callback_kwargs({"stage": "sft"}) is None
    with pytest.raises(ValueError, match="neuronxa_quality_every=2 and neuronxa.quality_every=0 disagree"):
        pop_callback_kwargs({"neuronxa_quality_every": 2, "neuronxa": {"quality_every": 0}})


class _InitEnds(TrainerCallback):
    calls = 0

    def on_init_end(self, args, state, control, **kwargs):
        type(self).calls += 1
        return control


def test_the_callback_attaches_itself_to_the_trainer_it_is_given_to(tmp_path):
    callback = LlamaFactoryNeuronXACallback(eval_steps=2, quality_every=0, **FAST)
    _InitEnds.calls = 0
    trainer = make_trainer(tmp_path, [callback, _InitEnds()], max_steps=4)  # no attach() call
    assert callback._trainer is trainer
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    assert names[0] == "TrainerLink" and names.count("LlamaFactoryNeuronXACallback") == 1
    assert _InitEnds.calls == 1  # the link put in front during on_init_end skips no other callback
    trainer.train()
    records = records_of(tmp_path)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    # Through trainer.log, as attach() gives: the Trainer's log history (and every tracker) has the measurements.
    logged = [(entry["step"], entry[MEAN]) for entry in trainer.state.log_history if MEAN in entry]
    assert logged == [(r["step"], pytest.approx(r["pairs"][PAIR]["nasca_mean"])) for r in records]


@pytest.fixture
def llamafactory_run(model_dir, tmp_path):
    """A LLaMA-Factory pre-training config (dict) for the tiny Llama on the tiny corpus, 4 steps on the CPU."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(
        "".join(json.dumps({"text": s}) + "\n" for s in corpus_sentences() * 2), encoding="utf-8"
    )
    (data / "dataset_info.json").write_text(
        json.dumps({"tiny": {"file_name": "train.jsonl", "columns": {"prompt": "text"}}}), encoding="utf-8"
    )
    return dict(
        stage="pt",
        do_train=True,
        model_name_or_path=str(model_dir),
        dataset="tiny",
        dataset_dir=str(data),
        template="default",
        cutoff_len=64,
        finetuning_type="full",
        output_dir=str(tmp_path / "out"),
        overwrite_output_dir=True,
        per_device_train_batch_size=2,
        max_steps=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        use_cpu=True,
        seed=0,
    )


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "2",
    }


@needs_llamafactory
def test_run_exp_takes_the_callback(llamafactory_run, tmp_path):
    from llamafactory.train.tuner import run_exp

    run_exp(args=llamafactory_run, callbacks=[NeuronXACallback(eval_steps=2, quality_every=2, **FAST)])
    records = records_of(tmp_path / "out")
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    assert ["quality" in r for r in records] == [True, False, True]


@needs_llamafactory
def test_the_yaml_entry_point_measures_and_reports_to_tensorboard(llamafactory_run, tmp_path):
    import yaml

    pytest.importorskip("tensorboard")

    config = dict(
        llamafactory_run,
        report_to="tensorboard",
        neuronxa_languages=["isl_Latn"],
        neuronxa_eval_steps=2,
        neuronxa_quality_every=2,
        neuronxa=FAST,
    )
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "neuronxa_callback.hosts.llamafactory",
        str(tmp_path / "train.yaml"),
        "max_steps=4",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    out = tmp_path / "out"
    records = records_of(out)
    assert [(r["step"], r["trigger"]) for r in records] == [(0, "train_begin"), (2, "step"), (4, "step")]
    assert records[0]["settings"]["num_pairs"] == FAST["num_pairs"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events_file,) = out.rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events_file.parent), size_guidance={"scalars": 0})
    accumulator.Reload()
    series = accumulator.Scalars(f"eval/neuronxa/{PAIR}/nasca_mean")
    assert [e.step for e in series] == [0, 2, 4]
    assert [e.value for e in series] == pytest.approx([r["pairs"][PAIR]["nasca_mean"] for r in records])


@needs_llamafactory
def test_llamafactory_cli_rejects_the_neuronxa_keys(llamafactory_run, tmp_path):
    import yaml

    cli = shutil.which("llamafactory-cli", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("llamafactory-cli is not installed next to this Python")
    config = dict(llamafactory_run, neuronxa_eval_steps=2)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [cli, "train", str(tmp_path / "train.yaml")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode != 0
    assert "Some keys are not used by the HfArgumentParser" in result.stderr + result.stdout
    assert "neuronxa_eval_steps" in result.stderr + result.stdout
