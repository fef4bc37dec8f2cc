"""The training process's side of out-of-band measurement: snapshots handed to a worker, at most
`worker_max_in_flight` of them unscored at a time, results given back in submission (step) order.

Usage (AlignmentMonitor with measure_in="worker" or "ray"; every method a collective, rank 0 does the work)::

    out_of_band = OutOfBand(settings, output_dir / "snapshots")
    error = out_of_band.start(model, tokenizer)       # the base model copied once; the worker started and ready
    error = out_of_band.submit(model, {"kind": "measure", "step": 50, "with_quality": False, ...})
    for job_id, job, result in out_of_band.finished():          # rank 0: what has arrived, oldest first
        ...write the record...; out_of_band.release(job_id)     # the snapshot is deleted
    out_of_band.finished(wait=True)                   # everything in flight, waiting at most worker_timeout
    out_of_band.close()

Faults: a worker that dies (a Ray actor too) is started again and every job it held is submitted again, in order; a
result that arrives twice is kept once. A job whose worker died three times, or that has no result within
worker_timeout, is a failed measurement (logged like any other; strict=True raises).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from neuronxa_callback.parallel.agreement import agree, attempt
from neuronxa_callback.parallel.collectives import rank_and_world
from neuronxa_callback.worker.local import WorkerDied
from neuronxa_callback.worker.snapshot import base_copy, snapshot_bytes, take_snapshot

logger = logging.getLogger("neuronxa_callback")

_MAX_TRIES = 3  # a snapshot that kills the worker this many times is given up, not retried for ever


class OutOfBand:
    """Snapshots to a worker and results back; see the module docstring."""

    def __init__(self, settings: Any, spool_dir: Path) -> None:
        self.settings = settings
        self.spool_dir = Path(spool_dir)
        self.backend: Any = None  # rank 0: LocalWorker or RayWorker
        self._jobs: dict[int, dict] = {}  # rank 0: submitted, record not yet written, in submission order
        self._results: dict[int, dict] = {}
        self._tries: dict[int, int] = {}
        self._next_id = 0
        self.restarts = 0

    # ----- start and stop --------------------------------------------------------------------------------------------
    def start(self, model: Any, tokenizer: Any, error: str | None = None) -> str | None:
        """Collective: copy the base model (rank 0 gets it) and start the worker; the first error of any rank, or
        None. `error`: this rank already failed (the copy's collectives still run, the worker is not started)."""
        base, copy_error = attempt(lambda: base_copy(model, tokenizer))
        error = error or copy_error
        if rank_and_world()[0] == 0 and error is None:
            error = attempt(lambda: self._start_backend(base))[1]
        base = None  # the worker has its own copy now: do not keep a second model in memory
        return agree(error, None)["error"]

    def _start_backend(self, base: dict) -> None:
        if self.settings.measure_in == "ray":
            from neuronxa_callback.worker.ray_actor import RayWorker

            self.backend = RayWorker(self.settings, base)
        else:
            from neuronxa_callback.worker.local import LocalWorker

            self.backend = LocalWorker(self.settings, self.spool_dir, base)
        self.backend.start(self.settings.worker_timeout)

    def close(self) -> None:
        """Rank 0: stop the worker and delete the spool (a no-op elsewhere and when never started)."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self._jobs.clear()
        self._results.clear()
        try:
            self.spool_dir.rmdir()
        except OSError:  # not ours, not empty or not there
            pass

    # ----- jobs ------------------------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Rank 0: jobs handed to the worker whose result has not arrived."""
        return sum(1 for job_id in self._jobs if job_id not in self._results)

    def submit(self, model: Any, job: dict) -> str | None:
        """Collective: wait (rank 0) until fewer than worker_max_in_flight jobs are in flight, snapshot `model`,
        hand it to the worker. `job`: step, trigger, epoch, index, kind ("measure" | "quality"), with_quality. The
        job gains "timing": worker_wait_seconds, snapshot_seconds, snapshot_bytes. Returns the first error."""
        rank = rank_and_world()[0]
        waited = self._wait_for_room() if rank == 0 else 0.0
        start = time.perf_counter()
        snapshot, error = attempt(lambda: take_snapshot(model))
        if rank == 0 and error is None:
            job = {
                **job,
                "timing": {
                    "worker_wait_seconds": waited,
                    "snapshot_seconds": time.perf_counter() - start,
                    "snapshot_bytes": snapshot_bytes(snapshot),
                },
            }
            error = attempt(lambda: self._hand_over(job, snapshot))[1]
        snapshot = None  # in the spool / the object store now
        return agree(error, None)["error"]

    def _hand_over(self, job: dict, snapshot: dict) -> None:
        job_id, self._next_id = self._next_id, self._next_id + 1
        self._jobs[job_id] = job
        try:
            self.backend.submit(job_id, _payload(job), snapshot)
        except WorkerDied as died:
            self._recover(str(died))

    def _wait_for_room(self) -> float:
        """Rank 0: receive results until a job may be added; the seconds training waited."""
        start = time.perf_counter()
        limit = self.settings.worker_max_in_flight
        deadline = time.monotonic() + self.settings.worker_timeout
        while self.in_flight >= limit:
            if time.monotonic() > deadline:
                self._give_up_oldest(f"no result within worker_timeout={self.settings.worker_timeout:g} s")
                deadline = time.monotonic() + self.settings.worker_timeout
                continue
            self._receive(min(1.0, max(0.0, deadline - time.monotonic())))
        return time.perf_counter() - start

    def finished(self, *, wait: bool = False, when: str = "at the end") -> list[tuple[int, dict, dict]]:
        """Rank 0: [(job_id, job, result)] of the oldest jobs whose results are in, in submission order (a later
        result waits for the earlier ones). wait=True: everything in flight, at most worker_timeout seconds; what
        is still missing then is returned as failed (`when`: what training waited for, in that error)."""
        if wait:
            deadline = time.monotonic() + self.settings.worker_timeout
            while self.in_flight and time.monotonic() < deadline:
                self._receive(min(1.0, max(0.0, deadline - time.monotonic())))
            for job_id in list(self._jobs):
                if job_id not in self._results:
                    self._results[job_id] = {
                        "error": f"no result within worker_timeout={self.settings.worker_timeout:g} s {when}"
                    }
        elif self._jobs:
            self._receive(0.0)
        done = []
        while self._jobs and next(iter(self._jobs)) in self._results:
            job_id = next(iter(self._jobs))
            done.append((job_id, self._jobs.pop(job_id), self._results.pop(job_id)))
        return done

    def release(self, job_id: int) -> None:
        """Rank 0: the job's record is written; its snapshot can go."""
        self._tries.pop(job_id, None)
        if self.backend is not None:
            self.backend.release(job_id)

    # ----- receiving, faults -------------------------------------------------------------------------------------------
    def _receive(self, timeout: float) -> None:
        if self.backend is None:
            return
        try:
            arrived = self.backend.poll(timeout)
        except WorkerDied as died:
            self._recover(str(died))
            return
        for job_id, result in arrived:
            if job_id in self._jobs and job_id not in self._results:  # a resubmitted job's second result: dropped
                self._results[job_id] = result

    def _unresolved(self) -> list[int]:
        return [job_id for job_id in self._jobs if job_id not in self._results]

    def _recover(self, why: str) -> None:
        """The worker died: count it against the job it was scoring (the oldest), start a new worker and submit
        again everything it held, in order."""
        pending = self._unresolved()
        if pending:
            oldest = pending[0]
            self._tries[oldest] = self._tries.get(oldest, 0) + 1
            if self._tries[oldest] >= _MAX_TRIES:
                step = self._jobs[oldest]["step"]
                self._results[oldest] = {"error": f"the worker died {_MAX_TRIES} times scoring step {step}: {why}"}
        logger.warning("NeuronXA: the measurement worker died (%s); starting it again", why)
        self._restart()

    def _give_up_oldest(self, why: str) -> None:
        """A job that never came back: failed; the worker (stuck) is replaced and the rest submitted again."""
        pending = self._unresolved()
        if pending:
            self._results[pending[0]] = {"error": why}
        self._restart()

    def _restart(self) -> None:
        self.restarts += 1
        _, error = attempt(lambda: self.backend.restart(self.settings.worker_timeout))
        if error is not None:  # no worker any more: everything in flight has failed
            for job_id in self._unresolved():
                self._results[job_id] = {"error": f"the worker could not be started again: {error}"}
            return
        for job_id in self._unresolved():
            try:
                self.backend.resubmit(job_id, _payload(self._jobs[job_id]))
            except WorkerDied as died:  # dead again at once: the next poll sees it
                logger.warning("NeuronXA: resubmitting to the new worker failed: %s", died)
                return


def _payload(job: dict) -> dict:
    """What the worker needs of a job."""
    return {"kind": job["kind"], "step": job["step"], "with_quality": job.get("with_quality", False)}
