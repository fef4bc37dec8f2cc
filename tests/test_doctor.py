"""`neuronxa doctor`: the versions it reports are the installed ones, a missing library is reported with its install
line, --strict turns that into exit 1, and the default run imports no heavy optional library."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from neuronxa_callback.cli import main
from neuronxa_callback.doctor import BROKEN, COMET_INSTALL, MISSING, NOTE, OK, _distribution, _Requirements

pytestmark = pytest.mark.usefixtures("restore_library_verbosity")


def _line(output: str, name: str) -> str:
    """The report line of check `name` (with the fix line below it, when there is one)."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.split()[1:2] == [name]:
            follow = lines[index + 1] if index + 1 < len(lines) and "->" in lines[index + 1] else ""
            return f"{line}\n{follow}"
    raise AssertionError(f"no line for {name!r} in:\n{output}")


def test_reports_the_installed_versions(capsys):
    import torch

    assert main(["doctor"]) == 0
    output = capsys.readouterr().out
    assert _line(output, "python").split()[2] == platform.python_version()
    assert _line(output, "neuronxa_callback").split()[2] == metadata.version("neuronxa_callback")
    torch_line = _line(output, "torch")
    assert torch_line.split()[:3] == [OK, "torch", torch.__version__] and "[imported]" in torch_line
    cuda_line = _line(output, "CUDA")
    assert ("not available" in cuda_line) == (not torch.cuda.is_available())
    for distribution in ("transformers", "peft", "numpy", "sacrebleu"):
        assert _line(output, distribution).split()[:3] == [OK, distribution, metadata.version(distribution)]


def _doctor_with_blocked_modules(*blocked: str, strict: bool) -> subprocess.CompletedProcess:
    """Run `neuronxa doctor` in a fresh interpreter whose import system refuses `blocked`, as if not installed."""
    code = textwrap.dedent(
        f"""
        import sys

        BLOCKED = {blocked!r}

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Refuse())
        from neuronxa_callback.cli import main

        sys.exit(main(["doctor"{', "--strict"' if strict else ""}]))
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_missing_library_shows_missing_and_its_install_line():
    done = _doctor_with_blocked_modules("trackio", "comet", "lingua", strict=False)
    assert done.returncode == 0, done.stderr
    trackio = _line(done.stdout, "trackio")
    assert trackio.split()[0] == MISSING
    assert "-> pip install 'neuronxa_callback[trackers]'" in trackio
    comet = _line(done.stdout, "unbabel-comet")
    assert comet.split()[0] == MISSING and f"-> {COMET_INSTALL}" in comet
    assert "pip install --no-deps unbabel-comet==2.2.7" in COMET_INSTALL
    assert "pip install 'neuronxa_callback[comet]'" in COMET_INSTALL
    assert _line(done.stdout, "mlflow").split()[0] in (OK, MISSING)  # the others are still checked
    # lingua is the alternative language identifier (py3langid is a dependency): its absence is a note, not a failure.
    assert _line(done.stdout, "lingua-language-detector").split()[0] == NOTE
    assert "2 missing or broken" in done.stdout


def test_strict_exits_1_when_something_is_missing():
    done = _doctor_with_blocked_modules("trackio", strict=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert _line(done.stdout, "trackio").split()[0] == MISSING


def test_a_version_outside_the_required_range_is_broken_with_the_fix():
    # numpy is installed; a requirement it cannot meet stands for an environment another package downgraded.
    check = _distribution("core", "numpy", "numpy", _Requirements(["numpy<1.0"]), extra=None)
    assert check.status == BROKEN and metadata.version("numpy") in check.detail
    assert check.fix == "pip install 'numpy<1.0'"
    assert _distribution("core", "numpy", "numpy", _Requirements(["numpy>=1.0"]), extra=None).status == OK


def test_the_default_run_imports_no_heavy_optional_library():
    code = textwrap.dedent(
        """
        import sys
        from neuronxa_callback.doctor import run_checks

        run_checks()
        heavy = ("bitsandbytes", "comet", "trackio", "mlflow", "ray", "deepspeed", "lingua", "transformers")
        print(",".join(name for name in heavy if name in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
