"""Fixtures the vault's database tests share, imported explicitly by the test modules:

* ``postgres_server``: one throwaway PostgreSQL server per test session, started by
  tools/postgres.sh on a Unix socket in a temporary directory and stopped at the end. When
  the PostgreSQL binaries are missing it FAILS (CI installs them with tools/system-deps.sh);
  it never skips.
* ``database_url``: a fresh, empty database per test on each backend, parametrized:
  ``sqlite`` (a vault root directory) and ``postgresql`` (a new database on the server,
  a copy of one where the vault created its empty schema).
* ``release_dir``: a real release of three episodes, recorded by the synthetic rig and
  curated, shared by the session.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["BACKENDS", "Clock", "ROOT", "SCRIPT", "database_url", "postgres_server", "release_dir",
           "start_server", "stop_server"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "postgres.sh"
BACKENDS = ("sqlite", "postgresql")

_SERVER = pytest.StashKey[str]()
_TEMPLATE = pytest.StashKey[str]()
_counter = itertools.count()



@dataclass
class Clock:
    """A clock the tests move forward by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 3, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def start_server(workdir: str, env: dict[str, str] | None = None) -> str:
    """Start a server in ``workdir`` with tools/postgres.sh and return its URL; the test
    FAILS (never skips) when it cannot, with the script's reason and what to install."""
    run = subprocess.run(["bash", str(SCRIPT), "start", workdir], capture_output=True, text=True,
                         timeout=120, check=False, env=env)
    if run.returncode != 0:
        pytest.fail(f"tools/postgres.sh could not start a PostgreSQL server (exit {run.returncode})"
                    f": {run.stderr.strip()}\nInstall the server with tools/system-deps.sh (as "
                    "root); the vault's catalog tests need it.", pytrace=False)
    return run.stdout.strip().splitlines()[-1]


def stop_server(workdir: str) -> None:
    """Stop the server in ``workdir`` (if any) and remove the directory."""
    subprocess.run(["bash", str(SCRIPT), "stop", workdir], capture_output=True, timeout=120,
                   check=False)
    shutil.rmtree(workdir, ignore_errors=True)


def _start(config: pytest.Config) -> str:
    if _SERVER in config.stash:
        return config.stash[_SERVER]
    # in /tmp (not pytest's 0700 tree): the server runs as user postgres when we are root
    workdir = tempfile.mkdtemp(prefix="demofab-pg-")
    try:
        url = start_server(workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    config.add_cleanup(lambda: stop_server(workdir))
    config.stash[_SERVER] = url
    return url


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> str:
    """The URL of the session's PostgreSQL server (its ``postgres`` database); one server
    for the whole session, however many modules import this fixture."""
    return _start(request.config)


def _template(config: pytest.Config, server: str) -> str:
    """A database holding the vault's empty schema, copied for each test (a copy is much
    faster than creating the tables again)."""
    if _TEMPLATE in config.stash:
        return config.stash[_TEMPLATE]
    from vault.db import Database

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "vault_template"'))
    finally:
        admin.dispose()
    Database(make_url(server).set(database="vault_template").render_as_string(
        hide_password=False)).dispose()
    config.stash[_TEMPLATE] = "vault_template"
    return "vault_template"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a vault root directory (SQLite) or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "vault")
        return
    server = request.getfixturevalue("postgres_server")
    template = _template(request.config, server)
    name = f"t{next(_counter)}_{tmp_path.name.lower().replace('-', '_')}"[:60]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A curated release ``pick/v1``: three half-second episodes of the humanoid profile
    (joint states, commands, IMU, teleop poses, TF, three cameras)."""
    from curation.pipeline import curate
    from recorder.control import Plan, Recorder
    from recorder.profile import load_profile
    from recorder.session import Session
    from recorder.sources.synthetic import RigOptions, SyntheticRig

    out = tmp_path_factory.mktemp("release")
    profile = load_profile("humanoid")
    session = Session(out / "session", profile)
    source = SyntheticRig(profile, RigOptions(seed=3, start_ns=1_750_000_000_000_000_000))
    Recorder(session, source, Plan(episodes=3, episode_seconds=0.5, task="stack cups",
                                   operator="op1")).run(handle_signals=False)
    return curate([out / "session"], out / "releases", "pick").release


@contextlib.contextmanager
def serve_on_localhost(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yields
    ``127.0.0.1:PORT``. The socket is made with IPPROTO_TCP so that uvicorn turns Nagle off
    (a plain ``socket.socket()`` costs ~40 ms per keep-alive request: uvicorn #3149)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert srv.started, "the test server did not start in 10 s"
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(5)
        sock.close()
