"""Translation-quality scores: chrF++, BLEU (sacrebleu), COMET and CometKiwi (unbabel-comet).

Usage::

    from neuronxa_callback.quality.metrics import make_scorers

    for scorer in make_scorers(["chrf", "bleu", "comet"], comet_model="Unbabel/wmt22-comet-da"):
        result = scorer.score(sources, hypotheses, references)
        print(result.name, result.system, result.signature)

    kiwi = CometKiwiScorer(model="/models/wmt22-cometkiwi-da")   # a local COMET directory works offline
    kiwi.score(sources, hypotheses).system                       # reference-free

COMET models are loaded once, on first use, and reused. Scoring runs comet's own batching
(``prepare_for_inference``) and ``predict_step`` in a plain loop under ``torch.inference_mode`` instead of
``model.predict()``, which builds a Lightning Trainer on every call (progress bars, "GPU available" lines,
DataLoader workers, ``exit()`` in non-zero ranks). Batches are formed exactly as ``predict()`` forms them
(sorted by source length), so the scores equal ``predict(gpus=0)``'s.

Security: COMET checkpoints (``checkpoints/model.ckpt``) are Python pickles; loading one can run arbitrary
code. Load only checkpoints you trust.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_COMET_MODEL = "Unbabel/wmt22-comet-da"
DEFAULT_COMETKIWI_MODEL = "Unbabel/wmt22-cometkiwi-da"
SCORER_NAMES = ("chrf", "bleu", "comet", "cometkiwi")

# Buffers that older transformers saved in the state dict and newer ones no longer register (position_ids
# became non-persistent): released COMET checkpoints carry them; they hold no learned weights.
_IGNORABLE_UNEXPECTED_SUFFIXES = ("embeddings.position_ids",)


class CometModelError(ValueError):
    """A COMET model could not be found or loaded."""


@dataclass
class QualityScore:
    """One metric's result for a set of translations.

    name: "chrF++", "BLEU", "COMET" or "CometKiwi"; system: corpus-level score (sacrebleu's corpus score for
    chrF/BLEU, the mean of the segment scores for COMET); segments: one score per hypothesis (or None);
    signature: what produced it (sacrebleu's signature, or "comet|model:<name or path>|v:<comet version>";
    "cometkiwi|model:...|v:..." for CometKiwi).
    """

    name: str
    system: float
    segments: list[float] | None = None
    signature: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "system": self.system,
            "segments": None if self.segments is None else list(self.segments),
            "signature": self.signature,
        }


class QualityScorer:
    """Common base: ``score(sources, hypotheses, references=None) -> QualityScore``."""

    name: str = ""
    needs_references: bool = True

    def score(
        self, sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str] | None = None
    ) -> QualityScore:
        raise NotImplementedError

    def _check_inputs(self, sources, hypotheses, references) -> tuple[list[str], list[str], list[str] | None]:
        hypotheses = _as_text_list(hypotheses, "hypotheses")
        if not hypotheses:
            raise ValueError(f"{type(self).__name__}.score: hypotheses is empty")
        sources = None if sources is None else _as_text_list(sources, "sources")
        references = None if references is None else _as_text_list(references, "references")
        if self.needs_references and references is None:
            raise ValueError(f"{type(self).__name__}.score: {self.name} needs references (got references=None)")
        for label, values in (("sources", sources), ("references", references)):
            if values is not None and len(values) != len(hypotheses):
                raise ValueError(
                    f"{type(self).__name__}.score: {label} has {len(values)} items but hypotheses has {len(hypotheses)}"
                )
        return sources, hypotheses, references


def _as_text_list(values: Sequence[str], argument: str) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"{argument} must be a sequence of strings, not one string")
    values = list(values)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"{argument}[{index}] is {type(value).__name__}, expected str")
    return values


class _SacrebleuScorer(QualityScorer):
    """A sacrebleu metric: the corpus score, sentence scores as segments, and sacrebleu's own signature."""

    needs_references = True

    def __init__(self, corpus_metric: Any, sentence_metric: Any, *, segments: bool) -> None:
        self._metric = corpus_metric
        self._sentence_metric = sentence_metric
        self._segments = segments

    def score(self, sources, hypotheses, references=None) -> QualityScore:
        _, hypotheses, references = self._check_inputs(sources, hypotheses, references)
        corpus = self._metric.corpus_score(hypotheses, [references])
        segments = None
        if self._segments:
            segments = [self._sentence_metric.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]
        return QualityScore(self.name, float(corpus.score), segments, str(self._metric.get_signature()))


