"""The vault's database: the catalog, identities and reviews live in one SQLAlchemy 2
database, SQLite under the vault root by default (embedded, no server), PostgreSQL by URL
for a shared deployment.

``Database(url_or_root)`` takes either a directory (the vault root: the database is
``ROOT/catalog.sqlite``, in WAL mode) or a SQLAlchemy URL (``sqlite:///path`` or
``postgresql+psycopg://user@/dbname?host=/socket/dir``). Every change runs in
:meth:`Database.write`, a transaction that serializes the writers of the rows it locks:
on SQLite the transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, the
others wait up to ``busy_timeout``), on PostgreSQL the code locks the rows it decides on
with ``SELECT ... FOR UPDATE``. Reads run in :meth:`Database.read`.

The schema carries a version (table ``vault_schema``); a database written by another
schema version is refused, never migrated silently.

The errors of the catalog, identities and reviews are defined here, under one root,
:class:`CatalogError`, itself a :class:`~vault.errors.VaultError`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, String, create_engine, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from .errors import VaultError

__all__ = [
    "SCHEMA_VERSION", "SQLITE_NAME", "AuthenticationError", "Base", "CatalogError", "Clock",
    "ConfirmationError", "Conflict", "Database", "EventHook", "ExpiredToken", "Forbidden",
    "NotFound", "ReviewError", "RevokedToken", "SchemaVersion", "TransitionError",
    "UnknownToken", "UtcDateTime", "make_event", "utcnow",
]

SCHEMA_VERSION = 1
SQLITE_NAME = "catalog.sqlite"

Clock = Callable[[], datetime]
"""A source of the current time (timezone-aware, UTC); tests pass one they can advance."""


# -- errors --------------------------------------------------------------------------------

class CatalogError(VaultError):
    """Root of the errors of the vault's database: the catalog, identities and reviews (a
    :class:`~vault.errors.VaultError`)."""


class NotFound(CatalogError, LookupError):
    """A provider, dataset, release, episode, identity, lab, token, request or grant that
    does not exist."""


class Conflict(CatalogError):
    """Something that already exists, differently (a release version with another hash, a
    name taken)."""


class Forbidden(CatalogError, PermissionError):
    """The identity may not do this (its roles, the review rules, or no grant)."""


class AuthenticationError(CatalogError):
    """A token that does not authenticate anyone."""


class UnknownToken(AuthenticationError):
    """A token the vault never issued (or not a vault token at all)."""


class ExpiredToken(AuthenticationError):
    """A token past its expiry."""


class RevokedToken(AuthenticationError):
    """A token that was revoked."""


class TransitionError(CatalogError):
    """A review state change that the state machine does not allow from the current state."""


class ReviewError(CatalogError, ValueError):
    """A review action with missing or wrong input (no reason, an unknown stream, ...)."""


class ConfirmationError(ReviewError):
    """A wrong, stale or expired approval confirmation code."""


# -- events -------------------------------------------------------------------------------

EventHook = Callable[[dict[str, Any]], object]
"""Receives one event dict per change (``vault.audit.AuditLog.record`` records it; what the
hook returns is ignored). It runs inside the change's transaction, after the change is
flushed and before it commits: a hook that raises undoes the change, so no change goes
unrecorded."""


def make_event(actor: str, action: str, dataset: str | None, **details: Any) -> dict[str, Any]:
    """An event: who (``actor``, an identity name) did what (``action``), to which dataset
    (``None`` for changes outside any dataset), and the JSON-able ``details``."""
    return {"actor": actor, "action": action, "dataset": dataset, "details": details}


# -- time ----------------------------------------------------------------------------------

def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and read back timezone-aware (SQLite keeps no zone);
    a naive value is refused rather than guessed."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no time zone (the vault stores UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# -- schema ----------------------------------------------------------------------------------

class Base(DeclarativeBase):
    """The declarative base of every table of the vault's database."""


class SchemaVersion(Base):
    """One row: the schema version the database was created with."""

    __tablename__ = "vault_schema"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    software: Mapped[str] = mapped_column(String(64))


# the modules that define tables on Base, imported before the schema is created
_MODEL_MODULES = ("vault.catalog", "vault.identities", "vault.review", "vault.jobs.models",
                  "vault.jobs.outputs_tables")


