"""The README's Quick start runs as written (only max_steps made smaller), so a renamed argument fails here first."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_code() -> str:
    """The first ```python block under the "## Quick start" heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README: no python block under ## Quick start"
    return match.group(1)


def test_the_quickstart_is_complete_python():
    code = quickstart_code()
    compile(code, "README.md#quick-start", "exec")
    # Everything it uses is defined or imported in the block itself (the old one used an undefined model/train).
    for name in ("model", "tokenizer", "train", "trainer", "callback"):
        assert re.search(rf"^{name}\b.*=|^{name}, ", code, flags=re.M) or re.search(rf"\b{name}\s*=", code), name
    assert "max_steps=20" in code


@pytest.mark.slow  # the real Gemma 3 270M: two measurements with quality and two training steps, ~2 min here
@pytest.mark.integration
def test_the_quickstart_runs_as_written(tmp_path):
    pytest.importorskip("gguf")
    code = quickstart_code().replace("max_steps=20", "max_steps=2")
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
    )
    assert run.returncode == 0, run.stderr[-4000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "neuronxa" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2]
    assert all("quality" in r for r in records)  # the baseline (index 0) and the final measurement
    progress = [line for line in run.stderr.splitlines() if line.startswith("NeuronXA ")]
    assert progress[0].startswith("NeuronXA measuring step 0")
    assert progress[-1].startswith("NeuronXA done: 2 measurement(s)")
    assert len(progress) == len(set(progress))
