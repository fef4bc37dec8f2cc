"""What a new user meets in the first hour of `neuronxa`: outputs checked before minutes of work, files that are not
UTF-8, missing models, log lines printed once, Ctrl-C, --version, global flags after the subcommand, --num-pairs all,
`score RUN_DIR` that has nothing to do or no step-0 baseline, and a translate progress bar that moves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neuronxa_callback import cli
from neuronxa_callback.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR = "eng_Latn-isl_Latn"


pytestmark = pytest.mark.usefixtures("restore_library_verbosity")


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: the command must have stopped before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the command checked its arguments")

    monkeypatch.setattr(cli, "_load_model", refuse)
    monkeypatch.setattr("neuronxa_callback.instrument.models.load_model_and_tokenizer", refuse)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _subprocess_env(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# ------------------------------------------------------------------------------------------------------------------
# Output paths are checked before the model is loaded.


def _blocked_path(tmp_path: Path) -> Path:
    """A path no one can create, root included: its parent is a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    return blocker / "out" / "r.json"


@pytest.mark.parametrize(
    "command",
    [
        ["score", "--data", "bundled", "--num-pairs", "4", "--output", "{blocked}"],
        ["score", "--data", "bundled", "--num-pairs", "4", "--output", "{ok}", "--plot", "{blocked}"],
        ["translate", "--data", "bundled", "--num-pairs", "2", "--metrics", "chrf", "--output", "{blocked}"],
        ["correlate", "a.json", "--benchmarks", "b.csv", "--output-json", "{blocked}"],
        ["report", "{run}", "--output-dir", "{blocked}"],
    ],
    ids=["score-output", "score-plot", "translate-output", "correlate-output-json", "report-output-dir"],
)
def test_unwritable_output_fails_before_any_work(command, model_dir, tmp_path, capsys, no_model_load):
    blocked = _blocked_path(tmp_path)
    argv = [part.format(blocked=blocked, ok=tmp_path / "ok.json", run=tmp_path) for part in command]
    if argv[0] in ("score", "translate"):
        argv += ["--model", str(model_dir)]
    started = time.perf_counter()
    assert main(["--quiet", *argv]) == 2
    assert time.perf_counter() - started < 5
    line = _one_line(capsys.readouterr().err)
    flag = argv[argv.index(str(blocked)) - 1]
    assert flag in line and str(blocked) in line, line
    assert not (tmp_path / "ok.json").exists()


def test_output_into_a_read_only_directory_fails_before_the_model_loads(model_dir, tmp_path, capsys, no_model_load):
    if os.geteuid() == 0:
        pytest.skip("root writes into a 0o500 directory anyway (the parent-is-a-file test covers root)")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        code = main(
            [
                "--quiet",
                "score",
                "--model",
                str(model_dir),
                "--data",
                "bundled",
                "--num-pairs",
                "4",
                "--output",
                str(read_only / "r.json"),
            ]
        )
    finally:
        read_only.chmod(0o700)
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert "--output" in line and str(read_only) in line


