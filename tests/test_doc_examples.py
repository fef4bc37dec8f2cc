"""Examples that cannot rot: every python / shell block in README.md and docs/**/*.md says how it is tested, and runs.

A block a user might run is preceded by one marker (blank lines between are fine):

    <!-- test: run -->             run as written (in a fresh temporary folder)
    <!-- test: tiny -->            run with tiny settings: "gemma-3-270m" becomes a tiny random Llama saved on disk
                                   (the same loading path as a real local checkpoint) and max_steps=N becomes 2
    <!-- test: compile [why] -->   only checked: python compiles, shell passes `bash -n` (needs GPUs, your own files)
    <!-- test: skip <why> -->      not run; the reason is required (and says what tests it instead, where something does)

A python / py / bash / sh / shell / console block without a marker fails the fast test below, so a new example has
to choose. ```text, ```yaml and unlabelled blocks are output or configuration and are not checked. The marked blocks
run in the slow tests, one test per block (named by file and line).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}
MODES = ("run", "tiny", "compile", "skip")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<mode>\S+)\s*(?P<why>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    kind: str  # "python" or "shell"
    code: str
    mode: str | None  # None: no marker
    why: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every Markdown page of the docs site (docs/_hooks holds code, not pages)."""
    pages = sorted(p for p in (REPO_ROOT / "docs").rglob("*.md") if "_hooks" not in p.parts)
    return [REPO_ROOT / "README.md", *pages]


def extract_blocks(path: Path) -> list[Block]:
    """The python and shell blocks of one file, each with the marker that precedes it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        ticks, indent = opening.group("ticks"), opening.group("indent")
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            end += 1
        kind = RUNNABLE.get(opening.group("lang").lower())
        if kind:
            code = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end])
            previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
            marker = _MARKER.match(previous)
            blocks.append(
                Block(
                    path=path,
                    line=i + 1,
                    kind=kind,
                    code=code + "\n",
                    mode=marker.group("mode") if marker else None,
                    why=marker.group("why") if marker else "",
                )
            )
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in doc_files() for block in extract_blocks(path)]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO_ROOT)) for p in paths]


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_every_runnable_block_says_how_it_is_tested(path):
    problems = []
    for block in extract_blocks(path):
        if block.mode is None:
            problems.append(
                f"{block.name}: a {block.kind} block without a marker: put <!-- test: run|tiny|compile|skip <why> --> "
                "on the line before it (see tests/test_doc_examples.py)"
            )
        elif block.mode not in MODES:
            problems.append(f"{block.name}: unknown marker 'test: {block.mode}' (one of {', '.join(MODES)})")
        elif block.mode == "skip" and not block.why:
            problems.append(f"{block.name}: 'test: skip' needs a reason")
    assert not problems, "\n".join(problems)


def _check_syntax(block: Block) -> None:
    if block.kind == "python":
        compile(block.code, block.name, "exec")
        return
    checked = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"{block.name}: bash -n: {checked.stderr}"


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_checked_blocks_are_valid_syntax(path):
    for block in extract_blocks(path):
        if block.mode in ("run", "tiny", "compile"):
            _check_syntax(block)


def test_the_marker_parser_sees_what_a_writer_means(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- test: tiny -->\n\n```python\nprint(1)\n```\n\n```bash\necho hi\n```\n\n"
        "<!-- test: skip needs a GPU -->\n```sh\nnvidia-smi\n```\n\n```yaml\na: 1\n```\n\n"
        "- a list item:\n\n  <!-- test: run -->\n  ```python\n  x = 1\n  ```\n",
        encoding="utf-8",
    )
    found = [(b.line, b.kind, b.mode, b.why, b.code) for b in extract_blocks(page)]
    assert found == [
        (3, "python", "tiny", "", "print(1)\n"),
        (7, "shell", None, "", "echo hi\n"),
        (12, "shell", "skip", "needs a GPU", "nvidia-smi\n"),
        (23, "python", "run", "", "x = 1\n"),
    ]


def tiny_version(code: str, model_dir: Path) -> str:
    """The block with tiny settings: the embedded model name -> a tiny local checkpoint, max_steps=N -> 2."""
    code = code.replace('"gemma-3-270m"', repr(str(model_dir))).replace("gemma-3-270m", str(model_dir))
    return re.sub(r"\bmax_steps=\d+", "max_steps=2", code)


def test_tiny_settings_replace_the_model_and_the_steps(tmp_path):
    code = 'load("gemma-3-270m")\nTrainingArguments("out", max_steps=20)\nneuronxa score --model gemma-3-270m\n'
    assert tiny_version(code, tmp_path) == (
        f'load({str(tmp_path)!r})\nTrainingArguments("out", max_steps=2)\nneuronxa score --model {tmp_path}\n'
    )


RUN_BLOCKS = [block for block in all_blocks() if block.mode in ("run", "tiny")]


@pytest.mark.slow  # each block is a fresh interpreter that imports torch and transformers: 10-60 s each here
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.name for block in RUN_BLOCKS])
def test_doc_example_runs(block, tmp_path, model_dir):
    code = tiny_version(block.code, model_dir) if block.mode == "tiny" else block.code
    bin_dir = str(Path(sys.executable).parent)  # the `neuronxa` command of this environment
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "Agg",
    }
    if block.kind == "python":
        script = tmp_path / "example.py"
        command = [sys.executable, str(script)]
    else:
        script = tmp_path / "example.sh"
        command = ["bash", "-e", "-o", "pipefail", str(script)]
    script.write_text(code, encoding="utf-8")
    ran = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, f"{block.name} ({block.mode}) failed:\n{code}\n--- stderr ---\n{ran.stderr[-4000:]}"
    if "neuronxa/metrics.jsonl" in block.code:  # an example that promises a JSONL must write one
        written = list(tmp_path.rglob("neuronxa/metrics.jsonl"))
        assert written and written[0].read_text(encoding="utf-8").strip(), f"{block.name}: no metrics.jsonl written"
