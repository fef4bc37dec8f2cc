"""The trackio dashboard on localhost, and headless Chromium to look at it (no browser download: Debian's chromium).

Usage::

    from tests._trackio_browser import chromium_path, serve_dashboard, load_page

    with serve_dashboard(trackio_dir, "neuronxa-test") as base_url:           # http://127.0.0.1:<free port>
        text = load_page(f"{base_url}/?project=neuronxa-test&x_axis=train/global_step",
                         screenshot=Path("dashboard.png"))                     # the rendered DOM's text
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
)


def chromium_path() -> str | None:
    """Debian's chromium (apt-get install chromium), or None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_dashboard(trackio_dir: Path, project: str, *, timeout: float = 90.0):
    """`trackio.show(project, server_port=...)` in a child process (trackio reads TRACKIO_DIR at import), without
    opening a browser; yields the base URL once it answers, and stops exactly that process afterwards."""
    port = free_port()
    code = (
        f"import time, trackio; trackio.show(project={project!r}, open_browser=False, block_thread=False, "
        f"server_port={port}, host='127.0.0.1'); print('READY', flush=True); time.sleep(3600)"
    )
    env = {**os.environ, "TRACKIO_DIR": str(trackio_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"trackio dashboard exited: {process.stdout.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"trackio dashboard did not answer on {base} within {timeout:.0f} s")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def load_page(
    url: str,
    *,
    screenshot: Path | None = None,
    window: str = "1400,2000",
    budget_ms: int = 25000,
    timeout: float = 180.0,
) -> str:
    """The page's text after its scripts ran (chromium --dump-dom), and optionally a PNG screenshot of it."""
    chromium = chromium_path()
    if chromium is None:
        raise RuntimeError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="neuronxa-chromium-") as profile:
        common = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window}",
            f"--virtual-time-budget={budget_ms}",
        ]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if dom.returncode != 0:
            raise RuntimeError(f"chromium --dump-dom failed ({dom.returncode}): {dom.stderr[-2000:]}")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            shot = subprocess.run(
                [*common, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=timeout
            )
            if shot.returncode != 0 or not screenshot.is_file():
                raise RuntimeError(f"chromium --screenshot failed ({shot.returncode}): {shot.stderr[-2000:]}")
    return page_text(dom.stdout)


def page_text(dom: str) -> str:
    """Visible text of a DOM dump: scripts and styles dropped, tags removed, whitespace collapsed."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()