class ChrFScorer(_SacrebleuScorer):
    """chrF++ (sacrebleu ``CHRF(word_order=2)``); segments are sentence-level chrF++."""

    name = "chrF++"

    def __init__(self, *, segments: bool = True) -> None:
        from sacrebleu.metrics import CHRF

        metric = CHRF(word_order=2)
        super().__init__(metric, metric, segments=segments)


class BLEUScorer(_SacrebleuScorer):
    """BLEU (sacrebleu defaults, 13a tokenizer); segments are sentence BLEU with effective order."""

    name = "BLEU"

    def __init__(self, *, segments: bool = True) -> None:
        from sacrebleu.metrics import BLEU

        super().__init__(BLEU(), BLEU(effective_order=True), segments=segments)


class CometScorer(QualityScorer):
    """COMET with references (default Unbabel/wmt22-comet-da).

    model: a hub id (downloaded through huggingface_hub, or read from its cache when offline) or a local COMET
    directory (``checkpoints/model.ckpt`` + ``hparams.yaml``) or the ``model.ckpt`` file itself.
    device: "cpu", "cuda", or None for cuda when available. offload: on GPU, move the model back to CPU after
    each ``score`` call so it does not hold GPU memory between evaluations (e.g. during training).
    COMET checkpoints are pickles: load only trusted ones.
    """

    name = "COMET"
    needs_references = True
    default_model = DEFAULT_COMET_MODEL

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str | None = "cpu",
        batch_size: int = 16,
        offload: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if device not in (None, "cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or None, got {device!r}")
        self.model_name = str(model if model is not None else self.default_model)
        self.device = device
        self.batch_size = batch_size
        self.offload = offload
        self._model = None

    @property
    def model(self):
        """The COMET model, loaded on first access and kept."""
        if self._model is None:
            self._model = load_comet_model(self.model_name)
            self._check_model_kind(self._model)
        return self._model

    def _check_model_kind(self, model) -> None:
        if model.requires_references() and not self.needs_references:
            raise CometModelError(
                f"{type(self).__name__} is reference-free but COMET model {self.model_name!r} "
                f"({type(model).__name__}) needs references: use CometScorer"
            )
        if not model.requires_references() and self.needs_references:
            logger.warning(
                "%s: COMET model %s does not use references (CometKiwiScorer may be what you want)",
                type(self).__name__,
                self.model_name,
            )

    @property
    def signature(self) -> str:
        from neuronxa_callback.quality._comet_compat import comet_version

        return f"{self.name.lower()}|model:{self.model_name}|v:{comet_version()}"

    def score(self, sources, hypotheses, references=None) -> QualityScore:
        sources, hypotheses, references = self._check_inputs(sources, hypotheses, references)
        if sources is None:
            raise ValueError(f"{type(self).__name__}.score: {self.name} needs sources (got sources=None)")
        samples = [{"src": s, "mt": h} for s, h in zip(sources, hypotheses)]
        if references is not None and self.needs_references:
            for sample, reference in zip(samples, references):
                sample["ref"] = reference
        segments = predict_segment_scores(
            self.model, samples, batch_size=self.batch_size, device=self._resolved_device(), offload=self.offload
        )
        return QualityScore(self.name, sum(segments) / len(segments), segments, self.signature)

    def _resolved_device(self) -> str:
        if self.device is not None:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


