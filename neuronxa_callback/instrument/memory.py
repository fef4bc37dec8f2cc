"""Peak memory of one block of work (a measurement), for the JSONL timing block.

Usage::

    from neuronxa_callback.instrument.memory import PeakMemory

    with PeakMemory(device) as peak:          # device: the model's torch.device (or "cpu" / "cuda:0")
        ...                                   # encode, translate
    peak.delta_bytes                          # the block's peak above what was in use when it started
    peak.method                               # "cuda_max_memory_allocated" | "cpu_rss_hwm" | "cpu_rss_sampled"

On CUDA: torch.cuda.max_memory_allocated after resetting the peak counter at entry (this resets the counter other
code may read, e.g. the Trainer's memory metrics, to the block's start). On CPU: the process's resident-set
high-water mark (Linux: /proc/self/status VmHWM, reset at entry through /proc/self/clear_refs), or, where that is
not possible, the largest RSS a background thread saw while sampling every few milliseconds (psutil).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_SAMPLE_SECONDS = 0.005


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _reset_hwm() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class PeakMemory:
    """Context manager: the peak memory a block used above its starting point (see the module docstring)."""

    def __init__(self, device: Any = "cpu") -> None:
        import torch

        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.method: str | None = None
        self.start_bytes: int | None = None
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def delta_bytes(self) -> int | None:
        """Peak minus the usage at entry (>= 0); None when nothing could be measured."""
        if self.start_bytes is None or self.peak_bytes is None:
            return None
        return max(0, self.peak_bytes - self.start_bytes)

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_memory_allocated"
            return self
        self.start_bytes = _rss_bytes()
        if _reset_hwm():
            self.method = "cpu_rss_hwm"
        elif self.start_bytes is not None:
            self.method = "cpu_rss_sampled"
            self.peak_bytes = self.start_bytes
            self._thread = threading.Thread(target=self._sample, name="neuronxa-peak-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(_SAMPLE_SECONDS):
            rss = _rss_bytes()
            if rss is not None and (self.peak_bytes is None or rss > self.peak_bytes):
                self.peak_bytes = rss

    def __exit__(self, *exc_info: object) -> None:
        import torch

        if self.method == "cuda_max_memory_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "cpu_rss_hwm":
            kib = _status_kib("VmHWM")
            self.peak_bytes = kib * 1024 if kib is not None else None
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            rss = _rss_bytes()
            if rss is not None and self.peak_bytes is not None:
                self.peak_bytes = max(self.peak_bytes, rss)

    def to_dict(self, prefix: str) -> dict[str, Any]:
        """{"<prefix>_peak_memory_mb": delta in MiB (None if unknown)} for the JSONL timing block."""
        delta = self.delta_bytes
        return {f"{prefix}_peak_memory_mb": None if delta is None else round(delta / 2**20, 3)}