def _url(url_or_root: str | Path) -> URL:
    text = str(url_or_root)
    if "://" in text:
        try:
            url = make_url(text)
        except ArgumentError as exc:
            raise CatalogError(f"database URL {text!r} does not parse: {exc}") from exc
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise CatalogError(f"database URL {text!r}: backend {url.get_backend_name()!r} is "
                               "not supported (sqlite or postgresql)")
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # the driver the vault extra installs
        elif url.get_backend_name() == "postgresql" and url.drivername != "postgresql+psycopg":
            raise CatalogError(f"database URL {text!r}: driver {url.get_driver_name()!r} is not "
                               "supported; use postgresql+psycopg://")
        return url
    root = Path(text)
    if root.exists() and not root.is_dir():
        raise CatalogError(f"vault root {root} exists and is not a directory")
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # readable by its owner only (SQLite gives the -wal and -shm files the same mode)
        os.close(os.open(root / SQLITE_NAME, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise CatalogError(f"vault root {root}: cannot create the catalog: {exc}") from exc
    return URL.create("sqlite", database=str(root / SQLITE_NAME))


class Database:
    """The engine and sessions of the vault's database; creates the schema on first use.

    ``url_or_root``: a vault root directory (SQLite at ``ROOT/catalog.sqlite``) or a
    SQLAlchemy URL. ``clock``: the time source of every timestamp and expiry."""

    def __init__(self, url_or_root: str | Path, *, clock: Clock = utcnow,
                 busy_timeout_s: float = 30.0) -> None:
        self.url = _url(url_or_root)
        self.clock = clock
        self.backend = self.url.get_backend_name()
        if self.backend == "sqlite":
            engine = create_engine(self.url, connect_args={"timeout": busy_timeout_s})
            _sqlite_pragmas(engine, busy_timeout_s)
        else:
            engine = create_engine(self.url, pool_pre_ping=True)
        self.engine: Engine = engine
        self._writer = engine.execution_options(vault_begin="IMMEDIATE")
        self._read_sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(bind=self._writer, expire_on_commit=False)
        self._create_schema()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def _create_schema(self) -> None:
        for name in _MODEL_MODULES:
            importlib.import_module(name)
        where = self.url.render_as_string(hide_password=True)
        try:
            Base.metadata.create_all(self._writer)
            with self.write() as s:
                row = s.scalars(select(SchemaVersion)).first()
                if row is None:
                    from demofab import __version__

                    s.add(SchemaVersion(id=1, version=SCHEMA_VERSION, created_at=self.clock(),
                                        software=f"demofab {__version__}"))
                elif row.version != SCHEMA_VERSION:
                    raise CatalogError(f"{where}: the vault database has schema version "
                                       f"{row.version}; this DemoFab reads version "
                                       f"{SCHEMA_VERSION}")
        except SQLAlchemyError as exc:
            raise CatalogError(f"{where}: cannot open the vault database: {exc}") from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end (it changes nothing). A database
        failure is a :class:`CatalogError` naming the database."""
        try:
            with self._read_sessions() as session:
                try:
                    yield session
                finally:
                    session.rollback()
        except SQLAlchemyError as exc:
            raise self._failure(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes commit when the block ends without an error and roll
        back when it raises. On SQLite it holds the database's write lock from its start.
        A constraint the change breaks (a name taken at the same moment by another writer)
        is a :class:`Conflict`; any other database failure a :class:`CatalogError`."""
        try:
            with self._write_sessions() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: SQLAlchemyError) -> CatalogError:
        where = self.url.render_as_string(hide_password=True)
        detail = getattr(exc, "orig", None) or exc
        if isinstance(exc, IntegrityError):
            return Conflict(f"{where}: the change conflicts with what the database holds: {detail}")
        return CatalogError(f"{where}: database error: {detail}")

    def dispose(self) -> None:
        """Close every pooled connection (the files stay)."""
        self.engine.dispose()


def _sqlite_pragmas(engine: Engine, busy_timeout_s: float) -> None:
    """WAL, foreign keys, a busy timeout; transactions begun by hand so that a writer takes
    the lock at BEGIN (``BEGIN IMMEDIATE``), not at its first write, where two readers
    turning writers would deadlock."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("vault_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
