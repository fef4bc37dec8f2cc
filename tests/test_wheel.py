"""The wheel as users get it: built with `python -m build` (sdist, then the wheel from it), checked by twine, installed
(not editable) into a fresh venv with its dependencies from the package index, and used from outside the checkout
(tools/wheel_smoke.py; about 2 minutes, most of it pip)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_built_wheel_installs_and_works_outside_the_checkout(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "wheel_smoke.py"), "--workdir", str(tmp_path / "wheel")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "wheel smoke: ok, neuronxa_callback" in done.stdout
    assert "tiny NASCA" in done.stdout
