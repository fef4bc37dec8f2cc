"""Build the sdist and wheel as a release would, and install the wheel the way users do, into a fresh venv.

    python tools/wheel_smoke.py [--keep] [--workdir DIR]      (`make wheel-test`; tests/test_wheel.py runs it)

Steps, each timed: `python -m build` (the sdist, then the wheel built from that sdist, so the sdist must hold all a
build needs) -> the sdist's file list (what it must hold, and no junk: .venv, mlruns, .cache, site/, ...) ->
`twine check` -> a fresh venv -> torch==2.13.0 (the CPU wheel from this machine's local wheel store) -> the wheel,
not editable, its other dependencies resolved from the package index -> tools/wheel_smoke_checks.py run from a
directory outside the checkout. Exit 0 when all pass. Needs `build` and `twine` in the running interpreter (the
[dev] extra) and access to the package index for the wheel's dependencies and the isolated build's setuptools.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"

# What the sdist must hold for a build and for users who read it, and what must never be in it.
SDIST_REQUIRED = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "tests/conftest.py",
    "neuronxa_callback/__init__.py",
    "neuronxa_callback/data/packaged/ntrex128/LICENSE.md",
    "neuronxa_callback/data/packaged/ntrex128/README.md",
    "neuronxa_callback/data/packaged/ntrex128/ntrex128_eval.jsonl.gz",
)
SDIST_FORBIDDEN = (
    ".venv/",
    "mlruns/",
    ".cache/",
    "site/",
    ".git/",
    "__pycache__/",
    "wandb/",
    "runs/",
    ".pytest_cache/",
)


def _step(name: str, argv: list[str], **kwargs) -> float:
    started = time.perf_counter()
    print(f"wheel smoke: {name}: {' '.join(argv)}", flush=True)
    subprocess.run(argv, check=True, **kwargs)
    seconds = time.perf_counter() - started
    print(f"wheel smoke: {name}: {seconds:.1f} s", flush=True)
    return seconds


def check_sdist(sdist: Path) -> list[str]:
    """The sdist's member paths (without the top folder); SystemExit naming what is missing or should not be there."""
    with tarfile.open(sdist) as archive:
        members = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    missing = [path for path in SDIST_REQUIRED if path not in members]
    junk = sorted({path for path in members for bad in SDIST_FORBIDDEN if f"/{path}".find(f"/{bad}") != -1})
    if missing or junk:
        raise SystemExit(f"wheel smoke: {sdist.name}: missing {missing}, should not contain {junk[:20]}")
    return members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (dist/ and the venv)")
    args = parser.parse_args(argv)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="neuronxa-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    try:
        dist = work / "dist"
        times["build"] = _step("build sdist + wheel", [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
        (sdist,) = dist.glob("*.tar.gz")
        (wheel,) = dist.glob("*.whl")
        members = check_sdist(sdist)
        print(f"wheel smoke: {sdist.name}: {len(members)} files, none of {', '.join(SDIST_FORBIDDEN)}", flush=True)
        times["twine check"] = _step(
            "twine check", [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)]
        )
        started = time.perf_counter()
        venv.EnvBuilder(with_pip=True).create(work / "venv")
        times["venv"] = time.perf_counter() - started
        python = str(work / "venv" / "bin" / "python")
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        times["torch"] = _step("install torch", [*pip, TORCH])
        times["wheel"] = _step("install the wheel and its dependencies", [*pip, str(wheel)])
        outside = work / "outside"
        outside.mkdir(exist_ok=True)
        checks = [python, str(ROOT / "tools" / "wheel_smoke_checks.py"), version, str(ROOT / "LICENSE")]
        times["smoke"] = _step("smoke checks", checks, cwd=outside)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items())
    print(f"wheel smoke: ok, neuronxa_callback {version}: {summary}, total {sum(times.values()):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