class CometKiwiScorer(CometScorer):
    """CometKiwi: reference-free COMET (default Unbabel/wmt22-cometkiwi-da); references are ignored."""

    name = "CometKiwi"
    needs_references = False
    default_model = DEFAULT_COMETKIWI_MODEL


def make_scorers(
    names: Sequence[str] = ("chrf",),
    *,
    comet_model: str | os.PathLike | None = None,
    cometkiwi_model: str | os.PathLike | None = None,
    device: str | None = "cpu",
    batch_size: int = 16,
    offload: bool = True,
) -> list[QualityScorer]:
    """Scorers for ``names`` (any of "chrf", "bleu", "comet", "cometkiwi"; case-insensitive), in that order."""
    if isinstance(names, str):
        names = [names]
    scorers: list[QualityScorer] = []
    for name in names:
        key = str(name).lower().replace("++", "").replace("-", "")
        if key == "chrf":
            scorers.append(ChrFScorer())
        elif key == "bleu":
            scorers.append(BLEUScorer())
        elif key == "comet":
            scorers.append(CometScorer(comet_model, device=device, batch_size=batch_size, offload=offload))
        elif key == "cometkiwi":
            scorers.append(CometKiwiScorer(cometkiwi_model, device=device, batch_size=batch_size, offload=offload))
        else:
            raise ValueError(f"make_scorers: unknown scorer {name!r}; choose from {SCORER_NAMES}")
    return scorers


# ---------------------------------------------------------------------------------------------- loading


def resolve_comet_checkpoint(model: str | os.PathLike) -> Path:
    """Path of ``checkpoints/model.ckpt`` for a local directory, a .ckpt file, or a hub id.

    Raises CometModelError naming everything that was tried.
    """
    path = Path(model).expanduser()
    tried = []
    if path.is_file():
        return path
    if path.is_dir():
        checkpoint = path / "checkpoints" / "model.ckpt"
        if checkpoint.is_file():
            return checkpoint
        raise CometModelError(f"COMET model directory {path} has no checkpoints/model.ckpt")
    tried.append(f"local path {str(path)!r} (does not exist)")
    model = str(model)
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            # comet.download_model does this too, but hides the reason behind "not supported by COMET" and then
            # tries a legacy AWS download; offline (HF_HUB_OFFLINE=1) this reads the local hub cache only.
            snapshot = Path(snapshot_download(repo_id=model))
        except Exception as error:  # noqa: BLE001 - any hub failure means "not found here"; reported below
            tried.append(f"hub repo {model!r} ({type(error).__name__}: {error})")
        else:
            checkpoint = snapshot / "checkpoints" / "model.ckpt"
            if checkpoint.is_file():
                return checkpoint
            tried.append(f"hub repo {model!r} (snapshot {snapshot} has no checkpoints/model.ckpt)")
    else:
        tried.append(f"hub repo {model!r} (not an 'owner/name' id)")
    raise CometModelError(f"COMET model {model!r} not found. Tried: " + "; ".join(tried))


