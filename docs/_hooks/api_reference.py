"""MkDocs hook: the Python API page lists every public name of the package, read from its export table at build time.

A page holding the marker below gets one mkdocstrings block (`::: neuronxa_callback.Name`) per name in
`neuronxa_callback.__all__`, grouped by the subpackage that defines it, so a newly exported name appears in the
reference without editing the page (and a missing docstring shows up there).
"""

from __future__ import annotations

MARKER = "<!-- api-reference -->"

# Section titles by defining subpackage, in reading order; an unknown subpackage gets its own section at the end.
SECTIONS = {
    "hosts": "Training hosts",
    "monitor": "The monitor (any training loop)",
    "settings": "Settings",
    "data": "Parallel data",
    "instrument": "Models and activation capture",
    "alignment": "Alignment scores and other similarity measures",
    "quality": "Translation quality",
    "measure": "Measurement history and early stopping",
    "parallel": "Distributed and sharded measurement",
    "sinks": "Outputs",
    "offline": "After training: checkpoints, correlation, reports",
}


def render_api_reference() -> str:
    """Markdown: a section per subpackage, a `:::` block per exported name (the `_EXPORTS` table's order)."""
    import neuronxa_callback

    exports: dict[str, str] = neuronxa_callback._EXPORTS
    grouped: dict[str, list[str]] = {}
    for name in neuronxa_callback.__all__:
        if name in exports:
            grouped.setdefault(exports[name].split(".")[0], []).append(name)
    order = [key for key in SECTIONS if key in grouped] + sorted(set(grouped) - set(SECTIONS))
    lines: list[str] = []
    for key in order:
        lines += [f"## {SECTIONS.get(key, key)}", ""]
        for name in sorted(grouped[key], key=list(exports).index):
            lines += [f"::: neuronxa_callback.{name}", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_api_reference())
