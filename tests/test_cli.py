"""The `neuronxa` command line (score | translate | report) on a tiny model saved to disk: outputs, errors, --quiet, tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronxa_callback.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"
SECRET = "secret123"


pytestmark = pytest.mark.usefixtures("restore_library_verbosity")


@pytest.fixture(scope="module")
def parallel_files(tmp_path_factory) -> tuple[Path, Path]:
    path = tmp_path_factory.mktemp("files")
    english = [
        "The river runs slowly through the valley.",
        "Doctors say that sleep protects the heart.",
        "The team won the final match.",
        "The museum opened a new exhibition.",
    ]
    icelandic = [
        "Fljótið rennur hægt í gegnum dalinn.",
        "Læknar segja að svefn verndi hjartað.",
        "Liðið vann úrslitaleikinn.",
        "Þjóðminjasafnið opnaði nýja sýningu.",
    ]
    source, target = path / "en.txt", path / "is.txt"
    source.write_text("\n".join(english) + "\n", encoding="utf-8")
    target.write_text("\n".join(icelandic) + "\n", encoding="utf-8")
    return source, target


def _score(model_dir: Path, out: Path, *extra: str) -> int:
    return main(["--quiet", "score", "--model", str(model_dir), "--output", str(out), *extra])


def test_score_bundled_writes_every_required_key_and_a_plot(model_dir, tmp_path):
    out, plot = tmp_path / "score.json", tmp_path / "layers.png"
    code = _score(
        model_dir,
        out,
        "--data",
        "bundled",
        "--num-pairs",
        "12",
        "--plot",
        str(plot),
        "--representation",
        "all",
        "--hf-token",
        SECRET,
    )
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert SECRET not in text
    result = json.loads(text)
    scores = result["pairs"][PAIR]
    assert scores["num_layers"] == 2
    for metric in ("nasca", "navca"):
        assert len(scores[metric]) == 2 and all(0.0 <= x <= 1.0 for x in scores[metric])
        assert scores[f"{metric}_mean"] == pytest.approx(sum(scores[metric]) / 2)
        assert 0.0 <= scores[f"{metric}_pvalue"] <= 1.0
        assert len(scores[f"{metric}_layer_pvalues"]) == 2
    assert "retrieval" in scores
    assert len(result["data"]["ids"]) == 12 and len(set(result["data"]["ids"])) == 12
    assert result["settings"]["n"] == 12
    assert result["timing"]["load_seconds"] > 0 and result["timing"]["forward_seconds"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_source_and_target_files(model_dir, parallel_files, tmp_path):
    source, target = parallel_files
    out = tmp_path / "files.json"
    code = _score(
        model_dir,
        out,
        "--source-file",
        str(source),
        "--target-file",
        str(target),
        "--target-lang",
        "isl_Latn",
        "--representation",
        "nas",
    )
    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    scores = result["pairs"][PAIR]
    assert len(result["data"]["ids"]) == 4
    assert len(scores["nasca"]) == 2 and "navca" not in scores and "mexa" not in scores


def test_representation_embedding_adds_mexa(model_dir, parallel_files, tmp_path):
    source, target = parallel_files
    out = tmp_path / "mexa.json"
    assert (
        _score(
            model_dir,
            out,
            "--source-file",
            str(source),
            "--target-file",
            str(target),
            "--target-lang",
            "isl",
            "--representation",
            "embedding",
        )
        == 0
    )
    scores = json.loads(out.read_text(encoding="utf-8"))["pairs"][PAIR]
    assert len(scores["mexa"]) == 2 and 0.0 <= scores["mexa_mean"] <= 1.0


def test_missing_file_exits_2_naming_it(model_dir, parallel_files, tmp_path, capsys):
    source, _ = parallel_files
    missing = tmp_path / "nope.txt"
    code = _score(
        model_dir,
        tmp_path / "x.json",
        "--source-file",
        str(source),
        "--target-file",
        str(missing),
        "--target-lang",
        "isl_Latn",
    )
    assert code == 2
    assert "nope.txt" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_unequal_lengths_exit_2_naming_the_files(model_dir, parallel_files, tmp_path, capsys):
    source, _ = parallel_files
    short = tmp_path / "short.txt"
    short.write_text("Ein setning.\n", encoding="utf-8")
    code = _score(
        model_dir,
        tmp_path / "x.json",
        "--source-file",
        str(source),
        "--target-file",
        str(short),
        "--target-lang",
        "isl_Latn",
    )
    assert code == 2
    assert "short.txt" in capsys.readouterr().err


def test_translate_writes_hypotheses_and_chrf(model_dir, tmp_path):
    out = tmp_path / "translations.json"
    code = main(
        [
            "--quiet",
            "translate",
            "--model",
            str(model_dir),
            "--data",
            "bundled",
            "--num-pairs",
            "3",
            "--max-new-tokens",
            "4",
            "--num-fewshot",
            "1",
            "--metrics",
            "chrf",
            "--output",
            str(out),
            "--hf-token",
            SECRET,
        ]
    )
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert SECRET not in text
    result = json.loads(text)
    direction = result["directions"]["isl_Latn->eng_Latn"]
    assert len(direction["translations"]) == 3
    assert all(isinstance(t["hypothesis"], str) and t["reference"] for t in direction["translations"])
    assert 0.0 <= direction["scores"]["chrf"]["system"] <= 100.0


@pytest.fixture(scope="module")
def callback_run(model_dir, tmp_path_factory) -> Path:
    """A real two-step Trainer run of the tiny model with NeuronXACallback: its output dir holds the JSONL."""
    import torch
    from transformers import Trainer, TrainingArguments

    from neuronxa_callback import NeuronXACallback
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    out = tmp_path_factory.mktemp("callback-run")
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    rows = [
        {"input_ids": ids, "labels": ids}
        for ids in tokenizer(["Fljótið rennur hægt.", "The river runs."] * 4)["input_ids"]
    ]

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.tensor([r["input_ids"] + [tokenizer.pad_token_id] * (width - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
        return {"input_ids": ids, "attention_mask": (labels != -100).long(), "labels": labels}

    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    callback = NeuronXACallback(num_pairs=8, eval_steps=1, strict=True)
    Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=collate,
        processing_class=tokenizer,
        callbacks=[callback],
    ).train()
    return out


def test_report_on_a_callback_run(callback_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--quiet", "report", str(callback_run), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = out / "report.md"
    assert summary.is_file() and "eng_Latn-isl_Latn" in summary.read_text(encoding="utf-8")
    assert str(summary) in printed
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_report_on_missing_run_exits_2(tmp_path, capsys):
    assert main(["--quiet", "report", str(tmp_path / "no-run")]) == 2
    assert "no-run" in capsys.readouterr().err


def _console_script() -> Path:
    script = Path(sys.executable).with_name("neuronxa")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    return script


def test_console_script_quiet_and_token_free(model_dir, parallel_files, tmp_path):
    """The installed `neuronxa` entry point: --quiet leaves stderr free of progress and info lines, and the token given
    with --hf-token (and in $HF_TOKEN) appears in no output."""
    source, target = parallel_files
    out = tmp_path / "cli.json"
    env = {**os.environ, "HF_TOKEN": SECRET, "HF_HUB_OFFLINE": "1"}
    command = [
        str(_console_script()),
        "--quiet",
        "score",
        "--model",
        str(model_dir),
        "--source-file",
        str(source),
        "--target-file",
        str(target),
        "--target-lang",
        "isl_Latn",
        "--output",
        str(out),
        "--hf-token",
        SECRET,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["pairs"][PAIR]["num_layers"] == 2
    for stream in (done.stdout, done.stderr, out.read_text(encoding="utf-8")):
        assert SECRET not in stream
    assert "INFO" not in done.stderr and "%|" not in done.stderr and "it/s" not in done.stderr, done.stderr


def test_without_quiet_progress_and_info_reach_stderr(model_dir, parallel_files, tmp_path, capfd):
    """The counterpart of --quiet: the same command shows progress (tqdm on stderr)."""
    source, target = parallel_files
    code = main(
        [
            "score",
            "--model",
            str(model_dir),
            "--source-file",
            str(source),
            "--target-file",
            str(target),
            "--target-lang",
            "isl_Latn",
            "--output",
            str(tmp_path / "loud.json"),
        ]
    )
    assert code == 0
    err = capfd.readouterr().err
    assert "it/s" in err or "%|" in err, err