def load_comet_model(model: str | os.PathLike, *, local_files_only: bool | None = None):
    """Load a COMET model (CPU, eval mode) from a hub id, a local COMET directory or a .ckpt file.

    The class comes from ``hparams.yaml`` (``class_identifier``); the hyper-parameters are the checkpoint's,
    updated by ``hparams.yaml`` (so a local copy can point ``pretrained_model`` at a local encoder directory;
    a relative path is taken relative to the model directory). The encoder is built from its config and
    tokenizer only (``load_pretrained_weights=False``): all weights come from the checkpoint, loaded with
    strict key checking (CometModelError on missing or unexpected keys; only the ``position_ids`` buffers that
    old transformers versions saved are dropped).

    Warning: the checkpoint is a pickle; loading it can run arbitrary code. Load only trusted checkpoints.
    """
    import torch
    import yaml

    from neuronxa_callback.quality._comet_compat import import_comet

    comet = import_comet()
    checkpoint_path = resolve_comet_checkpoint(model)
    model_dir = checkpoint_path.parents[1]
    hparams_file = model_dir / "hparams.yaml"
    if not hparams_file.is_file():
        raise CometModelError(f"COMET model {model!r}: {hparams_file} is missing (needed for class_identifier)")
    with open(hparams_file, encoding="utf-8") as handle:
        file_hparams = yaml.safe_load(handle) or {}
    try:
        # weights_only=False: Lightning checkpoints pickle their hyper-parameters (see the warning above).
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CometModelError(f"COMET checkpoint {checkpoint_path} could not be read: {error}") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CometModelError(f"COMET checkpoint {checkpoint_path} has no 'state_dict'")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.update(file_hparams)
    identifier = hparams.get("class_identifier")
    if identifier not in comet.models.str2model:
        raise CometModelError(
            f"{hparams_file}: class_identifier {identifier!r} is not one of {sorted(comet.models.str2model)}"
        )
    model_class = comet.models.str2model[identifier]
    if hparams.get("layer_transformation") == "sparsemax_patch":
        hparams["layer_transformation"] = "softmax"  # comet >= 2.2.4 does the same for these checkpoints
    pretrained = hparams.get("pretrained_model")
    if pretrained and not Path(pretrained).is_absolute() and (model_dir / pretrained).is_dir():
        hparams["pretrained_model"] = str(model_dir / pretrained)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    hparams.update(load_pretrained_weights=False, local_files_only=local_files_only)
    accepted = inspect.signature(model_class.__init__).parameters
    try:
        comet_model = model_class(**{k: v for k, v in hparams.items() if k in accepted})
    except OSError as error:
        raise CometModelError(
            f"COMET model {model!r}: its encoder {hparams.get('pretrained_model')!r} (config + tokenizer) could "
            f"not be loaded{' offline' if local_files_only else ''}: {error}"
        ) from error
    _load_state_dict_strictly(comet_model, checkpoint["state_dict"], checkpoint_path)
    comet_model.eval()
    return comet_model


def _load_state_dict_strictly(comet_model, state_dict: dict, checkpoint_path: Path) -> None:
    expected = set(comet_model.state_dict())
    state_dict = {
        k: v for k, v in state_dict.items() if k in expected or not k.endswith(_IGNORABLE_UNEXPECTED_SUFFIXES)
    }
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise CometModelError(
            f"COMET checkpoint {checkpoint_path} does not match {type(comet_model).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    comet_model.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------------------------------------- scoring


def predict_segment_scores(
    comet_model, samples: list[dict[str, str]], *, batch_size: int = 16, device: str = "cpu", offload: bool = True
) -> list[float]:
    """Segment scores for ``samples`` ({"src", "mt"[, "ref"]} dicts), in input order.

    Same batches as ``comet_model.predict(samples, batch_size, gpus=0)`` (sorted by source length), same
    ``prepare_for_inference`` and ``predict_step``, without a Lightning Trainer. Leaves the model in eval mode;
    with offload and a GPU device the model goes back to CPU afterwards.
    """
    import numpy as np
    import torch

    if not samples:
        return []
    comet_model.eval()
    order = np.argsort([len(sample["src"]) for sample in samples])  # as predict(length_batching=True)
    scores: list[float] = [0.0] * len(samples)
    comet_model.to(device)
    try:
        # inference_mode (what Lightning's predict uses) rather than no_grad: a little faster, same numbers.
        with torch.inference_mode():
            for start in range(0, len(samples), batch_size):
                indices = [int(i) for i in order[start : start + batch_size]]
                inputs = comet_model.prepare_for_inference([samples[i] for i in indices])
                prediction = comet_model.predict_step(_to_device(inputs, device))
                for index, value in zip(indices, prediction["scores"].float().cpu().tolist()):
                    scores[index] = float(value)
    finally:
        if offload and str(device).startswith("cuda"):
            comet_model.to("cpu")
            torch.cuda.empty_cache()
    return scores


def _to_device(inputs, device: str):
    import torch

    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, Mapping):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs
