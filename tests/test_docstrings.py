"""Habits of the public API: every name in neuronxa_callback.__all__ has a docstring (it becomes the API reference),
and mypy's file list ([tool.mypy] in pyproject.toml) covers every module the package exports from."""

from __future__ import annotations

from pathlib import Path

import tomllib

import neuronxa_callback

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_has_a_docstring():
    undocumented = []
    for name in neuronxa_callback.__all__:
        if name == "__version__":
            continue
        value = getattr(neuronxa_callback, name)
        # __doc__, not inspect.getdoc: getdoc would lend an undocumented exception class the docstring of Exception.
        if not (getattr(value, "__doc__", None) or "").strip():
            undocumented.append(f"{name} ({neuronxa_callback._EXPORTS[name]})")
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_mypy_checks_every_module_the_package_exports_from():
    files = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["files"])
    exporting = {f"neuronxa_callback/{module.replace('.', '/')}.py" for module in neuronxa_callback._EXPORTS.values()}
    missing = sorted(exporting - files)
    assert not missing, f"add these to [tool.mypy] files in pyproject.toml: {missing}"
