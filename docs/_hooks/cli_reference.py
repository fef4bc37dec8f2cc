"""MkDocs hook: renders `neuronxa --help` and every subcommand's help into the CLI reference page at build time.

The text comes from the argparse parser itself (`neuronxa_callback.cli.build_parser`), so the page cannot drift
from the options: a page that holds the marker below gets it replaced by one section per subcommand.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

MARKER = "<!-- cli-reference -->"
HELP_WIDTH = "100"  # argparse wraps to $COLUMNS: fixed, so the page does not depend on the terminal that built it


@contextmanager
def _columns(width: str):
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render_cli_reference() -> str:
    """Markdown: the top-level help, then one section per subcommand with its full help."""
    from neuronxa_callback.cli import build_parser

    with _columns(HELP_WIDTH):
        parser = build_parser()
        parser.prog = "neuronxa"
        sections = ["## neuronxa", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser).items():
            sub.prog = f"neuronxa {name}"
            sections += [f"## neuronxa {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_cli_reference())
