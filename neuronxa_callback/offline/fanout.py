"""Scoring a run's checkpoints fanned out over workers: local worker processes (worker/local.py, the process that
out-of-band measurement uses) or Ray actors, each holding the base model once and scoring one checkpoint after
another with the same function as the sequential path (checkpoints.score_one_checkpoint). The pieces come back and
the caller writes the records in step order with the same record function, so the JSONL is the sequential one.

Usage (score_checkpoints(workers=N) and `neuronxa score RUN_DIR --workers N` / `--ray [ADDRESS]` drive it)::

    pool = WorkerPool(callback_kwargs, scorer_base, workers=2, spool_dir=run_dir / "neuronxa" / "workers")
    for checkpoint, pieces in pool.score_in_order(checkpoints):   # step order, as soon as the prefix is in
        ...                                                        # pieces: checkpoint_pieces() or None (skipped)
    pool.close()

A checkpoint crosses to a worker as its directory (a PEFT adapter or a full checkpoint), not as tensors: the worker
reads it from disk, so with Ray on a cluster the run directory must be on storage every node sees. A worker that
dies is started again and its checkpoint handed over once more; a second death, or a result later than `timeout`,
fails the call with CheckpointError naming the checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from neuronxa_callback.offline.checkpoints import Checkpoint, CheckpointError

logger = logging.getLogger(__name__)

_CHECKPOINT_SCORER = "neuronxa_callback.offline.fanout:CheckpointScorer"
_MODEL_SCORER = "neuronxa_callback.offline.fanout:ModelScorer"
_MAX_TRIES = 2  # a checkpoint that kills its worker twice is an error, not retried for ever


class CheckpointScorer:
    """The worker's side: the scored pairs, the quality scorers and the base model loaded once, then one checkpoint
    after another scored. Built by worker/local.py's process as CheckpointScorer(settings_json, base, device=,
    threads=), or as a Ray actor; `base` (or its file): run_dir, base_model, dtype, token and the scoring options."""

    def __init__(self, settings_json: dict, base: dict | str | Path, device: str = "cpu", threads: int | None = None):
        import torch

        from neuronxa_callback.offline.checkpoints import _Loader, _settings, scored_data

        if threads is not None:
            torch.set_num_threads(threads)
        if isinstance(base, (str, Path)):
            from neuronxa_callback.worker.snapshot import read_snapshot

            base = read_snapshot(Path(base))
        self.options = base["options"]
        self.settings = _settings(settings_json)
        self.data = scored_data(self.settings, base["token"])
        self.device = device
        # A device asked for is the worker's (a Ray actor sees its one GPU as "cuda"); none: load_model's default.
        loader_device = device if base["device"] is not None else None
        self.loader = _Loader(Path(base["run_dir"]), dtype=base["dtype"], device=loader_device, token=base["token"])
        self.scorers = None
        if self.options["quality"]:
            from neuronxa_callback.measure import quality_step

            self.scorers = quality_step.load_scorers(self.settings)
        if base.get("base_model"):  # adapters share it: load it now, so a bad base fails at start
            self.loader.base(base["base_model"])

    def ready(self) -> str:
        """Where this scorer runs (the worker's first answer)."""
        return f"checkpoint scorer on {self.device}"

    def score(self, job: dict, snapshot: dict | str | Path) -> dict:
        """Score the checkpoint of `snapshot` ({"checkpoint": Checkpoint}, or its file); never raises:
        {"error": None, "pieces": checkpoint_pieces() or None when skipped} or {"error": "..."}."""
        from neuronxa_callback.offline.checkpoints import score_one_checkpoint

        try:
            if isinstance(snapshot, (str, Path)):
                from neuronxa_callback.worker.snapshot import read_snapshot

                snapshot = read_snapshot(Path(snapshot))
            pieces = score_one_checkpoint(
                self.loader, snapshot["checkpoint"], self.data, self.settings, self.scorers, self.options
            )
        except Exception as error:  # noqa: BLE001 - travels back as data; the caller raises it naming the checkpoint
            return {"error": f"{type(error).__name__}: {error}"}
        return {"error": None, "pieces": pieces}


def _pieces(checkpoint: Checkpoint, result: dict) -> dict | None:
    if result.get("error"):
        raise CheckpointError(
            f"{checkpoint.path} (step {checkpoint.step}): scoring in a worker failed: {result['error']}"
        )
    return result["pieces"]


class WorkerPool:
    """Jobs (checkpoints, models) scored by `workers` local processes (worker/local.py LocalWorker), or with
    `ray=True` (a local instance unless Ray is initialised already) or `ray="ADDRESS"` by as many Ray actors
    (worker/ray_actor.py RayWorker); see the module docstring."""

    def __init__(
        self,
        callback_kwargs: dict,
        base: dict,
        *,
        workers: int = 2,
        ray: bool | str = False,
        device: str | None = None,
        threads: int | None = None,
        timeout: float = 600.0,
        spool_dir: Path | None = None,
        scorer: str = _CHECKPOINT_SCORER,
    ) -> None:
        from neuronxa_callback.settings import CallbackSettings

        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers={workers!r}: expected a positive number of worker processes or actors")
        self.timeout = timeout
        self.settings = CallbackSettings.from_kwargs(
            **callback_kwargs,
            measure_in="ray" if ray else "worker",
            ray_address=ray if isinstance(ray, str) and ray else None,
            worker_device=device or "cpu",
            worker_threads=threads,
            worker_timeout=timeout,
        )
        self._spool_dir = None if ray else Path(spool_dir or "neuronxa-workers")
        self._workers: list[Any] = []  # LocalWorker or RayWorker: the same calls
        if ray:
            from neuronxa_callback.worker.ray_actor import RayWorker

            # The first actor's RayWorker starts Ray when it is not running (and shuts it down at close).
            self._workers = [RayWorker(self.settings, base, scorer=scorer) for _ in range(workers)]
        else:
            from neuronxa_callback.worker.local import LocalWorker

            spool = Path(spool_dir or "neuronxa-workers")
            self._workers = [
                LocalWorker(self.settings, spool / f"worker-{i}", base, scorer=scorer) for i in range(workers)
            ]
        # Each worker loads the base model: start them side by side, not one after another.
        with ThreadPoolExecutor(max_workers=workers) as starting:
            errors = [f.exception() for f in [starting.submit(w.start, timeout) for w in self._workers]]
        if any(errors):
            self.close()
            raise next(e for e in errors if e is not None)

    def close(self) -> None:
        """Stop the workers and delete their spool (a Ray instance a worker started is shut down, the last)."""
        for worker in reversed(self._workers):
            worker.close()
            spool = getattr(worker, "spool_dir", None)  # a Ray actor has none
            try:
                if spool is not None:
                    spool.rmdir()
            except OSError:  # not empty: not ours alone
                pass
        self._workers = []
        if self._spool_dir is not None:
            try:
                self._spool_dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def score_in_order(self, checkpoints: list[Checkpoint]) -> Iterator[tuple[Checkpoint, dict | None]]:
        """(checkpoint, pieces or None when skipped) in the order given, each as soon as it and all before it are in;
        CheckpointError for a checkpoint whose scoring failed."""
        jobs = [(f"{c.path} (step {c.step})", {"checkpoint": c}) for c in checkpoints]
        for checkpoint, result in zip(checkpoints, self.in_order(jobs)):
            yield checkpoint, _pieces(checkpoint, result)

    def in_order(self, jobs: list[tuple[str, dict]]) -> Iterator[dict]:
        """The scorer's result for each (label, snapshot) in the order given, each as soon as it and all before it
        are in (a failure is a result with "error"). One job per worker at a time."""
        from neuronxa_callback.worker.local import WorkerDied

        waiting = list(range(len(jobs)))
        busy: dict[int, tuple[int, float]] = {}  # worker -> (job, when handed over)
        tries: dict[int, int] = {}
        results: dict[int, dict] = {}
        following = 0
        while following < len(jobs):
            for number, worker in enumerate(self._workers):
                if number not in busy and waiting:
                    job = waiting.pop(0)
                    self._hand_over(worker, job, jobs[job])
                    busy[number] = (job, time.monotonic())
            for number, (job, since) in list(busy.items()):
                worker = self._workers[number]
                try:
                    arrived = worker.poll(0.05)
                except WorkerDied as died:
                    tries[job] = tries.get(job, 0) + 1
                    logger.warning("a scoring worker died (%s); starting it again", died)
                    worker.restart(self.timeout)
                    if tries[job] >= _MAX_TRIES:
                        results[job] = {"error": f"the worker died {_MAX_TRIES} times ({died})"}
                        worker.release(job)
                        del busy[number]
                    else:
                        worker.resubmit(job, _job(job))
                        busy[number] = (job, time.monotonic())
                    continue
                for job_id, result in arrived:
                    results[job_id] = result
                    worker.release(job_id)
                    busy.pop(number, None)
                if number in busy and time.monotonic() - since > self.timeout:
                    results[job] = {"error": f"no result within {self.timeout:g} s"}
                    worker.release(job)
                    worker.restart(self.timeout)  # stuck: a fresh one for the next checkpoint
                    del busy[number]
            while following in results:
                yield results.pop(following)
                following += 1

    def _hand_over(self, worker: Any, job: int, labelled: tuple[str, dict]) -> None:
        logger.info("scoring %s in %s", labelled[0], worker.description)
        worker.submit(job, _job(job), labelled[1])


def _job(number: int) -> dict:
    """What the worker protocol carries besides the snapshot (the local spool names the file after "step")."""
    return {"kind": "offline", "step": number}


def score_model(model: str, data: Any, *, load: dict, measure: dict) -> dict:
    """One model's scores on `data`, the JSON `neuronxa score --output` writes (AlignmentReport.to_dict() with the
    load time): load (load_model_and_tokenizer options), measure (measure_alignment options)."""
    from neuronxa_callback.alignment.report import measure_alignment
    from neuronxa_callback.instrument.models import load_model_and_tokenizer

    started = time.perf_counter()
    loaded, tokenizer = load_model_and_tokenizer(model, **load)
    load_seconds = time.perf_counter() - started
    report = measure_alignment(loaded, tokenizer, data, model_name=model, **measure)
    if report is None:  # only a rank other than 0 under shard= gets None, and no shard is asked for here
        raise RuntimeError(f"{model}: measure_alignment returned no report")
    payload = report.to_dict()
    payload["timing"]["load_seconds"] = round(load_seconds, 3)
    return payload


class ModelScorer:
    """The worker's side of scoring several models: the scored pairs once (`base`: {"data", "load", "measure"}, or
    its file), then one model after another, each loaded for its job and let go after it."""

    def __init__(self, settings_json: dict, base: dict | str | Path, device: str = "cpu", threads: int | None = None):
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        if isinstance(base, (str, Path)):
            from neuronxa_callback.worker.snapshot import read_snapshot

            base = read_snapshot(Path(base))
        self.base, self.device = base, device

    def ready(self) -> str:
        """Where this scorer runs (the worker's first answer)."""
        return f"model scorer on {self.device}"

    def score(self, job: dict, snapshot: dict | str | Path) -> dict:
        """{"error": None, "payload": score_model()} for the model of `snapshot` ({"model": name}), or {"error"}."""
        try:
            if isinstance(snapshot, (str, Path)):
                from neuronxa_callback.worker.snapshot import read_snapshot

                snapshot = read_snapshot(Path(snapshot))
            load = dict(self.base["load"])
            if load.get("device") is not None:  # as CheckpointScorer: the worker's device
                load["device"] = self.device
            payload = score_model(snapshot["model"], self.base["data"], load=load, measure=self.base["measure"])
        except Exception as error:  # noqa: BLE001 - travels back as data; the caller raises it naming the model
            return {"error": f"{type(error).__name__}: {error}"}
        return {"error": None, "payload": payload}


def score_models(
    models: list[str],
    data: Any,
    *,
    load: dict,
    measure: dict,
    workers: int | None = None,
    ray: bool | str = False,
    threads: int | None = None,
    timeout: float = 600.0,
    spool_dir: Path | None = None,
) -> Iterator[tuple[str, dict]]:
    """(model, score_model() payload) for each model in order: in this process, or with workers=N / ray= in a
    WorkerPool of ModelScorers. ValueError naming the model whose scoring failed in a worker."""
    if not (workers or ray):
        for model in models:
            yield model, score_model(model, data, load=load, measure=measure)
        return
    base = {"data": data, "load": load, "measure": measure}
    pool = WorkerPool(
        {},
        base,
        workers=workers or 2,
        ray=ray,
        device=load.get("device"),
        threads=threads,
        timeout=timeout,
        spool_dir=spool_dir,
        scorer=_MODEL_SCORER,
    )
    with pool:
        for model, result in zip(models, pool.in_order([(model, {"model": model}) for model in models])):
            if result.get("error"):
                raise ValueError(f"{model}: scoring in a worker failed: {result['error']}")
            yield model, result["payload"]
