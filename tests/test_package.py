"""The public API: every exported name resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import neuronxa_callback


def test_every_exported_name_resolves():
    for name in neuronxa_callback.__all__:
        assert getattr(neuronxa_callback, name) is not None, name


def test_unknown_attribute_raises_attribute_error():
    try:
        neuronxa_callback.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_pull_in_torch_or_transformers():
    code = "import sys, neuronxa_callback; print(sorted(m for m in ('torch', 'transformers', 'wandb', 'comet') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == "[]"
