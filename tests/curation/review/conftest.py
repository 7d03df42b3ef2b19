"""Fixtures for the review page's browser tests: a small release curated from real MCAP
sessions of the synthetic rig, the review server on a free 127.0.0.1 port in a thread, and
Debian's chromium driven by Playwright (``executable_path=/usr/bin/chromium``; no browser is
ever downloaded; tools/system-deps.sh installs chromium in CI).

Screenshots go to ``test-artifacts/review/`` at the repository root (ignored by git)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import T0, record_session

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "review"
NAME = "demo"
_saved: list[Path] = []  # screenshots saved in this run


@dataclass
class ReviewSite:
    """A running review server over ``releases/NAME``; ``labels`` is the file it writes."""
    url: str
    releases: Path
    release: Path
    labels: Path
    sessions: list[Path]


@pytest.fixture(scope="session")
def review_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Two sessions (alice: three clean episodes; bob: one with lost messages and the head
    camera unplugged for 0.5 s) curated into ``releases/demo/v1``."""
    from curation import curate

    base = tmp_path_factory.mktemp("review")
    alice = record_session(base / "s_alice", episodes=3, seconds=1.5, operator="alice",
                           task="stack cups")
    bob = record_session(base / "s_bob", episodes=1, seconds=2.0, operator="bob",
                         task="wipe table", seed=5, start_ns=T0 + 100 * 10**9, drop_rate=0.2,
                         stalls={"/camera/head/image_raw/compressed": (0.5, 0.5)})
    curate([alice, bob], base / "releases", NAME)
    return [alice, bob], base / "releases"


def serve_in_thread(app: Any) -> tuple[Any, threading.Thread, str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port; returns (server, thread, base URL)."""
    import uvicorn

    # proto IPPROTO_TCP, or asyncio leaves Nagle on for the accepted connections and each
    # keep-alive request waits ~40 ms on a delayed ACK (uvicorn issue 3149)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the review server did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def review_site(review_sources: tuple[list[Path], Path], tmp_path: Path) -> Iterator[ReviewSite]:
    """The review server over a fresh copy of the release, so that each test starts with no
    labels written."""
    from curation.review import create_app

    sessions, releases = review_sources
    copy = tmp_path / "releases"
    shutil.copytree(releases, copy)
    release = sorted((copy / NAME).glob("v*"))[-1]
    labels = tmp_path / "review-labels.yaml"
    app = create_app(copy / NAME, labels_path=labels, cache_dir=tmp_path / "review-cache")
    server, thread, url = serve_in_thread(app)
    try:
        yield ReviewSite(url, copy, release, labels, sessions)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (tools/system-deps.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def expected_errors() -> list[str]:
    """Paths whose failed loads a test expects (a refused POST): the console errors that
    name them do not fail the test."""
    return []


@pytest.fixture
def page(browser: Any, expected_errors: list[str]) -> Iterator[Any]:
    """A fresh page; a JavaScript error on it fails the test, and every request that leaves
    127.0.0.1 is refused (and fails the test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    outside: list[str] = []

    def route(r: Any) -> None:
        host = r.request.url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(m: Any) -> None:
        url = m.location.get("url", "")
        if m.type == "error" and not any(url.endswith(e) for e in ["/favicon.ico", *expected_errors]):
            errors.append(f"{m.text} ({url})")

    pg.on("console", console)
    try:
        yield pg
    finally:
        context.close()
    assert not outside, f"the page asked for addresses off this machine: {outside}"
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as test-artifacts/review/NAME.png and print its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    _saved.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        terminalreporter.write_line(f"review page screenshots ({len(_saved)}): {ARTIFACTS}")
