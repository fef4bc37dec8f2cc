"""The worker's side of an out-of-band measurement: the model built once, then one snapshot after another scored
with the same measurement code as in the training process (world size 1).

Usage (what local.py's process and ray_actor.py's actor run)::

    scorer = SnapshotScorer(settings.to_json(), base, device="cpu", threads=4)   # base: base_copy() or its file
    result = scorer.score({"kind": "measure", "with_quality": True}, snapshot)    # snapshot: dict or its file
    # {"error": None, "pieces": {"report_dict", "quality", "timing"}}   (measurement.record_pieces)
    result = scorer.score({"kind": "quality"}, snapshot)
    # {"error": None, "quality": {...}, "generation_seconds": s, "quality_seconds": s}

A failure inside a measurement is a result with "error" set (never an exception): the training process logs it
like an in-process failure. A scorer that cannot be built raises (the worker reports it, begin() fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuronxa_callback.parallel.agreement import attempt


class SnapshotScorer:
    """Scores snapshots of one training run; see the module docstring."""

    def __init__(self, settings_json: dict, base: dict | str | Path, device: str = "cpu", threads: int | None = None):
        import torch

        from neuronxa_callback.measure.measurement import check_without_model, prepare_inputs
        from neuronxa_callback.settings import CallbackSettings
        from neuronxa_callback.worker.snapshot import build_model, read_snapshot

        if threads is not None:
            torch.set_num_threads(threads)
        if isinstance(base, (str, Path)):
            base = read_snapshot(Path(base))
        self.settings = CallbackSettings.from_kwargs(**settings_json)
        self.device = device
        self.model = build_model(base, device)
        self.tokenizer = base["tokenizer"]
        self.inputs = prepare_inputs(
            self.settings, self.model, self.tokenizer, 0, data=check_without_model(self.settings)
        )

    def ready(self) -> str:
        """Where the scorer runs (a Ray actor's first call waits for its constructor with this)."""
        return f"{type(self.model).__name__} on {self.device}"

    def score(self, job: dict, snapshot: dict | str | Path) -> dict:
        """Score `snapshot` (a dict from take_snapshot, or its file) as `job` asks; never raises."""
        from neuronxa_callback.instrument.isolation import left_as_found
        from neuronxa_callback.worker.snapshot import apply_snapshot, read_snapshot

        if isinstance(snapshot, (str, Path)):
            snapshot, error = attempt(lambda: read_snapshot(Path(snapshot)))
            if error is not None:
                return {"error": error}
        _, error = attempt(lambda: apply_snapshot(self.model, snapshot))
        if error is not None:
            return {"error": error}
        # The same conditions as a measurement inside training: eval mode, no grad, the tokenizer as found.
        with left_as_found(self.model, self.tokenizer, rng=True):
            if job["kind"] == "quality":
                return self._quality()
            return self._measure(bool(job["with_quality"]))

    def _measure(self, with_quality: bool) -> dict:
        from neuronxa_callback.measure.measurement import record_pieces, run_measurement

        outcome = run_measurement(
            self.inputs,
            self.model,
            self.tokenizer,
            with_quality=with_quality,
            record=lambda *measured: {"error": None, "pieces": record_pieces(self.inputs, *measured)},
        )
        return {"error": outcome["error"], "pieces": outcome.get("pieces")}

    def _quality(self) -> dict[str, Any]:
        from neuronxa_callback.measure.measurement import score_translations, translate_all

        translations, error, generation_seconds = translate_all(self.inputs, self.model, self.tokenizer)
        if error is not None:
            return {"error": error}
        scored, error = attempt(lambda: score_translations(self.inputs, translations))
        if error is not None:
            return {"error": error}
        quality, quality_seconds = scored
        return {
            "error": None,
            "quality": quality,
            "generation_seconds": generation_seconds,
            "quality_seconds": quality_seconds,
        }
