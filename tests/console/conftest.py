"""Fixtures of the console's browser tests: one headless Chromium per module, a fresh
tab per test (session storage is per tab), helpers that read the page."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.conftest import ServerProcess
from tests.console.browser import chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A fresh tab that records every URL it requests (no key may ever be in one)."""
    tab = browser.new_page()
    tab.set_default_timeout(30_000)
    urls: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda r: urls.append(r.url))
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    setattr(tab, "requested_urls", urls)
    setattr(tab, "page_errors", errors)
    yield tab
    tab.close()


def login(page: Page, server: ServerProcess, key: str) -> None:
    """Opens the console and logs in with `key`."""
    page.goto(server.url + "/console")
    page.fill("#key", key)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("#logout")


def shot(page: Page, name: str) -> None:
    """Saves a screenshot as a test artefact (tests/artifacts/console, gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Polls `check` until it returns something truthy (the page's own CSP forbids the
    eval that Playwright's wait_for_function needs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def terminal_text(page: Page) -> str:
    """The whole of xterm's buffer (scrollback and screen), read through the page."""
    text = page.evaluate("""() => {
        const t = window.chaserTerminal;
        if (!t) return '';
        const b = t.buffer.active, out = [];
        for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
        return out.join('\\n');
    }""")
    return str(text)


def lines_equal(text: str, wanted: str) -> bool:
    return any(line.strip() == wanted for line in re.split(r"\r?\n", text))
