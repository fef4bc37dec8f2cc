"""Score a training run's saved checkpoints after the fact: the same JSONL the callback writes, one record per step.

Usage::

    from neuronxa_callback.offline.checkpoints import find_checkpoints, score_checkpoints

    find_checkpoints("out")            # [Checkpoint(step=50, path=out/checkpoint-50, kind="full"|"adapter", ...), ...]
    records = score_checkpoints("out", languages="isl_Latn", quality=True)   # -> out/neuronxa/metrics.jsonl

    neuronxa score out --languages isl_Latn --quality            # the same from the command line
    neuronxa score out --watch 300                               # keep scoring new checkpoints while training runs
    neuronxa score out --workers 2                               # side by side in 2 worker processes (fanout.py)
    neuronxa report out                                          # reads the result like a callback run's

Every ``checkpoint-N`` directory of the run is scored: full models (config.json + weights) directly, PEFT adapters
(adapter_config.json) applied to their base model — adapter_config's ``base_model_name_or_path`` or ``base_model=``
(the base is loaded once and the adapters are swapped in and out). The step is trainer_state.json's ``global_step``
(the number in the directory name when there is none); the epoch comes from trainer_state.json too. The model the run
started from is the step-0 baseline (``include_base``): an adapter run's base, or for full fine-tuning ``base_model=``
(config.json's ``_name_or_path`` where an older transformers saved it); unknown, there is no step 0.

Records follow the callback's schema (docs/DESIGN.md "JSONL record") with ``trigger = "checkpoint"`` and a
``"checkpoint"`` key holding the directory; the settings block holds the callback keyword arguments that would have
measured the same thing, so the callback's record helpers (_records, _quality_step) build them. Incremental: steps
already in the JSONL are skipped, so it can be re-run, or run with ``watch=`` while training goes on (on another
device). The running correlation of a record covers the records up to its step, as in the callback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

logger = logging.getLogger(__name__)

__all__ = ["Checkpoint", "CheckpointError", "find_checkpoints", "score_checkpoints"]

_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


class CheckpointError(ValueError):
    """A run directory or checkpoint that cannot be scored; the message names the path."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One saved checkpoint: step, epoch (None when unknown), directory, "full" or "adapter", and the adapter's base."""

    step: int
    epoch: float | None
    path: Path
    kind: str
    base_model: str | None = None
    complete: bool = True  # trainer_state.json written (the Trainer writes it after the weights)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None


def _checkpoint(path: Path, base_model: str | None) -> Checkpoint | None:
    match = _CHECKPOINT_NAME.match(path.name)
    if not match or not path.is_dir():
        return None
    step, epoch = int(match.group(1)), None
    state_file = path / "trainer_state.json"
    if state_file.is_file():
        state = _read_json(state_file)
        if isinstance(state.get("global_step"), int):
            if state["global_step"] != step:
                logger.warning("%s: trainer_state.json says global_step %d; using it", path, state["global_step"])
            step = state["global_step"]
        epoch = state.get("epoch")
    if (path / "adapter_config.json").is_file():
        config = _read_json(path / "adapter_config.json")
        base = base_model or config.get("base_model_name_or_path")
        if not base:
            raise CheckpointError(
                f"{path}/adapter_config.json names no base_model_name_or_path; pass base_model= (--base-model)"
            )
        return Checkpoint(step, epoch, path, "adapter", base, state_file.is_file())
    if (path / "config.json").is_file() and any((path / name).is_file() for name in _WEIGHT_FILES):
        base = base_model or _base_from_config(path)
        return Checkpoint(step, epoch, path, "full", base, state_file.is_file())
    logger.warning("%s: neither adapter_config.json nor config.json with weights; skipped", path)
    return None


def _base_from_config(path: Path) -> str | None:
    """The model a full fine-tuning checkpoint started from: config.json's _name_or_path, which transformers < 5
    saved (5 does not). A name inside the run itself (training resumed from its own checkpoint) is no base."""
    name = _read_json(path / "config.json").get("_name_or_path")
    if not isinstance(name, str) or not name.strip():
        return None
    candidate = Path(name).expanduser()
    if candidate.exists() and candidate.resolve().is_relative_to(path.parent.resolve()):
        return None
    return name


