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

__version__ = "0.1.0"

# public name -> defining module
_EXPORTS: dict[str, str] = {
    "NeuronXACallback": "callback",
    "AlignmentMonitor": "monitor",
    "Schedule": "monitor",
    "MeasurementError": "callback",
    "CallbackSettings": "settings",
    "SettingsError": "settings",
    "ShardedMeasurementError": "sharding",
    "sharding_engine": "sharding",
    "encode_sharded": "sharding",
    "translate_sharded": "sharding",
    "PeakMemory": "memory",
    "Translation": "generation",
    "make_translations": "generation",
    "load_fewshot_examples": "fewshot",
    "select_fewshot_examples": "fewshot",
    "FewShotExamples": "fewshot",
    "FewShotError": "fewshot",
    "find_copies": "copies",
    "mask_copies": "copies",
    "CopyReport": "copies",
    "measure_alignment": "alignment",
    "score_encoded": "alignment",
    "AlignmentReport": "alignment",
    "encode": "activations",
    "Encoded": "activations",
    "ActivationCapture": "activations",
    "register_architecture": "architectures",
    "activation_modules": "architectures",
    "UnsupportedArchitectureError": "architectures",
    "weak_alignment": "scoring",
    "retrieval_accuracy": "scoring",
    "chance_probability": "scoring",
    "cosine_matrices": "scoring",
    "PairScore": "scoring",
    "ParallelSet": "data",
    "ParallelDataError": "data",
    "load_parallel": "data",
    "load_file_pair": "data",
    "load_training_pairs": "data",
    "normalize_language": "data",
    "load_model_and_tokenizer": "models",
    "prepare_for_training": "models",
    "translate": "generation",
    "QualityScore": "quality",
    "ChrFScorer": "quality",
    "BLEUScorer": "quality",
    "CometScorer": "quality",
    "CometKiwiScorer": "quality",
    "make_scorers": "quality",
    "MeasurementHistory": "tracking",
    "PlateauDetector": "tracking",
    "JsonlLogger": "jsonl",
    "WandbLogger": "trackers",
    "write_report": "report",
    "summary_lines": "run_summary",
    "alignment_change": "run_summary",
    "training_example": "prompts",
    # similarity baselines, checkpoint scoring, correlation with benchmarks
    "cka": "similarity",
    "svcca": "similarity",
    "anc": "similarity",
    "similarity_per_layer": "similarity",
    "SimilarityError": "similarity",
    "score_checkpoints": "checkpoints",
    "find_checkpoints": "checkpoints",
    "CheckpointError": "checkpoints",
    "correlate_benchmarks": "correlation",
    "load_benchmarks": "correlation",
    "load_alignment_scores": "correlation",
    "CorrelationInputError": "correlation",
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
    from .activations import ActivationCapture, Encoded, encode
    from .alignment import AlignmentReport, measure_alignment, score_encoded
    from .architectures import UnsupportedArchitectureError, activation_modules, register_architecture
    from .callback import MeasurementError, NeuronXACallback
    from .monitor import AlignmentMonitor, Schedule
    from .memory import PeakMemory
    from .sharding import ShardedMeasurementError, encode_sharded, sharding_engine, translate_sharded
    from .copies import CopyReport, find_copies, mask_copies
    from .fewshot import FewShotError, FewShotExamples, load_fewshot_examples, select_fewshot_examples
    from .settings import CallbackSettings, SettingsError
    from .data import ParallelDataError, ParallelSet, load_file_pair, load_parallel, load_training_pairs, normalize_language
    from .generation import Translation, make_translations, translate
    from .jsonl import JsonlLogger
    from .trackers import WandbLogger
    from .models import load_model_and_tokenizer, prepare_for_training
    from .quality import BLEUScorer, ChrFScorer, CometKiwiScorer, CometScorer, QualityScore, make_scorers
    from .prompts import training_example
    from .report import write_report
    from .run_summary import alignment_change, summary_lines
    from .scoring import PairScore, chance_probability, cosine_matrices, retrieval_accuracy, weak_alignment
    from .tracking import MeasurementHistory, PlateauDetector
    from .similarity import SimilarityError, anc, cka, similarity_per_layer, svcca
    from .checkpoints import CheckpointError, find_checkpoints, score_checkpoints
    from .correlation import CorrelationInputError, correlate_benchmarks, load_alignment_scores, load_benchmarks
