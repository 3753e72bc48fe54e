"""Playwright for the browser tests: Debian's chromium (never a downloaded build), headless. The
fixtures ``browser`` and ``serial_sqlite_server`` are the plugin's (:mod:`.plugin`); the portal's
tests drive a 390×844 phone (:func:`phone_factory`) with screenshots of each step under
``test-output/portal/<test>/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.servers.basehttp import WSGIServer
from django.db import connection
from django.test.testcases import LiveServerThread

try:  # a dev dependency: without it the browser tests skip (skip_reason) and the rest still run
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
OUT = Path(__file__).resolve().parents[3] / "test-output" / "portal"


def skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return ("needs Debian's chromium at /usr/bin/chromium "
                "(apt-get install -y chromium fonts-wqy-microhei; the test command installs it)")
    if sync_playwright is None:
        return "needs the playwright package (pip install -e .[dev])"
    return None


@dataclass
class Phone:
    """One person's phone: a browser context with its own cookies."""

    name: str
    page: Any
    out: Path
    base: str
    shots: list[Path] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(path if path.startswith("http") else self.base + path)

    def shot(self, step: str) -> Path:
        path = self.out / f"{len(list(self.out.glob('*.png'))) + 1:02d}-{self.name}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def text(self, testid: str) -> str:
        return str(self.page.get_by_test_id(testid).inner_text()).strip()


def serve_sqlite_serially() -> None:
    """With in-memory SQLite the live server's request threads would share one connection (and one
    transaction): serve one request at a time there. Two browsers still race — both requests are in
    flight together and the server decides; on PostgreSQL each request has its own connection."""
    if connection.vendor != "sqlite":
        return

    class SerialServer(WSGIServer):
        def __init__(self, *args: Any, connections_override: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    LiveServerThread.server_class = SerialServer  # type: ignore[assignment]


def launch_chromium() -> Iterator[Any]:
    """Debian's chromium, headless, closed afterwards (the caller has checked :func:`skip_reason`)."""
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def phone_factory(browser: Any, base: str, test_name: str) -> Any:
    out = OUT / re.sub(r"[^\w.-]+", "_", test_name)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()

    def make(name: str) -> Phone:
        ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1, locale="zh-CN",
                                  accept_downloads=True, is_mobile=True, has_touch=True)
        ctx.set_default_timeout(15_000)
        return Phone(name, ctx.new_page(), out, base)

    return make
