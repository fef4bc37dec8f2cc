"""The worker as a Ray actor (measure_in="ray"): scorer.SnapshotScorer under ray.remote, one GPU (worker_device
"cuda...") or CPU threads, snapshots through Ray's object store.

Usage (OutOfBand drives it, with the same calls as local.LocalWorker)::

    worker = RayWorker(settings, base)     # ray.init() a local instance (ray_address=None) or attach to a cluster
    worker.start(timeout=600)              # MeasurementError when the actor cannot be built (device, model)
    worker.submit(job_id, job, snapshot)   # ray.put(snapshot), actor.score.remote(job, ref)
    worker.poll(timeout=1.0)               # [(job_id, result)]; WorkerDied when the actor died
    worker.restart(timeout); worker.resubmit(job_id, job)   # Ray restarts the actor (max_restarts), we resubmit
    worker.close()                         # the actor killed; ray.shutdown() if this worker started Ray

Ray is the `ray` extra (pip install 'neuronxa_callback[ray]'), imported only here. Inside the actor Ray makes the
GPU it was given visible as the only one: worker_device "cuda:1" asks for a GPU and the actor uses "cuda".
On a cluster the actor may run on another machine: the base model and the snapshots travel through the object
store, and neuronxa_callback (with the model's libraries) must be installed there too.
"""

from __future__ import annotations

from typing import Any

from neuronxa_callback.parallel.agreement import MeasurementError
from neuronxa_callback.worker.local import _SNAPSHOT_SCORER, WorkerDied

_MAX_RESTARTS = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise MeasurementError(
            "measure_in='ray' needs Ray, which is not installed: pip install 'neuronxa_callback[ray]'"
        ) from None
    return ray


class RayWorker:
    """One SnapshotScorer actor; see the module docstring."""

    def __init__(self, settings: Any, base: dict, scorer: str = _SNAPSHOT_SCORER) -> None:
        ray = _ray()
        self.settings = settings
        self.scorer = scorer  # "module:Class", as for LocalWorker (offline/fanout.py scores checkpoints with its own)
        self._started_ray = False
        if not ray.is_initialized():
            # Ray's own logging would flood a training log; what matters reaches us as errors.
            ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
            self._started_ray = True
        self._base = ray.put(base)
        self._snapshots: dict[int, Any] = {}  # job id -> snapshot ref, kept until its record is written
        self._tasks: dict[Any, int] = {}  # result ref -> job id
        self._undelivered: list[tuple[int, dict]] = []
        self._actor = None
        self.description = ""

    def start(self, timeout: float) -> None:
        """Create the actor and wait until it has built the model."""
        import importlib

        ray, settings = _ray(), self.settings
        module_name, _, class_name = self.scorer.partition(":")
        scorer_class = getattr(importlib.import_module(module_name), class_name)
        gpu = settings.worker_device.startswith("cuda")
        actor_class = ray.remote(scorer_class).options(
            num_gpus=1 if gpu else 0,
            num_cpus=settings.worker_threads or 1,
            max_restarts=_MAX_RESTARTS,
            max_task_retries=0,  # a task lost with its actor is resubmitted by OutOfBand, in order
        )
        self._actor = actor_class.remote(
            settings.to_json(), self._base, "cuda" if gpu else settings.worker_device, settings.worker_threads
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        ray = _ray()
        try:
            self.description = f"Ray actor ({ray.get(self._actor.ready.remote(), timeout=timeout)})"
        except Exception as error:  # noqa: BLE001 - Ray wraps the constructor's exception; its text names the cause
            raise MeasurementError(
                f"measure_in='ray': the worker actor (worker_device={self.settings.worker_device!r}) could not "
                f"start: {type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            ) from None

    @property
    def actor(self) -> Any:
        return self._actor

    def restart(self, timeout: float) -> None:
        """After the actor died: Ray restarts it (up to max_restarts); wait until it is ready, or start a new one."""
        self._tasks.clear()  # lost with the old actor; OutOfBand resubmits them
        try:
            self._wait_ready(timeout)
        except MeasurementError:
            self.start(timeout)

    def submit(self, job_id: int, job: dict, snapshot: dict) -> None:
        self._snapshots[job_id] = _ray().put(snapshot)
        self.resubmit(job_id, job)

    def resubmit(self, job_id: int, job: dict) -> None:
        self._tasks[self._actor.score.remote(job, self._snapshots[job_id])] = job_id

    def poll(self, timeout: float) -> list[tuple[int, dict]]:
        """The results that arrive within `timeout` seconds; WorkerDied when the actor died (the results that
        arrived before it are delivered by the next poll)."""
        ray = _ray()
        results, self._undelivered = self._undelivered, []
        if not self._tasks or results:
            return results
        ready, _ = ray.wait(list(self._tasks), num_returns=len(self._tasks), timeout=timeout)
        died = None
        for ref in ready:
            job_id = self._tasks.pop(ref)
            try:
                results.append((job_id, ray.get(ref)))
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
                died = f"the Ray actor died ({type(error).__name__})"
        if died is not None:
            self._undelivered = results
            raise WorkerDied(died)
        return results

    def release(self, job_id: int) -> None:
        self._snapshots.pop(job_id, None)  # the object store frees it once no reference is left

    def close(self) -> None:
        ray = _ray()
        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)
            self._actor = None
        self._snapshots.clear()
        self._tasks.clear()
        self._base = None
        if self._started_ray:
            ray.shutdown()
