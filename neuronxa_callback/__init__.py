"""neuronxa_callback: watch a language model's cross-lingual alignment (NeuronXA) while it is fine-tuned.

    from neuronxa_callback import NeuronXACallback
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[NeuronXACallback(data="bundled", languages=["isl_Latn"], eval_steps=50)])

NeuronXA (Huang et al., 2025, arXiv 2507.14900) represents a sentence by the pooled activation state (NAS) or
magnitude (NAV) of every FFN neuron in a layer and scores, per layer, the fraction of parallel sentence pairs that
are each other's nearest neighbours (NASCA / NAVCA).

Public names are imported lazily so that `import neuronxa_callback` stays cheap (no torch / transformers at import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


def _installed_version() -> str:
    """The version pyproject.toml gave the installed distribution (its one source of truth)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neuronxa_callback")
    except PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


__version__ = _installed_version()

# public name -> defining module
_EXPORTS: dict[str, str] = {
    "NeuronXACallback": "hosts.trainer",
    "AlignmentMonitor": "monitor",
    "Schedule": "monitor",
    "MeasurementError": "hosts.trainer",
    "CallbackSettings": "settings",
    "SettingsError": "settings",
    "ShardedMeasurementError": "parallel.sharding",
    "sharding_engine": "parallel.sharding",
    "encode_sharded": "parallel.sharding",
    "translate_sharded": "parallel.sharding",
    "PeakMemory": "instrument.memory",
    "Translation": "quality.generation",
    "make_translations": "quality.generation",
    "load_fewshot_examples": "quality.fewshot",
    "select_fewshot_examples": "quality.fewshot",
    "FewShotExamples": "quality.fewshot",
    "FewShotError": "quality.fewshot",
    "find_copies": "quality.copies",
    "mask_copies": "quality.copies",
    "CopyReport": "quality.copies",
    "identify_languages": "quality.language_id",
    "LanguageReport": "quality.language_id",
    "measure_alignment": "alignment.report",
    "score_encoded": "alignment.report",
    "AlignmentReport": "alignment.report",
    "encode": "instrument.activations",
    "Encoded": "instrument.activations",
    "ActivationCapture": "instrument.activations",
    "register_architecture": "instrument.architectures",
    "activation_modules": "instrument.architectures",
    "UnsupportedArchitectureError": "instrument.architectures",
    "weak_alignment": "alignment.scoring",
    "retrieval_accuracy": "alignment.scoring",
    "chance_probability": "alignment.scoring",
    "cosine_matrices": "alignment.scoring",
    "PairScore": "alignment.scoring",
    "ParallelSet": "data.loaders",
    "ParallelDataError": "data.loaders",
    "load_parallel": "data.loaders",
    "load_file_pair": "data.loaders",
    "load_training_pairs": "data.loaders",
    "normalize_language": "data.loaders",
    "load_model_and_tokenizer": "instrument.models",
    "prepare_for_training": "instrument.models",
    "translate": "quality.generation",
    "reference_likelihood": "quality.likelihood",
    "summarize_likelihood": "quality.likelihood",
    "ReferenceLikelihood": "quality.likelihood",
    "QualityScore": "quality.metrics",
    "ChrFScorer": "quality.metrics",
    "BLEUScorer": "quality.metrics",
    "CometScorer": "quality.metrics",
    "CometKiwiScorer": "quality.metrics",
    "make_scorers": "quality.metrics",
    "MeasurementHistory": "measure.history",
    "PlateauDetector": "measure.history",
    "JsonlLogger": "sinks.jsonl",
    "WandbLogger": "sinks.trackers",
    "write_report": "offline.report",
    "summary_lines": "offline.run_summary",
    "alignment_change": "offline.run_summary",
    "training_example": "quality.prompts",
    # similarity baselines, checkpoint scoring, correlation with benchmarks
    "cka": "alignment.similarity",
    "svcca": "alignment.similarity",
    "anc": "alignment.similarity",
    "similarity_per_layer": "alignment.similarity",
    "SimilarityError": "alignment.similarity",
    # paired statistics with sentences as the unit
    "paired_change": "alignment.statistics",
    "describe_change": "alignment.statistics",
    "sentence_scores": "alignment.statistics",
    "score_intervals": "alignment.statistics",
    "StatisticsError": "alignment.statistics",
    "score_checkpoints": "offline.checkpoints",
    "find_checkpoints": "offline.checkpoints",
    "CheckpointError": "offline.checkpoints",
    "correlate_benchmarks": "offline.correlation",
    "load_benchmarks": "offline.correlation",
    "load_alignment_scores": "offline.correlation",
    "CorrelationInputError": "offline.correlation",
    # alignment vs quality over a set of runs (seeds): the study's analysis and results page
    "analyze_study": "offline.study",
    "load_study_runs": "offline.study",
    "write_study_page": "offline.study",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neuronxa_callback' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from neuronxa_callback.alignment.report import AlignmentReport, measure_alignment, score_encoded
    from neuronxa_callback.alignment.scoring import (
        PairScore,
        chance_probability,
        cosine_matrices,
        retrieval_accuracy,
        weak_alignment,
    )
    from neuronxa_callback.alignment.similarity import SimilarityError, anc, cka, similarity_per_layer, svcca
    from neuronxa_callback.alignment.statistics import (
        StatisticsError,
        describe_change,
        paired_change,
        score_intervals,
        sentence_scores,
    )
    from neuronxa_callback.data.loaders import (
        ParallelDataError,
        ParallelSet,
        load_file_pair,
        load_parallel,
        load_training_pairs,
        normalize_language,
    )
    from neuronxa_callback.hosts.trainer import MeasurementError, NeuronXACallback
    from neuronxa_callback.instrument.activations import ActivationCapture, Encoded, encode
    from neuronxa_callback.instrument.architectures import (
        UnsupportedArchitectureError,
        activation_modules,
        register_architecture,
    )
    from neuronxa_callback.instrument.memory import PeakMemory
    from neuronxa_callback.instrument.models import load_model_and_tokenizer, prepare_for_training
    from neuronxa_callback.measure.history import MeasurementHistory, PlateauDetector
    from neuronxa_callback.monitor import AlignmentMonitor, Schedule
    from neuronxa_callback.offline.checkpoints import CheckpointError, find_checkpoints, score_checkpoints
    from neuronxa_callback.offline.correlation import (
        CorrelationInputError,
        correlate_benchmarks,
        load_alignment_scores,
        load_benchmarks,
    )
    from neuronxa_callback.offline.report import write_report
    from neuronxa_callback.offline.run_summary import alignment_change, summary_lines
    from neuronxa_callback.offline.study import analyze_study, load_study_runs, write_study_page
    from neuronxa_callback.parallel.sharding import (
        ShardedMeasurementError,
        encode_sharded,
        sharding_engine,
        translate_sharded,
    )
    from neuronxa_callback.quality.copies import CopyReport, find_copies, mask_copies
    from neuronxa_callback.quality.fewshot import (
        FewShotError,
        FewShotExamples,
        load_fewshot_examples,
        select_fewshot_examples,
    )
    from neuronxa_callback.quality.generation import Translation, make_translations, translate
    from neuronxa_callback.quality.language_id import LanguageReport, identify_languages
    from neuronxa_callback.quality.likelihood import ReferenceLikelihood, reference_likelihood, summarize_likelihood
    from neuronxa_callback.quality.metrics import (
        BLEUScorer,
        ChrFScorer,
        CometKiwiScorer,
        CometScorer,
        QualityScore,
        make_scorers,
    )
    from neuronxa_callback.quality.prompts import training_example
    from neuronxa_callback.settings import CallbackSettings, SettingsError
    from neuronxa_callback.sinks.jsonl import JsonlLogger
    from neuronxa_callback.sinks.trackers import WandbLogger
