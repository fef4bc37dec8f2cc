"""COMET / CometKiwi end to end on tiny random COMET models built offline (neuronxa_callback/testing/comet.py), and the
unbabel-comet compatibility layer. No mocks of COMET: real comet classes, real checkpoints, real forward passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from neuronxa_callback.quality import _comet_compat
from neuronxa_callback.quality import metrics as quality
from neuronxa_callback.quality.metrics import CometKiwiScorer, CometModelError, CometScorer, make_scorers
from neuronxa_callback.testing.comet import build_tiny_comet

# Checked through the package metadata: importing comet here would bypass _comet_compat.import_comet.
pytestmark = pytest.mark.skipif(
    _comet_compat.comet_version() is None, reason="unbabel-comet not installed (see _comet_compat.INSTALL_HINT)"
)

NUM_SEGMENTS = 20


@pytest.fixture(scope="session")
def ntrex_texts(ntrex_dir: Path) -> dict[str, list[str]]:
    folder = ntrex_dir / "NTREX-128"
    return {
        "eng": (folder / "newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines(),
        "deu": (folder / "newstest2019-ref.deu.txt").read_text(encoding="utf-8").splitlines(),
    }


@pytest.fixture(scope="session")
def segments(ntrex_texts):
    """20 real sentences: German sources, English references, and English 'hypotheses' that are degraded."""
    sources = ntrex_texts["deu"][:NUM_SEGMENTS]
    references = ntrex_texts["eng"][:NUM_SEGMENTS]
    hypotheses = [" ".join(r.split()[: max(1, len(r.split()) // 2)]) for r in references]
    return sources, hypotheses, references


@pytest.fixture(scope="session")
def tiny_comet_dirs(tmp_path_factory, ntrex_texts) -> dict[str, Path]:
    """Tiny regression (COMET-DA-like) and unified (CometKiwi-like) models, built once per session."""
    # Tokenizer training text: NTREX lines the tests never score.
    sentences = ntrex_texts["eng"][100:400] + ntrex_texts["deu"][100:400]
    root = tmp_path_factory.mktemp("tiny_comet")
    return {
        "regression": build_tiny_comet(root / "comet-da", sentences, kind="regression"),
        "unified": build_tiny_comet(root / "cometkiwi", sentences, kind="unified"),
    }


@pytest.fixture(scope="session")
def comet_scorer(tiny_comet_dirs):
    return CometScorer(model=str(tiny_comet_dirs["regression"]), batch_size=8)


@pytest.fixture(scope="session")
def kiwi_scorer(tiny_comet_dirs):
    return CometKiwiScorer(model=str(tiny_comet_dirs["unified"]), batch_size=8)


# ------------------------------------------------------------------------------------------- compat


def test_compat_versions_and_patches_are_applied_once():
    comet = _comet_compat.import_comet()
    version, major = _comet_compat.check_versions()
    assert version == metadata.version("unbabel-comet") == comet.__version__
    assert major == int(__import__("transformers").__version__.split(".")[0])
    from comet.encoders.xlmr import XLMREncoder

    forward = XLMREncoder.forward
    assert _comet_compat.import_comet() is comet  # idempotent: nothing re-imported or re-patched
    assert XLMREncoder.forward is forward
    expected = ("encoder_forward_dict", "pair_special_tokens") if major >= 5 else ()
    assert _comet_compat.applied_patches() == expected


def test_compat_missing_comet_names_the_install_commands(monkeypatch):
    real_version = metadata.version

    def version_without_comet(name):
        if name == "unbabel-comet":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(metadata, "version", version_without_comet)
    with pytest.raises(ImportError) as error:
        _comet_compat.check_versions()
    assert "pip install --no-deps unbabel-comet==2.2.7" in str(error.value)
    assert "pip install 'neuronxa_callback[comet]'" in str(error.value)


def test_compat_warns_on_other_comet_version(monkeypatch):
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda n: "2.3.0" if n == "unbabel-comet" else real_version(n))
    with pytest.warns(_comet_compat.CometVersionWarning, match="2.3.0"):
        assert _comet_compat.check_versions()[0] == "2.3.0"


def test_compat_import_does_not_configure_root_logging():
    """comet/__init__.py calls logging.basicConfig(INFO); in a fresh process the root logger must stay bare."""
    code = (
        "import logging; from neuronxa_callback.quality._comet_compat import import_comet, applied_patches; "
        "import_comet(); root = logging.getLogger(); print(len(root.handlers), root.level, applied_patches())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    handlers, level, _ = result.stdout.strip().split(" ", 2)
    assert (handlers, level) == ("0", str(30))  # no handler, WARNING (Python's default)
    assert "pkg_resources is deprecated" not in result.stderr


# ------------------------------------------------------------------------------------------- scoring


def test_comet_scores_equal_comets_own_predict(comet_scorer, segments):
    sources, hypotheses, references = segments
    result = comet_scorer.score(sources, hypotheses, references)
    samples = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references)]
    expected = comet_scorer.model.predict(samples, batch_size=8, gpus=0, progress_bar=False)
    assert result.name == "COMET"
    assert result.segments == pytest.approx(expected.scores, abs=1e-6)
    assert result.system == pytest.approx(expected.system_score, abs=1e-6)
    assert result.signature == f"comet|model:{comet_scorer.model_name}|v:2.2.7"
    assert len(set(round(s, 6) for s in result.segments)) > NUM_SEGMENTS // 2  # real inputs, varied scores


def test_cometkiwi_scores_equal_comets_own_predict_without_references(kiwi_scorer, segments):
    sources, hypotheses, references = segments
    result = kiwi_scorer.score(sources, hypotheses)
    samples = [{"src": s, "mt": h} for s, h in zip(sources, hypotheses)]
    expected = kiwi_scorer.model.predict(samples, batch_size=8, gpus=0, progress_bar=False)
    assert result.name == "CometKiwi" and result.signature.startswith("cometkiwi|model:")
    assert result.segments == pytest.approx(expected.scores, abs=1e-6)
    assert len(set(round(s, 7) for s in result.segments)) > NUM_SEGMENTS // 2
    # Reference-free: references, if given, are ignored.
    assert kiwi_scorer.score(sources, hypotheses, references).segments == result.segments


def test_scores_are_deterministic_and_independent_of_batch_size(tiny_comet_dirs, comet_scorer, segments):
    first = comet_scorer.score(*segments)
    second = comet_scorer.score(*segments)
    assert first.segments == second.segments and first.system == second.system
    reloaded = CometScorer(model=str(tiny_comet_dirs["regression"]), batch_size=3).score(*segments)
    assert reloaded.segments == pytest.approx(first.segments, abs=1e-5)


def test_model_is_loaded_once_and_reused(tiny_comet_dirs, segments, monkeypatch):
    calls = []
    real_load = quality.load_comet_model

    def counting_load(*args, **kwargs):
        calls.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(quality, "load_comet_model", counting_load)
    scorer = make_scorers(["comet"], comet_model=tiny_comet_dirs["regression"])[0]
    assert calls == []  # lazy
    scorer.score(*segments)
    model = scorer.model
    scorer.score(*segments[:2], segments[2])
    assert len(calls) == 1 and scorer.model is model
    assert not model.training


def test_no_lightning_output_while_loading_and_scoring(tiny_comet_dirs, segments, capfd):
    scorer = CometKiwiScorer(model=tiny_comet_dirs["unified"])
    scorer.score(segments[0], segments[1])
    out, err = capfd.readouterr()
    for noise in ("GPU available", "TPU available", "Predicting", "LOCAL_RANK", "it/s]", "Tip:"):
        assert noise not in out + err, f"unexpected output {noise!r}:\n{out}{err}"


def test_comet_needs_references_and_sources(comet_scorer, segments):
    sources, hypotheses, references = segments
    with pytest.raises(ValueError, match="needs references"):
        comet_scorer.score(sources, hypotheses)
    with pytest.raises(ValueError, match="needs sources"):
        comet_scorer.score(None, hypotheses, references)


# ------------------------------------------------------------------------------------------- loading


def test_missing_model_names_what_was_tried(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(CometModelError, match="no-such-model.*does not exist"):
        quality.load_comet_model(str(missing))
    with pytest.raises(CometModelError, match=r"Tried: .*hub repo 'nobody/no-comet-here'"):
        quality.load_comet_model("nobody/no-comet-here")  # HF_HUB_OFFLINE=1: the cache only, no network
    (tmp_path / "empty").mkdir()
    with pytest.raises(CometModelError, match="has no checkpoints/model.ckpt"):
        _ = CometScorer(model=tmp_path / "empty").model


def _copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_checkpoint_with_missing_or_unexpected_keys_is_refused(tiny_comet_dirs, tmp_path):
    import torch

    for change in ("missing", "unexpected"):
        model_dir = _copy_model(tiny_comet_dirs["regression"], tmp_path / change)
        path = model_dir / "checkpoints" / "model.ckpt"
        checkpoint = torch.load(path, weights_only=False)
        if change == "missing":
            checkpoint["state_dict"].pop("estimator.ff.0.weight")
        else:
            checkpoint["state_dict"]["estimator.extra.weight"] = torch.zeros(1)
        torch.save(checkpoint, path)
        with pytest.raises(CometModelError, match=f"1 {change} keys.*estimator"):
            quality.load_comet_model(model_dir)


def test_corrupt_checkpoint_file_is_reported(tiny_comet_dirs, tmp_path):
    model_dir = _copy_model(tiny_comet_dirs["regression"], tmp_path / "corrupt")
    (model_dir / "checkpoints" / "model.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CometModelError, match="could not be read"):
        quality.load_comet_model(model_dir)


def test_moved_model_with_relative_encoder_path_loads_the_same(tiny_comet_dirs, tmp_path, segments):
    import torch
    import yaml

    original = tiny_comet_dirs["regression"]
    moved = _copy_model(original, tmp_path / "moved")
    # As if built on another machine: the checkpoint's own encoder path does not exist here ...
    path = moved / "checkpoints" / "model.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["hyper_parameters"]["pretrained_model"] = str(tmp_path / "elsewhere" / "encoder")
    torch.save(checkpoint, path)
    # ... and hparams.yaml names the encoder relative to the model directory.
    hparams_file = moved / "hparams.yaml"
    hparams = yaml.safe_load(hparams_file.read_text())
    hparams["pretrained_model"] = "encoder"
    hparams_file.write_text(yaml.safe_dump(hparams))
    moved_scores = CometScorer(model=moved).score(*segments).segments
    assert moved_scores == pytest.approx(CometScorer(model=original).score(*segments).segments, abs=1e-6)


def test_reference_free_scorer_refuses_a_model_that_needs_references(tiny_comet_dirs, segments):
    scorer = CometKiwiScorer(model=tiny_comet_dirs["regression"])
    with pytest.raises(CometModelError, match="needs references: use CometScorer"):
        scorer.score(segments[0], segments[1])