def find_checkpoints(run_dir: str | Path, *, base_model: str | None = None) -> list[Checkpoint]:
    """The run's checkpoint-N directories, sorted by step. CheckpointError when run_dir is not a directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a directory (expected a Trainer output_dir with checkpoint-N folders)")
    found = [c for c in (_checkpoint(p, base_model) for p in run_dir.iterdir()) if c is not None]
    steps = [c.step for c in found]
    duplicated = sorted({s for s in steps if steps.count(s) > 1})
    if duplicated:
        raise CheckpointError(f"{run_dir}: several checkpoints claim step(s) {duplicated}")
    return sorted(found, key=lambda c: c.step)


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in _TOKENIZER_FILES)


class _Loader:
    """Loads models for checkpoints; keeps one base model for adapters and swaps adapters in and out."""

    def __init__(
        self, run_dir: Path, *, dtype: Any = None, device: str | None = None, token: str | None = None
    ) -> None:
        self.run_dir = run_dir
        self.options = {"dtype": dtype, "device": device, "token": token}
        self._base: tuple[str, Any, Any] | None = None

    def _tokenizer(self, *candidates: Path | str | None):
        from transformers import AutoTokenizer

        for candidate in candidates:
            if candidate is not None and Path(candidate).is_dir() and _has_tokenizer(Path(candidate)):
                tokenizer = AutoTokenizer.from_pretrained(str(candidate))
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                return tokenizer
        return None

    def base(self, name: str):
        from neuronxa_callback.instrument.models import load_model_and_tokenizer

        if self._base is None or self._base[0] != name:
            model, tokenizer = load_model_and_tokenizer(name, **self.options)
            self._base = (name, model, tokenizer)
        return self._base[1], self._base[2]

    def load(self, checkpoint: Checkpoint) -> tuple[Any, Any, Callable[[], None]]:
        """(model, tokenizer, release): release() takes an adapter off the shared base model again."""
        from neuronxa_callback.instrument.models import load_model_and_tokenizer

        if checkpoint.kind == "full":
            tokenizer = self._tokenizer(checkpoint.path, self.run_dir)
            if tokenizer is None:
                raise CheckpointError(
                    f"{checkpoint.path}: no tokenizer files there or in {self.run_dir} (save the "
                    "tokenizer with the run, e.g. Trainer(processing_class=tokenizer))"
                )
            if _has_tokenizer(checkpoint.path):
                model, _ = load_model_and_tokenizer(str(checkpoint.path), **self.options)
            else:
                model = self._model_only(checkpoint.path)
            return model, tokenizer, lambda: None
        from peft import PeftModel

        # An adapter always names its base (_checkpoint raises otherwise).
        base, base_tokenizer = self.base(cast(str, checkpoint.base_model))
        tokenizer = self._tokenizer(checkpoint.path) or base_tokenizer
        model = PeftModel.from_pretrained(base, str(checkpoint.path))
        model.eval()

        def release() -> None:
            # unload() removes the LoRA layers without merging: the base is as loaded for the next adapter.
            model.unload()

        return model, tokenizer, release

    def _model_only(self, path: Path):
        from transformers import AutoModelForCausalLM

        kwargs = {key: value for key, value in self.options.items() if value is not None and key != "device"}
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        if self.options["device"]:
            model.to(self.options["device"])
        return model.eval()


def _with_base(run_dir: Path, checkpoints: list[Checkpoint], include_base: bool | None) -> list[Checkpoint]:
    """The checkpoints with the model they started from in front as step 0 (the baseline before fine-tuning).

    include_base: True (CheckpointError when the base is unknown), None (when known), False (never). Adapters name
    their base; full checkpoints only through base_model= or an old config.json's _name_or_path.
    """
    if include_base is False or not checkpoints or any(c.step == 0 for c in checkpoints):
        return checkpoints
    bases = {c.base_model for c in checkpoints if c.base_model}
    if len(bases) > 1:
        raise CheckpointError(f"{run_dir}: checkpoints started from different base models {sorted(bases)}")
    if not bases or any(c.base_model is None for c in checkpoints):
        if include_base:
            raise CheckpointError(
                f"{run_dir}: the model its full fine-tuning checkpoints started from is unknown "
                "(config.json names none); pass base_model= (--base-model) to score it as step 0"
            )
        return checkpoints
    base = next(iter(bases))
    return [Checkpoint(0, 0.0, Path(base), "base", base), *checkpoints]


def _nothing_to_score(run_dir: Path, checkpoints: list[Checkpoint], done: set, output: Path) -> str:
    """Why a pass found nothing to score, for the user who expected something."""
    if not checkpoints:
        return (
            f"no checkpoint-N directories in {run_dir}: nothing to score (the Trainer saves them with "
            "save_strategy='steps' or 'epoch')"
        )
    unscored = [c for c in checkpoints if c.step not in done]
    if unscored:
        return f"{len(unscored)} checkpoint(s) of {run_dir} not complete yet (no trainer_state.json)"
    return (
        f"all {len(checkpoints)} checkpoint(s) of {run_dir} are already scored in {output} (rescore=True, "
        "--rescore on the command line, scores them again)"
    )


def _settings(kwargs: dict[str, Any]):
    from neuronxa_callback.settings import CallbackSettings

    return CallbackSettings.from_kwargs(**kwargs)


def checkpoint_pieces(
    model,
    tokenizer,
    data,
    settings,
    scorers,
    *,
    model_name: str,
    similarity: Sequence[str],
    svcca_directions: int,
    quality: bool,
) -> dict:
    """One checkpoint's measurement: {"report_dict", "quality", "likelihood", "timing"}, the arguments
    measurement_record takes besides the history. The same function runs here and in a fan-out worker (fanout.py)."""
    from neuronxa_callback.alignment.report import AlignmentReport, measure_alignment
    from neuronxa_callback.measure import quality_step

    started = time.perf_counter()
    # Unsharded (no shard=): measure_alignment returns the report, None is only for ranks > 0 of a sharded call.
    report = cast(
        AlignmentReport,
        measure_alignment(
            model,
            tokenizer,
            data,
            model_name=model_name,
            similarity=similarity,
            svcca_directions=svcca_directions,
            **settings.encode_options(),
        ),
    )
    alignment_seconds = time.perf_counter() - started
    report_dict = report.to_dict()
    quality_block, likelihood, generation_seconds, quality_seconds = None, None, 0.0, 0.0
    timing: dict[str, float] = {}
    if quality:
        from neuronxa_callback.parallel.sharding import ReplicatedEngine

        examples = quality_step.fewshot_examples(data, settings)
        started = time.perf_counter()
        # The same reference likelihood as during training: one process holds the whole model.
        mine = quality_step.likelihood_share(tokenizer, data, settings, examples, engine=ReplicatedEngine(model, 0, 1))
        likelihood = quality_step.score_likelihood([mine], data)
        timing["likelihood_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        mine = quality_step.translate_share(model, tokenizer, data, settings, examples)
        translations = quality_step.merge_translations([mine])
        generation_seconds = time.perf_counter() - started
        started = time.perf_counter()
        quality_block = quality_step.score_quality(translations, data, scorers, settings, examples)
        quality_seconds = time.perf_counter() - started
    timing = {
        "alignment_seconds": alignment_seconds,
        "generation_seconds": generation_seconds,
        "quality_seconds": quality_seconds,
        **timing,
    }
    return {"report_dict": report_dict, "quality": quality_block, "likelihood": likelihood, "timing": timing}


def _checkpoint_record(checkpoint: Checkpoint, pieces: dict, index: int, history_records, settings, data) -> dict:
    """The JSONL record of a checkpoint from its pieces; the running correlation covers `history_records`."""
    from neuronxa_callback.measure import record as records

    history, _ = records.rebuild_from_records(list(history_records), settings)
    record, _ = records.measurement_record(
        "checkpoint",
        checkpoint.step,
        checkpoint.epoch,
        index=index,
        report_dict=pieces["report_dict"],
        quality=pieces["quality"],
        likelihood=pieces["likelihood"],
        timing=pieces["timing"],
        settings=settings,
        data=data,
        history=history,
    )
    record["checkpoint"] = str(checkpoint.path)
    return record


def load_checkpoint(loader: _Loader, checkpoint: Checkpoint, include_base: bool | None):
    """(model, tokenizer, release) of a checkpoint, or None when it is skipped (logged): a guessed base
    (include_base=None) that cannot be loaded, or a checkpoint deleted since it was listed."""
    from neuronxa_callback.instrument.models import ModelLoadError

    if checkpoint.kind == "base":
        try:
            # The step-0 checkpoint is built from its base's name (_with_base).
            model, tokenizer = loader.base(cast(str, checkpoint.base_model))
        except ModelLoadError as error:
            if include_base:
                raise
            logger.warning("no step-0 baseline: %s", error)
            return None
        return model, tokenizer, lambda: None
    try:
        return loader.load(checkpoint)
    except (OSError, ValueError):
        # save_total_limit rotation can delete a checkpoint between listing and loading: skip it then.
        if checkpoint.path.exists():
            raise
        logger.warning("%s was deleted before it could be scored; skipped", checkpoint.path)
        return None


def score_one_checkpoint(
    loader: _Loader, checkpoint: Checkpoint, data, settings, scorers, options: dict
) -> dict | None:
    """Load, measure and release one checkpoint: its pieces (checkpoint_pieces), or None when it was skipped.
    options: include_base, similarity, svcca_directions, quality."""
    loaded = load_checkpoint(loader, checkpoint, options["include_base"])
    if loaded is None:
        return None
    model, tokenizer, release = loaded
    try:
        return checkpoint_pieces(
            model,
            tokenizer,
            data,
            settings,
            scorers,
            model_name=str(checkpoint.path),
            similarity=options["similarity"],
            svcca_directions=options["svcca_directions"],
            quality=options["quality"],
        )
    finally:
        release()


def scored_data(settings, token: str | None):
    """The pairs every checkpoint is measured on (the callback's data settings)."""
    from neuronxa_callback.measure.measurement import load_scored_pairs

    return load_scored_pairs(settings, token)


def score_checkpoints(
    run_dir: str | Path,
    *,
    output: str | Path | None = None,
    base_model: str | None = None,
    quality: bool = False,
    similarity: Sequence[str] = (),
    svcca_directions: int = 10,
    include_base: bool | None = False,
    rescore: bool = False,
    watch: float | None = None,
    max_polls: int | None = None,
    dtype: Any = None,
    device: str | None = None,
    token: str | None = None,
    on_record: Callable[[dict], None] | None = None,
    workers: int | None = None,
    ray: bool | str = False,
    worker_threads: int | None = None,
    worker_timeout: float = 600.0,
    **callback_kwargs: Any,
) -> list[dict]:
    """Score every unscored checkpoint of `run_dir` into the JSONL; returns the records written by this call.

    output: the JSONL (default <run_dir>/neuronxa/metrics.jsonl, where the callback writes). callback_kwargs: the
    NeuronXACallback arguments that choose what is measured (data, languages, num_pairs, representations,
    quality_num_pairs, direction, quality_metrics, comet_model, num_fewshot, max_new_tokens, prompt, ...).
    quality=True translates and scores at every checkpoint. include_base=True also scores the run's base model as
    step 0 (the model before fine-tuning): an adapter run's base, or a full run's from base_model= (or an old
    config.json's _name_or_path); CheckpointError when it is unknown. include_base=None scores it when it is known.
    rescore=True scores checkpoints already in the JSONL again (their records are replaced). watch=SECONDS polls for
    new checkpoints until interrupted (or max_polls polls); while watching, a checkpoint is scored only once its
    trainer_state.json exists (written last).
    workers=N: N local worker processes score the checkpoints side by side, each holding the base model once
    (fanout.py); ray=True (a local Ray instance unless one is initialised) or ray="ADDRESS": Ray actors (workers
    of them, default 2). The records are the sequential path's, written in step order. worker_threads: torch
    threads per worker; worker_timeout: seconds a worker may take to start or to score one checkpoint.
    """
    from neuronxa_callback.sinks.jsonl import JsonlLogger

    run_dir = Path(run_dir)
    # A missing run directory or an unknown base fails before anything is loaded or written.
    found = find_checkpoints(run_dir, base_model=base_model)
    planned = _with_base(run_dir, found, include_base)
    if include_base is None and found and not any(c.step == 0 for c in planned):
        logger.info(
            "%s: no step-0 baseline (the model the checkpoints started from is unknown); pass base_model= "
            "(--base-model) to score it as step 0",
            run_dir,
        )
    if quality:
        callback_kwargs.setdefault("quality_every", 1)
    settings = _settings(callback_kwargs)
    data = scored_data(settings, token)
    output = Path(output) if output is not None else run_dir / settings.output_subdir / "metrics.jsonl"
    jsonl = JsonlLogger(output)
    loader = _Loader(run_dir, dtype=dtype, device=device, token=token)
    options = {
        "include_base": include_base,
        "similarity": tuple(similarity),
        "svcca_directions": svcca_directions,
        "quality": quality,
    }
    scorers = None
    pool = None  # fanout.WorkerPool, started at the first checkpoint to score when workers / ray ask for one

    def score_here(todo: list[Checkpoint]):
        nonlocal scorers
        for checkpoint in todo:
            if quality and scorers is None:
                from neuronxa_callback.measure import quality_step

                scorers = quality_step.load_scorers(settings)
            logger.info("scoring %s (step %d)", checkpoint.path, checkpoint.step)
            yield checkpoint, score_one_checkpoint(loader, checkpoint, data, settings, scorers, options)

    def score_in_workers(todo: list[Checkpoint]):
        nonlocal pool
        if pool is None:
            from neuronxa_callback.offline.fanout import WorkerPool

            bases = {c.base_model for c in planned if c.kind == "adapter" and c.base_model}
            base = {
                "run_dir": str(run_dir),
                "base_model": next(iter(bases)) if len(bases) == 1 else None,
                "dtype": dtype,
                "device": device,
                "token": token,
                "options": options,
            }
            pool = WorkerPool(
                callback_kwargs,
                base,
                workers=workers or 2,
                ray=ray,
                device=device,
                threads=worker_threads,
                timeout=worker_timeout,
                spool_dir=output.parent / "workers",
            )
        yield from pool.score_in_order(todo)

    written: list[dict] = []
    polls = 0
    scored_now: set[int] = set()
    unavailable: set[int] = set()  # a guessed base (include_base=None) that could not be loaded: not tried again
    try:
        while True:
            found = find_checkpoints(run_dir, base_model=base_model)
            checkpoints = _with_base(run_dir, found, include_base)
            done = (scored_now if rescore else {r.get("step") for r in jsonl.records}) | unavailable
            todo = [c for c in checkpoints if c.step not in done and (watch is None or c.complete)]
            if not todo and polls == 0:
                reason = _nothing_to_score(run_dir, found, done, output)
                logger.log(
                    logging.WARNING if not found and watch is None else logging.INFO,
                    "%s%s",
                    reason,
                    f"; polling every {watch:g} s" if watch is not None else "",
                )
            scored = score_in_workers(todo) if todo and (workers or ray) else score_here(todo)
            for checkpoint, pieces in scored:
                if pieces is None:  # skipped (logged where it was loaded)
                    if checkpoint.kind == "base":
                        unavailable.add(checkpoint.step)
                    continue
                earlier = sorted(
                    (r for r in jsonl.records if isinstance(r.get("step"), int) and r["step"] < checkpoint.step),
                    key=lambda r: r["step"],
                )
                record = _checkpoint_record(checkpoint, pieces, len(jsonl.records), earlier, settings, data)
                jsonl.log_measurement(record)
                scored_now.add(checkpoint.step)
                written.append(record)
                if on_record is not None:
                    on_record(record)
            polls += 1
            if watch is None or (max_polls is not None and polls >= max_polls):
                return written
            time.sleep(watch)
    finally:
        if pool is not None:
            pool.close()
