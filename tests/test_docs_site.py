"""The documentation site builds strictly, and a browser sees it: navigation, search index, images, the API reference.

`mkdocs build --strict` (what `make docs` runs) into a temporary folder, served by `python -m http.server` on a free
port and opened in headless Chromium (Debian's chromium; the test skips with the reason when it is absent).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests._trackio_browser import CHROMIUM_FLAGS, chromium_path, free_port, page_text

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # a strict build (~5-15 s here) and several Chromium launches (~5 s each under load)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def base_url(site: Path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"http.server did not answer on {url}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def _fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.headers.get_content_type(), response.read()


def _chromium(*args: str) -> subprocess.CompletedProcess:
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="neuronxa-docs-chromium-") as profile:
        run = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert run.returncode == 0, f"chromium {args[0]} failed: {run.stderr[-2000:]}"
    return run


def _dom(url: str) -> str:
    return _chromium("--window-size=1280,1600", "--dump-dom", url).stdout


def test_the_home_page_has_the_navigation_and_its_picture_loads(base_url):
    dom = _dom(base_url + "/")
    text = page_text(dom)
    for tab in ("Home", "Guide", "Training frameworks", "Method", "Reference", "Project"):
        assert re.search(rf'class="md-tabs__link"[^>]*>\s*{re.escape(tab)}\s*<', dom), f"no navigation tab {tab!r}"
    assert 'href="guide/callback/"' in dom and 'href="reference/cli/"' in dom
    assert "cross-lingual alignment while it is being fine-tuned" in text
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    assert "demo/trend_eng_Latn-isl_Latn.png" in images, images
    content_type, body = _fetch(f"{base_url}/demo/trend_eng_Latn-isl_Latn.png")
    assert content_type == "image/png" and body.startswith(b"\x89PNG\r\n\x1a\n") and len(body) > 10_000


def test_the_search_index_holds_the_pages_text(base_url):
    content_type, body = _fetch(base_url + "/search/search_index.json")
    index = json.loads(body)
    locations = {doc["location"] for doc in index["docs"]}
    assert {"guide/callback/", "instrument/", "reference/api/", "reference/cli/"} <= locations
    everything = " ".join(doc["text"] for doc in index["docs"])
    assert "position weights that favour later tokens" in everything  # instrument.md
    assert "--num-pairs" in everything  # the CLI reference, generated from the parser at build time


def test_the_cli_reference_is_generated_from_the_parser(site):
    from neuronxa_callback.cli import build_parser

    page = page_text((site / "reference" / "cli" / "index.html").read_text(encoding="utf-8"))
    subcommands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in subcommands.choices.items():
        assert f"usage: neuronxa {name}" in page, name
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, f"neuronxa {name} {option} missing from the CLI reference"


def test_the_api_page_shows_signatures_and_every_public_name(base_url):
    import neuronxa_callback

    text = page_text(_dom(base_url + "/reference/api/"))
    signatures = re.sub(r"\s+", "", text)  # the highlighter wraps each token in its own element
    assert (
        "measure_alignment(model:Any,tokenizer:Any,data:ParallelSet,*,representations:str|Sequence[str]" in signatures
    )
    missing = [name for name in neuronxa_callback.__all__ if name != "__version__" and name not in text]
    assert not missing, f"public names missing from the API reference: {missing}"


def test_a_screenshot_of_a_guide_page(base_url, tmp_path):
    shot = tmp_path / "callback.png"
    _chromium("--window-size=1280,1000", f"--screenshot={shot}", base_url + "/guide/callback/")
    body = shot.read_bytes()
    assert body.startswith(b"\x89PNG") and len(body) > 20_000  # a blank page compresses to a few kB
