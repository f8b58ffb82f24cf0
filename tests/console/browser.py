"""The distribution's headless Chromium under Playwright, for the console's tests and
bench: never a browser Playwright downloads (scripts/install.sh --dev installs
`chromium`), always a fresh profile."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DIST = Path(__file__).resolve().parents[2] / "console" / "dist"


def require_console() -> None:
    """Fail (never skip) when the browser or the built console is missing: CI installs
    both with scripts/install.sh --dev."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/install.sh --dev")
    if not (DIST / "index.html").exists():
        raise RuntimeError(f"{DIST} is not built: run scripts/install.sh (npm run build)")


@contextmanager
def chromium(viewport: tuple[int, int] = (1366, 800)) -> Iterator[BrowserContext]:
    """A browser context in a fresh --user-data-dir, removed afterwards."""
    require_console()
    profile = Path(tempfile.mkdtemp(prefix="chaser-chromium-"))
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
                viewport={"width": viewport[0], "height": viewport[1]},
                accept_downloads=True)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
