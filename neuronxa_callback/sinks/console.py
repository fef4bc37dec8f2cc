"""What a person watching a run sees: one line when a measurement starts, one when it ends, the stop reason in words.

Usage::

    from neuronxa_callback.sinks.console import say

    say("measuring step 0 (baseline): 100 pairs x 1 language, translating 100 sentences")

A measurement can take minutes on a CPU while the Trainer's progress bar stands still, so these lines are shown
by default. When the user configured logging at INFO (``logging.basicConfig(level=logging.INFO)`` or a handler on
``neuronxa_callback``), the line goes to that logger only; otherwise it is written above the progress bar with
``tqdm.write`` (stderr), so it never appears twice and never breaks the bar.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("neuronxa_callback")  # the callback's logger: the name users configure


def _logging_shows_info() -> bool:
    """Whether an INFO record of the callback's logger reaches a handler the user set up."""
    if not logger.isEnabledFor(logging.INFO):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if any(handler.level <= logging.INFO for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def say(message: str) -> None:
    """Show `message` once: through the user's logging when it shows INFO, else on stderr above any tqdm bar."""
    if _logging_shows_info():
        logger.info("NeuronXA %s", message)
        return
    from tqdm.auto import tqdm

    tqdm.write(f"NeuronXA {message}", file=sys.stderr)
