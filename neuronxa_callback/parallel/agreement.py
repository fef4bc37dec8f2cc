"""Rank choreography of the callback: errors travel as data, so every DDP rank reaches every collective.

Usage::

    local, error = attempt(lambda: encode(...))                # never raises
    parts, error = gather_attempts(local, error)               # rank 0: every rank's result + the first error
    encoded, error = gather_encoded_attempts(local, error, total)   # the same for one encode's shares, merged
    shared = agree(local_error, {"index": 3} if rank == 0 else None)  # every rank: rank 0's values + the first error

A step that fails on one rank must not skip a collective there (the other ranks would wait forever), so each
piece of work is wrapped in attempt() and its error is gathered like a result. report_failure() then turns an
error into MeasurementError (strict=True) or a logged error (strict=False, training goes on).
The low-level collectives themselves live in distributed.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from neuronxa_callback.parallel.collectives import broadcast_object, gather_objects, merge_parts

if TYPE_CHECKING:
    from neuronxa_callback.instrument.activations import Encoded

# The callback's private modules log under the callback's name: that is the logger users configure.
logger = logging.getLogger("neuronxa_callback")


class MeasurementError(RuntimeError):
    """A measurement failed (raised only with strict=True; otherwise logged and training continues)."""


def attempt(function: Callable[[], Any]) -> tuple[Any, str | None]:
    """(result, None) or (None, "Type: message"): errors become data so every DDP rank still reaches each collective."""
    try:
        return function(), None
    except Exception as error:  # noqa: BLE001 - reported by the caller (logged, or raised when strict)
        logger.debug("neuronxa measurement step failed", exc_info=True)
        return None, f"{type(error).__name__}: {error}"


def gather_attempts(result: Any, error: str | None) -> tuple[list[Any] | None, str | None]:
    """Collective: rank 0 gets ([every rank's result], the first rank's error or None); other ranks (None, error)."""
    gathered = gather_objects((result, error))
    if gathered is None:
        return None, error
    return [part for part, _ in gathered], next((e for _, e in gathered if e), None)


def gather_encoded_attempts(local: Encoded | None, error: str | None, total: int) -> tuple[Encoded | None, str | None]:
    """Collective: gather_attempts of the ranks' shares of one encode (`total` sentences); rank 0 gets them merged
    in sentence order (None when a rank failed) and the first error; other ranks (None, their own error)."""
    parts, error = gather_attempts(local, error)
    if parts is None or error is not None:
        return None, error
    return attempt(lambda: merge_parts(parts, total))


def agree(local_error: str | None, rank0_values: dict | None) -> dict:
    """Collective: every rank gets rank 0's `rank0_values` plus "error": the first error of any rank (or None)."""
    errors = gather_objects(local_error)
    shared = None
    if errors is not None:  # rank 0
        shared = {**(rank0_values or {}), "error": next((e for e in errors if e), None)}
    return broadcast_object(shared)


def report_failure(message: str, strict: bool | None) -> None:
    """strict: raise MeasurementError(message); otherwise (None or False) log it and let training go on."""
    if strict:
        raise MeasurementError(message)
    logger.error("%s; training continues without it (strict=%s)", message, strict)
