"""Open a report in a real headless browser (Debian's ``chromium``): DOM dump and screenshot.

The report page runs a self-check on load (see :mod:`rock.report.render`) and writes its result
into ``<pre id="selfcheck" data-done="1">``. :func:`dump_dom` lets Chromium load the page, run the
script and print the resulting DOM; :func:`selfcheck` parses the marker. :func:`screenshot` keeps
a PNG of the page with the run.

Chromium is started with a throw-away profile and everything that could reach the network or
change the machine switched off (``HEADLESS_FLAGS``). Install it with
``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

#: candidates, in order: Debian's package, Ubuntu's snap wrapper, Google's build
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")
#: virtual time the page may use before the DOM is dumped (the self-check runs on `load`)
VIRTUAL_TIME_MS = 10_000
TIMEOUT_S = 120


class BrowserError(RuntimeError):
    """Chromium is missing or failed."""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise BrowserError("no chromium found (install: apt-get update && apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="rock-chromium-") as profile:
        cmd = [browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise BrowserError(f"chromium timed out after {timeout} s: {' '.join(cmd)}") from err


def dump_dom(html_path: str | Path, *, timeout: int = TIMEOUT_S) -> str:
    """The DOM of the loaded page, after its scripts ran."""
    url = Path(html_path).resolve().as_uri()
    r = _run([f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url], timeout)
    if r.returncode != 0 or "<html" not in r.stdout.lower():
        raise BrowserError(f"chromium --dump-dom failed (exit {r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def selfcheck(dom: str) -> dict:
    """The page's self-check result: ``{"images": [{id, ok, width}], "tables": [{id, rows, ok}]}``."""
    m = re.search(r'<pre[^>]*id="selfcheck"[^>]*>(.*?)</pre>', dom, re.S)
    if not m or 'data-done="1"' not in m.group(0):
        raise BrowserError("the page's self-check did not run (no data-done marker in the DOM)")
    import html

    return json.loads(html.unescape(m.group(1)))


def screenshot(html_path: str | Path, png: str | Path, *, width: int = 1280, height: int = 4000,
               timeout: int = TIMEOUT_S) -> Path:
    """A PNG of the page (``width`` x ``height`` viewport) written to ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    url = Path(html_path).resolve().as_uri()
    # chromium picks the format from the extension, so the temporary file (renamed into place on
    # success, as rock.atomic does) is <tmpdir>/page.png next to the target
    with tempfile.TemporaryDirectory(prefix=f".{png.name}.", dir=png.parent) as tmpdir:
        tmp = Path(tmpdir) / "page.png"
        r = _run([f"--virtual-time-budget={VIRTUAL_TIME_MS}", f"--window-size={width},{height}",
                  f"--screenshot={tmp}", url], timeout)
        if r.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise BrowserError(f"chromium --screenshot failed (exit {r.returncode}): {r.stderr[-2000:]}")
        os.replace(tmp, png)
    return png
