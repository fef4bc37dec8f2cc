"""A worker process on this machine: its own device and thread count, the base model loaded once, one snapshot
after another scored (scorer.SnapshotScorer).

Usage (OutOfBand drives it; a plain loop never needs it directly)::

    worker = LocalWorker(settings, spool_dir, base)   # writes the base model to spool_dir/base.pt
    worker.start(timeout=600)                        # MeasurementError when the worker cannot start (device, model)
    worker.submit(job_id, job, snapshot)             # the snapshot goes through a file in spool_dir
    for job_id, result in worker.poll(timeout=1.0):  # WorkerDied when the process is gone: restart(), resubmit
        worker.release(job_id)                       # the snapshot file is deleted
    worker.close()

The process is `python -m neuronxa_callback.worker.local`, not a multiprocessing child: the training script is never
imported again (spawn re-runs an unguarded `__main__`). It talks over a private socket pair (POSIX), so a killed
worker is seen at once (end of file) and a new one starts on a clean channel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from neuronxa_callback.parallel.agreement import MeasurementError
from neuronxa_callback.worker.snapshot import write_snapshot

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_SNAPSHOT_SCORER = "neuronxa_callback.worker.scorer:SnapshotScorer"


class WorkerDied(RuntimeError):
    """The worker process (or Ray actor) went away; the jobs it held must be submitted again."""


class LocalWorker:
    """One `python -m neuronxa_callback.worker.local` process; see the module docstring."""

    def __init__(self, settings: Any, spool_dir: Path, base: dict, scorer: str = _SNAPSHOT_SCORER) -> None:
        self.settings = settings
        # "module:Class" built in the process as Class(settings_json, base, device=, threads=); offline checkpoint
        # scoring (offline/fanout.py) runs its own scorer over the same process and protocol.
        self.scorer = scorer
        self.spool_dir = Path(spool_dir)
        # Snapshots a crashed earlier run left behind: their measurements are gone with that process.
        for stale in [*self.spool_dir.glob("step-*.pt"), *self.spool_dir.glob("*.partial")]:
            stale.unlink(missing_ok=True)
        self.base_path = write_snapshot(base, self.spool_dir / "base.pt")
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        self._paths: dict[int, Path] = {}
        self.description = ""

    # ----- the process ---------------------------------------------------------------------------------------------
    def start(self, timeout: float) -> None:
        """Start the process and wait until it has built the model; MeasurementError naming the cause otherwise."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        if self.settings.worker_threads is not None:
            env["OMP_NUM_THREADS"] = str(self.settings.worker_threads)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "neuronxa_callback.worker.local", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        self._connection = Connection(ours.detach())
        self._connection.send(
            {
                "settings": self.settings.to_json(),
                "base": str(self.base_path),
                "device": self.settings.worker_device,
                "threads": self.settings.worker_threads,
                "scorer": self.scorer,
            }
        )
        deadline = time.monotonic() + timeout
        while not self._connection.poll(0.2):
            if self._process.poll() is not None:
                self._fail(f"the worker process exited with code {self._process.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._fail(f"the worker was not ready within worker_timeout={timeout:g} s")
        try:
            status, detail = self._connection.recv()
        except (EOFError, OSError):
            self._fail(f"the worker process exited with code {self._process.wait()} before it was ready")
        if status != "ready":
            self._fail(detail)
        self.description = f"worker process {self._process.pid} ({detail})"

    def _fail(self, why: str) -> None:
        self._stop()
        raise MeasurementError(
            f"measure_in='worker': the worker (worker_device={self.settings.worker_device!r}) could not start: {why}"
        )

    def restart(self, timeout: float) -> None:
        """A new process in place of a dead or stuck one (the base model is still in the spool)."""
        self._stop()
        self.start(timeout)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _stop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.send(None)
            except OSError:
                pass
            self._connection.close()
            self._connection = None
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop the process and delete the spool's files (the base model, snapshots not yet scored)."""
        self._stop()
        for path in [*self._paths.values(), self.base_path]:
            path.unlink(missing_ok=True)
        self._paths.clear()

    # ----- jobs ----------------------------------------------------------------------------------------------------
    def submit(self, job_id: int, job: dict, snapshot: dict) -> None:
        """Write `snapshot` to the spool and hand the job to the worker."""
        path = self.spool_dir / f"step-{job['step']:08d}-job-{job_id}.pt"
        self._paths[job_id] = write_snapshot(snapshot, path)
        self.resubmit(job_id, job)

    def resubmit(self, job_id: int, job: dict) -> None:
        """Hand a job (its snapshot already in the spool) to the worker again, after a restart."""
        try:
            self._connection.send((job_id, job, str(self._paths[job_id])))
        except (OSError, AttributeError) as error:
            raise WorkerDied(f"could not reach the worker: {error}") from None

    def poll(self, timeout: float) -> list[tuple[int, dict]]:
        """The results that arrive within `timeout` seconds (all that are ready); WorkerDied when the process died."""
        results: list[tuple[int, dict]] = []
        try:
            wait = timeout
            while self._connection.poll(wait):
                results.append(self._connection.recv())
                wait = 0
        except (EOFError, OSError, AttributeError):
            if results:
                return results
            code = self._process.wait() if self._process is not None else None
            raise WorkerDied(f"the worker process exited (code {code})") from None
        return results

    def release(self, job_id: int) -> None:
        """The job's record is written: delete its snapshot."""
        path = self._paths.pop(job_id, None)
        if path is not None:
            path.unlink(missing_ok=True)


def _serve(fd: int) -> int:
    """The worker process: build the scorer, say ready (or why not), then score jobs until told to stop."""
    import importlib

    connection = Connection(fd)
    spec = connection.recv()
    try:
        module_name, _, class_name = spec.get("scorer", _SNAPSHOT_SCORER).partition(":")
        scorer_class = getattr(importlib.import_module(module_name), class_name)
        scorer = scorer_class(spec["settings"], spec["base"], device=spec["device"], threads=spec["threads"])
    except Exception as error:  # noqa: BLE001 - sent to the training process, which raises it at begin()
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        return 1
    connection.send(("ready", scorer.ready()))
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the training process is gone
            return 0
        if message is None:
            return 0
        job_id, job, path = message
        connection.send((job_id, scorer.score(job, path)))


if __name__ == "__main__":
    sys.exit(_serve(int(sys.argv[1])))