def test_run_dir_output_checked_before_scoring(tmp_path, capsys, no_model_load):
    run = _fake_run(tmp_path / "run", steps=(1,))
    capsys.readouterr()  # saving the checkpoints printed progress bars
    blocked = _blocked_path(tmp_path)
    assert main(["--quiet", "score", str(run), "--data", "bundled", "--num-pairs", "4", "--output", str(blocked)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--output" in line and str(blocked) in line


# ------------------------------------------------------------------------------------------------------------------
# Files that are not UTF-8 are reported with their name and line.


def _latin1(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_latin1_target_file_names_the_file_and_line(model_dir, tmp_path, capsys, no_model_load):
    source = tmp_path / "en.txt"
    source.write_text("The river runs.\nThe team won.\nThe museum opened.\n", encoding="utf-8")
    target = _latin1(tmp_path / "is.txt", ["Fljotid rennur.", "Lidid vann.", "Safnið opnaði."])
    code = main(
        [
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
        ]
    )
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{target}:3" in line and "UTF-8" in line, line


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_latin1_data_file_names_the_file_and_line(suffix, tmp_path):
    from neuronxa_callback.data.loaders import ParallelDataError, load_parallel

    if suffix == ".tsv":
        lines = ["eng_Latn\tisl_Latn", "The river runs.\tFljotid rennur.", "The team won.\tLiðið vann."]
    else:
        lines = [
            json.dumps({"eng_Latn": "The river runs.", "isl_Latn": "Fljotid rennur."}),
            json.dumps({"eng_Latn": "The team won.", "isl_Latn": "Liðið vann."}, ensure_ascii=False),
        ]
    path = _latin1(tmp_path / f"data{suffix}", lines)
    with pytest.raises(ParallelDataError) as error:
        load_parallel(path, languages=("isl_Latn",), num_pairs=None)
    assert f"{path}:{len(lines)}" in str(error.value) and "UTF-8" in str(error.value)


# ------------------------------------------------------------------------------------------------------------------
# Models that are not there fail at once, in one line; log lines are printed once.


def test_missing_local_model_path_fails_at_once(tmp_path, capsys):
    missing = "./no/such/dir"
    started = time.perf_counter()
    code = main(["--quiet", "score", "--model", missing, "--data", "bundled", "--num-pairs", "4"])
    assert time.perf_counter() - started < 5
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert missing in line and "does not exist" in line and "repo" not in line.lower(), line


def test_unknown_hub_name_offline_fails_with_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    code = main(["--quiet", "score", "--model", "no-such-model-xyz", "--data", "bundled", "--num-pairs", "4"])
    assert time.perf_counter() - started < 5
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert "no-such-model-xyz" in line and "HF_HUB_OFFLINE" in line and "cache" in line, line


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unknown_hub_name_with_the_hub_unreachable_fails_fast_with_one_line(tmp_path):
    """Online mode but no hub (here: an endpoint on a closed local port, never the real hub): no minute of retries."""
    env = _subprocess_env(
        HF_HUB_OFFLINE=None,
        TRANSFORMERS_OFFLINE=None,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
    )
    command = [
        sys.executable,
        "-m",
        "neuronxa_callback.cli",
        "score",
        "--model",
        "no-such-model-xyz",
        "--data",
        "bundled",
        "--num-pairs",
        "4",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("`neuronxa score --model no-such-model-xyz` kept retrying an unreachable hub for 30 s")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "retry" in line.lower()]
    assert len(errors) == 1 and "no-such-model-xyz" in errors[0] and "cannot connect" in errors[0], done.stderr


def _hub_cache_with(model_dir: Path, cache: Path, repo_id: str) -> Path:
    """A Hugging Face cache holding `model_dir` as `repo_id`, laid out as a download would leave it."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return cache


@pytest.mark.parametrize("hub", ["offline", "unreachable"])
def test_a_hub_model_in_the_cache_still_loads(hub, model_dir, tmp_path):
    """The checks before from_pretrained let a cached hub model through; with the hub out of reach it loads from the
    cache at once instead of after a minute of retries."""
    cache = _hub_cache_with(model_dir, tmp_path / "hub-cache", "tiny-org/tiny-model")
    env = _subprocess_env(HF_HUB_CACHE=str(cache))
    if hub == "unreachable":
        env = _subprocess_env(
            HF_HUB_CACHE=str(cache),
            HF_HUB_OFFLINE=None,
            TRANSFORMERS_OFFLINE=None,
            HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        )
    script = (
        "from neuronxa_callback.instrument.models import load_model_and_tokenizer\n"
        "model, _ = load_model_and_tokenizer('tiny-org/tiny-model')\n"
        "print(model.config.model_type)"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("llama")
    assert time.perf_counter() - started < 30 and "Retry" not in done.stderr, done.stderr


def test_a_library_warning_is_printed_once(tmp_path):
    """huggingface_hub puts its own handler on its logger; with the CLI's root handler each line came out twice."""
    script = textwrap.dedent("""
        import logging, sys
        from neuronxa_callback import cli
        from neuronxa_callback.instrument.models import ModelLoadError

        def load(args):
            from huggingface_hub.utils import logging as hub_logging  # as from_pretrained imports it

            logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
            raise ModelLoadError("stop here")

        cli._load_model = load
        sys.exit(cli.main(["score", "--model", "x", "--data", "bundled", "--num-pairs", "4"]))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_subprocess_env(), cwd=tmp_path, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("Retrying in 1s [Retry 1/5].") == 1, done.stderr


# ------------------------------------------------------------------------------------------------------------------
# Small CLI gaps: Ctrl-C, --version, global flags after the subcommand, --num-pairs all.


def test_ctrl_c_prints_one_line_and_exits_130(model_dir, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_model", interrupted)
    assert main(["--quiet", "score", "--model", str(model_dir), "--data", "bundled", "--num-pairs", "4"]) == 130
    assert "interrupted" in _one_line(capsys.readouterr().err)


def test_ctrl_c_while_watching_a_run_exits_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("neuronxa_callback.offline.checkpoints.score_checkpoints", interrupted)
    run = tmp_path / "run"
    run.mkdir()
    assert main(["--quiet", "score", str(run), "--watch", "1"]) == 130
    assert "interrupted" in _one_line(capsys.readouterr().err)


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"neuronxa {version('neuronxa_callback')}"


@pytest.mark.parametrize(
    "argv,quiet",
    [
        (["score", "--quiet"], True),
        (["--quiet", "score"], True),
        (["score"], False),
        (["translate", "--quiet"], True),
        (["report", "run", "--quiet"], True),
        (["correlate", "a", "--benchmarks", "b", "--quiet"], True),
    ],
)
def test_quiet_works_before_and_after_the_subcommand(argv, quiet):
    assert cli.build_parser().parse_args(argv).quiet is quiet


def test_quiet_after_the_subcommand_runs(model_dir, tmp_path):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "score",
                "--quiet",
                "--model",
                str(model_dir),
                "--data",
                "bundled",
                "--num-pairs",
                "4",
                "--representation",
                "nas",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert len(json.loads(out.read_text(encoding="utf-8"))["data"]["ids"]) == 4


def test_num_pairs_all(model_dir, tmp_path):
    from neuronxa_callback.data.loaders import load_parallel

    assert cli.build_parser().parse_args(["score", "--num-pairs", "7"]).num_pairs == 7
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "--quiet",
                "score",
                "--model",
                str(model_dir),
                "--data",
                "bundled",
                "--num-pairs",
                "all",
                "--representation",
                "nas",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    every = len(load_parallel("bundled", num_pairs=None))
    assert every > 100  # more than the default of 100 pairs, or "all" would prove nothing
    assert len(json.loads(out.read_text(encoding="utf-8"))["data"]["ids"]) == every


def test_num_pairs_all_with_run_dir_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["--quiet", "score", str(tmp_path), "--num-pairs", "all"])
    assert done.value.code == 2
    assert "--num-pairs" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------------
# `score RUN_DIR`: why nothing was scored, and the step-0 baseline of full fine-tuning runs.


def _fake_run(run: Path, steps=(1, 2), base: Path | None = None) -> Path:
    """Full fine-tuning checkpoints as the Trainer saves them (weights, tokenizer, trainer_state.json), without
    training: distinct tiny models. base: written into config.json's _name_or_path, as older transformers did."""
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    for step in steps:
        path = run / f"checkpoint-{step}"
        tiny_model("llama", tokenizer=tokenizer, seed=step).save_pretrained(path)
        tokenizer.save_pretrained(path)
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": step / 10}))
        if base is not None:
            config = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps({**config, "_name_or_path": str(base)}))
    run.mkdir(parents=True, exist_ok=True)
    return run


def _score_run(run: Path, *extra: str) -> int:
    return main(
        ["--quiet", "score", str(run), "--data", "bundled", "--num-pairs", "6", "--representation", "nas", *extra]
    )


def _steps(jsonl: Path) -> list[int]:
    return [json.loads(line)["step"] for line in jsonl.read_text().splitlines()]


def test_run_dir_without_checkpoints_says_why(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    with caplog.at_level("INFO"):
        assert _score_run(run) == 0
    assert f"no checkpoint-N directories in {run}" in caplog.text, caplog.text


def test_run_dir_all_scored_says_why_and_rescore_scores_again(tmp_path, caplog):
    run = _fake_run(tmp_path / "run", steps=(1,))
    out = tmp_path / "m.jsonl"
    assert _score_run(run, "--output", str(out)) == 0
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _score_run(run, "--output", str(out)) == 0
    assert f"all 1 checkpoint(s) of {run} are already scored in {out}" in caplog.text, caplog.text
    assert "--rescore" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _score_run(run, "--output", str(out), "--rescore") == 0
    assert f"scoring {run / 'checkpoint-1'} (step 1)" in caplog.text, caplog.text
    assert _steps(out) == [1]  # the step's record was replaced, not repeated


def test_full_run_with_base_model_scores_it_as_step_0(model_dir, tmp_path):
    run = _fake_run(tmp_path / "run")
    out = tmp_path / "m.jsonl"
    assert _score_run(run, "--base-model", str(model_dir), "--output", str(out)) == 0
    assert _steps(out) == [0, 1, 2]
    assert json.loads(out.read_text().splitlines()[0])["checkpoint"] == str(model_dir)


def test_full_run_base_from_the_checkpoint_config_is_step_0(model_dir, tmp_path):
    run = _fake_run(tmp_path / "run", base=model_dir)
    out = tmp_path / "m.jsonl"
    assert _score_run(run, "--output", str(out)) == 0
    assert _steps(out) == [0, 1, 2]
    assert _score_run(run, "--output", str(tmp_path / "no-base.jsonl"), "--no-include-base") == 0
    assert _steps(tmp_path / "no-base.jsonl") == [1, 2]


def test_include_base_without_a_known_base_is_an_error(tmp_path, capsys):
    run = _fake_run(tmp_path / "run", steps=(1,))
    capsys.readouterr()  # saving the checkpoints printed progress bars
    assert _score_run(run, "--include-base") == 2
    line = _one_line(capsys.readouterr().err)
    assert "--base-model" in line and str(run) in line


def test_report_without_step_0_does_not_call_the_first_checkpoint_baseline(model_dir, tmp_path):
    run = _fake_run(tmp_path / "run")
    assert _score_run(run) == 0  # transformers 5 keeps no _name_or_path: the base is unknown, no step 0
    assert main(["--quiet", "report", str(run), "--output-dir", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "baseline" not in text.lower(), text
    assert "| first checkpoint (step 1) | 1 |" in text and "first checkpoint (step 1) → final" in text, text

    with_base = tmp_path / "with-base"
    jsonl = with_base / "neuronxa" / "metrics.jsonl"
    assert _score_run(run, "--base-model", str(model_dir), "--output", str(jsonl)) == 0
    assert main(["--quiet", "report", str(with_base), "--output-dir", str(tmp_path / "report-base")]) == 0
    text = (tmp_path / "report-base" / "report.md").read_text(encoding="utf-8")
    assert "| baseline | 0 |" in text and "Change baseline → final" in text, text


# ------------------------------------------------------------------------------------------------------------------
# translate: a progress bar over sentences that moves during a batch.


def test_translate_progress_counts_sentences_and_shows_tokens(capfd):
    from neuronxa_callback.quality.generation import translate
    from neuronxa_callback.testing.tiny import corpus_sentences, tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", tokenizer=tokenizer)
    sources = corpus_sentences()[:5]
    quiet = translate(
        model,
        tokenizer,
        sources,
        source_lang="eng_Latn",
        target_lang="isl_Latn",
        prompt="fewshot",
        batch_size=2,
        max_new_tokens=3,
    )
    assert "sentence" not in capfd.readouterr().err  # the library default shows no bar
    shown = translate(
        model,
        tokenizer,
        sources,
        source_lang="eng_Latn",
        target_lang="isl_Latn",
        prompt="fewshot",
        batch_size=2,
        max_new_tokens=3,
        progress=True,
    )
    assert shown == quiet
    err = capfd.readouterr().err
    assert "5/5" in err and "sentence" in err, err  # the total is sentences (3 batches would read 3/3)
    assert "batch 1/3" in err and "token 1/3" in err, err
