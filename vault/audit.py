"""The audit log: an append-only RFC 6962 Merkle log of every access, with C2SP signed
checkpoints that a provider can cosign, keep, and check the log against offline.

Each entry is one compact JSON object, its leaf in the tree::

    {"index":41,"prev":"<hex leaf hash of entry 40>","time":"2026-12-03T11:20:01.123456Z",
     "actor":"lab:acme/alice","action":"pull","dataset":"kitchen","details":{...}}

Entries live in SQLite under the vault root (``ROOT/audit/log.sqlite``, WAL, one
transaction per append) beside their leaf hashes and the signed checkpoints. An entry
carries its own index and the hash of the entry before it, so an edited, dropped or
reordered entry is pinned to its index even when the stored hashes were rewritten too;
whatever a rewrite of the derived data hides, the signed checkpoints catch.

Durability: appends commit with ``synchronous=NORMAL`` by default (a process crash loses
nothing; a power cut can lose the appends since the last sync), and every checkpoint is
committed with a full sync of the WAL first, so nothing a checkpoint signed can be lost.
``sync="full"`` syncs every append.

:func:`verify` checks a log offline: it recomputes every leaf and the tree, checks every
checkpoint's signature and root, and a checkpoint the provider kept (its signature, its
cosignatures, that the log still holds it, and the consistency proof from it to the
log's head). It reports the FIRST bad entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from demofab.durable import atomic_write

from .errors import FormatError, LogTamperError, ProofError, VaultError
from .merkle import EMPTY_ROOT, MerkleTree, leaf_hash, verify_consistency
from .note import COSIGNATURE_V1, ED25519, Checkpoint, Signer, Verifier, cosign, open_note

__all__ = ["FORMAT", "AuditLog", "Entry", "VerifyReport", "cosign_checkpoint", "latest_checkpoint",
           "log_path", "show", "verify"]

FORMAT = 1
_ZERO = bytes(32)
_ACTION_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (idx INTEGER PRIMARY KEY, body BLOB NOT NULL, leaf BLOB NOT NULL,
                      dataset TEXT);
CREATE INDEX entries_dataset ON entries (dataset, idx);
CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
"""


def log_path(root: str | Path) -> Path:
    """Where the audit log of the vault at ``root`` lives."""
    return Path(root) / "audit" / "log.sqlite"


def _event(actor: object, action: object, dataset: object, details: object) -> dict[str, Any]:
    """An entry's fields after the index and the chain hash, checked."""
    if not isinstance(actor, str) or not actor:
        raise VaultError(f"an audit entry's actor is a non-empty string, not {actor!r}")
    if not isinstance(action, str) or not _ACTION_RE.fullmatch(action):
        raise VaultError(f"an audit action is a lower-case name like 'pull' or "
                         f"'grant.revoke', not {action!r}")
    if dataset is not None and not isinstance(dataset, str):
        raise VaultError(f"an audit entry's dataset is a string or None, not {dataset!r}")
    if details is not None and not isinstance(details, Mapping):
        raise VaultError(f"audit details are a mapping, not {type(details).__name__}")
    info = dict(details or {})
    try:
        json.dumps(info, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise VaultError(f"audit details are JSON (str, numbers, lists, dicts): {exc}") from exc
    return {"time": "", "actor": actor, "action": action, "dataset": dataset, "details": info}


def _format_time(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns // 1000 % 10**6)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _body(index: int, prev: bytes, rest: Mapping[str, Any]) -> bytes:
    head = b'{"index":%d,"prev":"%s",' % (index, prev.hex().encode())
    return head + json.dumps(rest, separators=(",", ":"), ensure_ascii=True).encode()[1:]


@dataclass(frozen=True)
class Entry:
    """One audit entry: who did what to which dataset, when, with details. ``body`` is the
    exact leaf bytes; ``prev`` the leaf hash of the entry before (zeros for entry 0)."""

    index: int
    time: str
    actor: str
    action: str
    dataset: str | None
    details: Mapping[str, Any]
    prev: bytes = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def leaf_hash(self) -> bytes:
        """The RFC 6962 leaf hash of this entry."""
        return leaf_hash(self.body)

    @classmethod
    def from_body(cls, body: bytes) -> Entry:
        """Parse an entry's leaf bytes."""
        try:
            d = json.loads(body)
            return cls(int(d["index"]), str(d["time"]), str(d["actor"]), str(d["action"]),
                       d.get("dataset"), d.get("details") or {}, bytes.fromhex(d["prev"]),
                       bytes(body))
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"an audit entry is malformed ({exc}): {body[:120]!r}") from exc

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-able fields (without the chain hash)."""
        return {"index": self.index, "time": self.time, "actor": self.actor,
                "action": self.action, "dataset": self.dataset, "details": dict(self.details)}


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise VaultError(f"no audit log at {path}")
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             isolation_level=None, check_same_thread=False)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    return db


def _read_meta(db: sqlite3.Connection, path: Path) -> dict[str, str]:
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise FormatError(f"{path} is not an audit log ({exc})") from exc
    if meta.get("format") != str(FORMAT):
        raise FormatError(f"{path}: audit log format {meta.get('format')!r}; this vault "
                          f"reads format {FORMAT}")
    return meta


class AuditLog:
    """An open audit log. Thread-safe; several processes may append to one log (each
    append reads the log's end inside its own write transaction).

    ``signer`` (the log's Ed25519 key, see :meth:`create`) is needed to sign checkpoints;
    one is signed every ``checkpoint_every`` entries (None: only on :meth:`checkpoint`)."""

    def __init__(self, root: str | Path, *, signer: Signer | None = None,
                 checkpoint_every: int | None = 1000,
                 sync: Literal["normal", "full"] = "normal",
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.root = Path(root)
        self.path = log_path(self.root)
        if not self.path.exists():
            raise VaultError(f"no audit log at {self.path} (create it with AuditLog.create)")
        if sync not in ("normal", "full"):
            raise VaultError(f"sync is 'normal' or 'full', not {sync!r}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise VaultError(f"checkpoint_every is >= 1 or None, not {checkpoint_every}")
        self._db = _connect(self.path, readonly=False)
        meta = _read_meta(self._db, self.path)
        self.origin = meta["origin"]
        self.verifier = Verifier.from_vkey(meta["vkey"])
        if signer is not None and signer.verifier() != self.verifier:
            self._db.close()
            raise VaultError(f"the signer {signer.verifier().vkey()} is not this log's key "
                             f"{self.verifier.vkey()} ({self.path})")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._sync = sync
        self._db.execute(f"PRAGMA synchronous = {sync.upper()}")
        self.signer = signer
        self.checkpoint_every = checkpoint_every if signer is not None else None
        self._clock = clock
        self._lock = threading.RLock()
        self._tree = MerkleTree()

    @classmethod
    def create(cls, root: str | Path, signer: Signer, *, checkpoint_every: int | None = 1000,
               sync: Literal["normal", "full"] = "normal",
               clock: Callable[[], int] = time.time_ns) -> AuditLog:
        """Create the audit log of the vault at ``root``, signed by ``signer`` (an Ed25519
        note key whose name is the log's origin); its verifier key is also written to
        ``ROOT/audit/log.vkey`` for providers. Refused if the log exists."""
        if signer.sig_type != ED25519:
            raise VaultError("a log signs its checkpoints with an Ed25519 note key (type 0x01)")
        path = log_path(root)
        if path.exists():
            raise VaultError(f"an audit log exists already at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            vkey = signer.verifier().vkey()
            db.executemany("INSERT INTO meta VALUES (?, ?)",
                           [("format", str(FORMAT)), ("origin", signer.name), ("vkey", vkey)])
            db.execute("COMMIT")
        finally:
            db.close()
        atomic_write(path.with_name("log.vkey"), vkey + "\n")
        return cls(root, signer=signer, checkpoint_every=checkpoint_every, sync=sync,
                   clock=clock)

    # -- appending ----------------------------------------------------------------------
    def append(self, actor: str, action: str, *, dataset: str | None = None,
               details: Mapping[str, Any] | None = None) -> Entry:
        """Record one event, durable (see the module's note on sync) when this returns."""
        return self._insert(_event(actor, action, dataset, details))

    def _insert(self, rest: dict[str, Any]) -> Entry:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT idx, leaf FROM entries ORDER BY idx DESC LIMIT 1"
                                 ).fetchone()
                index, prev = (row[0] + 1, bytes(row[1])) if row else (0, _ZERO)
                rest["time"] = _format_time(self._clock())
                body = _body(index, prev, rest)
                db.execute("INSERT INTO entries VALUES (?, ?, ?, ?)",
                           (index, body, leaf_hash(body), rest["dataset"]))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            entry = Entry(index, rest["time"], rest["actor"], rest["action"], rest["dataset"],
                          rest["details"], prev, body)
            if self.checkpoint_every and (index + 1) % self.checkpoint_every == 0:
                self.checkpoint()
            return entry

    def record(self, event: Mapping[str, Any]) -> Entry:
        """:meth:`append` of an event mapping (``actor``, ``action``, optional ``dataset``
        and ``details``): the catalog's ``on_event`` hook is ``log.record``."""
        extra = set(event) - {"actor", "action", "dataset", "details"}
        if extra:
            raise VaultError(f"an audit event has actor, action, dataset and details, not "
                             f"{sorted(extra)}")
        return self._insert(_event(event.get("actor"), event.get("action"),
                                   event.get("dataset"), event.get("details")))

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Record several events in one transaction (an import, a batch of job events):
        each is a mapping with ``actor``, ``action`` and optional ``dataset`` and
        ``details``, and becomes its own entry. The checkpoints due inside the batch are
        signed with it. Returns the log's new size."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT idx, leaf FROM entries ORDER BY idx DESC LIMIT 1"
                                 ).fetchone()
                start, prev = (row[0] + 1, bytes(row[1])) if row else (0, _ZERO)
                index = start
                rows = []
                for event in events:
                    rest = _event(event.get("actor"), event.get("action"),
                                  event.get("dataset"), event.get("details"))
                    rest["time"] = _format_time(self._clock())
                    body = _body(index, prev, rest)
                    prev = leaf_hash(body)
                    rows.append((index, body, prev, rest["dataset"]))
                    index += 1
                db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            every = self.checkpoint_every
            if every and index // every > start // every:
                self._checkpoint_sizes(range((start // every + 1) * every, index + 1, every))
            return index

    def flush(self) -> None:
        """Make every append so far durable (an fsync of the WAL)."""
        with self._lock:
            self._db.execute("PRAGMA synchronous = FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('synced', ?)",
                                 (str(self.size),))
                self._db.execute("COMMIT")
            finally:
                self._db.execute(f"PRAGMA synchronous = {self._sync.upper()}")

    # -- reading ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of entries."""
        with self._lock:
            row = self._db.execute("SELECT max(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _synced_tree(self) -> MerkleTree:
        """The in-memory tree, caught up with the entries in the database."""
        tree = self._tree
        for idx, leaf in self._db.execute("SELECT idx, leaf FROM entries WHERE idx >= ? "
                                          "ORDER BY idx", (tree.size,)):
            if idx != tree.size:
                raise LogTamperError(f"audit log {self.path}: entry {tree.size} is missing",
                                     entry=tree.size)
            tree.append(bytes(leaf))
        return tree

    def head(self) -> Checkpoint:
        """The log's current tree head (unsigned)."""
        with self._lock:
            tree = self._synced_tree()
            return Checkpoint(self.origin, tree.size, tree.root())

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        """Entries ``start..stop-1`` in order."""
        end = (1 << 62) if stop is None else stop
        with self._lock:
            rows = self._db.execute("SELECT body FROM entries WHERE idx >= ? AND idx < ? "
                                    "ORDER BY idx", (start, end)).fetchall()
        for (body,) in rows:
            yield Entry.from_body(_as_bytes(body))

    def entry(self, index: int) -> Entry:
        """Entry ``index``."""
        with self._lock:
            row = self._db.execute("SELECT body FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise VaultError(f"audit log {self.path} has no entry {index} (size {self.size})")
        return Entry.from_body(_as_bytes(row[0]))

    def show(self, dataset: str) -> list[Entry]:
        """Every entry about ``dataset``, in order."""
        with self._lock:
            return _show(self._db, dataset)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 6962 audit path of entry ``index`` in the tree of ``size`` entries."""
        with self._lock:
            return self._synced_tree().inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 6962 consistency proof from ``old_size`` entries to ``new_size``."""
        with self._lock:
            return self._synced_tree().consistency_proof(old_size, new_size)

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> str:
        """Sign a checkpoint of the log as it is now (durably stored before it is
        returned) and return it as a C2SP signed note; the same note again when no entry
        came since the last one."""
        if self.signer is None:
            raise VaultError(f"audit log {self.path} was opened without its signing key: "
                             f"it cannot sign checkpoints")
        return self._checkpoint_sizes(None)[-1]

    def _checkpoint_sizes(self, sizes: Iterable[int] | None) -> list[str]:
        """Sign and store checkpoints at ``sizes`` (None: the current size), in one
        transaction committed with a full sync."""
        assert self.signer is not None
        with self._lock:
            db = self._db
            db.execute("PRAGMA synchronous = FULL")
            notes: list[str] = []
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    tree = self._synced_tree()
                    for size in [tree.size] if sizes is None else sizes:
                        row = db.execute("SELECT note FROM checkpoints WHERE size = ?",
                                         (size,)).fetchone()
                        if row is not None:
                            notes.append(str(row[0]))
                            continue
                        cp = Checkpoint(self.origin, size, tree.root(size))
                        notes.append(cp.sign(self.signer))
                        db.execute("INSERT INTO checkpoints VALUES (?, ?)", (size, notes[-1]))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            finally:
                db.execute(f"PRAGMA synchronous = {self._sync.upper()}")
            return notes

    def latest_checkpoint(self) -> str | None:
        """The newest signed checkpoint, or None."""
        with self._lock:
            row = self._db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1"
                                   ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _show(db: sqlite3.Connection, dataset: str) -> list[Entry]:
    rows = db.execute("SELECT body FROM entries WHERE dataset = ? ORDER BY idx", (dataset,))
    found = [Entry.from_body(_as_bytes(body)) for (body,) in rows]
    return [e for e in found if e.dataset == dataset]


def latest_checkpoint(root: str | Path) -> str | None:
    """The newest signed checkpoint of the vault's log at ``root`` (read only), for a
    provider to check and cosign; None when none was signed yet."""
    path = log_path(root)
    db = _connect(path, readonly=True)
    try:
        _read_meta(db, path)
        row = db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])
    finally:
        db.close()


def show(root: str | Path, dataset: str) -> list[Entry]:
    """Every access to ``dataset`` recorded in the audit log of the vault at ``root``."""
    path = log_path(root)
    db = _connect(path, readonly=True)
    try:
        _read_meta(db, path)
        return _show(db, dataset)
    finally:
        db.close()


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found. ``ok`` when nothing is wrong; otherwise ``problem`` says
    what and ``first_bad`` is the first bad entry (None when the fault is not in an entry,
    e.g. a forged checkpoint)."""

    ok: bool
    size: int
    root_hash: bytes
    checkpoints: int
    unsigned: int
    kept: Checkpoint | None = None
    cosigners: tuple[str, ...] = ()
    first_bad: int | None = None
    problem: str | None = None

    def summary(self) -> str:
        """One paragraph for a person."""
        if not self.ok:
            return f"audit log NOT intact: {self.problem}"
        text = (f"audit log intact: {self.size} entries, root "
                f"{base64.b64encode(self.root_hash).decode()}, {self.checkpoints} signed "
                f"checkpoints verified")
        if self.unsigned:
            text += f", {self.unsigned} entries after the last checkpoint (not yet signed)"
        if self.kept is not None:
            text += (f"; the kept checkpoint of {self.kept.size} entries is consistent with "
                     f"the log")
            if self.cosigners:
                text += f", cosigned by {', '.join(self.cosigners)}"
        return text


class _Bad(Exception):
    def __init__(self, message: str, entry: int | None) -> None:
        super().__init__(message)
        self.entry = entry


def _check_note(note: str, keys: Sequence[Verifier], origin: str, what: str,
                ) -> tuple[Checkpoint, dict[str, int | None]]:
    try:
        text, signed = open_note(note, list(keys))
        cp = Checkpoint.parse(text)
    except (ProofError, FormatError) as exc:
        raise _Bad(f"{what}: {exc}", None) from exc
    if cp.origin != origin:
        raise _Bad(f"{what} is for log {cp.origin!r}, not {origin!r}", None)
    return cp, signed


def verify(root: str | Path, checkpoint: str | Path | None = None, *,
           keys: Sequence[str] = ()) -> VerifyReport:
    """Check the audit log of the vault at ``root`` offline.

    ``checkpoint`` is a signed checkpoint the provider kept (a note, or a file holding
    one). ``keys`` are verifier keys the caller trusts: Ed25519 log keys (then used
    instead of the key recorded in the log, which whoever holds the disk could replace)
    and cosigner keys (type 0x04), whose cosignatures on the kept checkpoint must verify.
    """
    path = log_path(root)
    db = _connect(path, readonly=True)
    try:
        meta = _read_meta(db, path)
        origin = meta["origin"]
        trusted = [Verifier.from_vkey(k) for k in keys]
        log_keys = [v for v in trusted if v.sig_type == ED25519] or [Verifier.from_vkey(meta["vkey"])]
        cosigner_keys = [v for v in trusted if v.sig_type != ED25519]
        kept_note: str | None = None
        if checkpoint is not None:
            kept_note = (checkpoint if isinstance(checkpoint, str) and "\n" in checkpoint
                         else Path(checkpoint).read_text(encoding="utf-8"))
        stored = db.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()
        rows = db.execute("SELECT idx, body, leaf FROM entries ORDER BY idx")
        tree, cps, bad = _scan(rows, stored, log_keys, origin)
        kept: Checkpoint | None = None
        cosigners: tuple[str, ...] = ()
        try:
            if bad is not None:
                raise bad
            if kept_note is not None:
                kept, signed = _check_note(kept_note, log_keys + cosigner_keys, origin,
                                           "the kept checkpoint")
                if not any(k.name in signed for k in log_keys):
                    raise _Bad("the kept checkpoint is not signed by the log's key "
                               f"({', '.join(k.vkey() for k in log_keys)})", None)
                missing = [k.name for k in cosigner_keys if k.name not in signed]
                if missing:
                    raise _Bad(f"the kept checkpoint carries no cosignature by "
                               f"{', '.join(missing)}", None)
                cosigners = tuple(k.name for k in cosigner_keys)
                _check_kept(kept, tree, stored)
        except _Bad as exc:
            return VerifyReport(False, tree.size, tree.root(), cps, 0, kept, cosigners,
                                exc.entry, str(exc))
        last = stored[-1][0] if stored else 0
        return VerifyReport(True, tree.size, tree.root(), cps, tree.size - last, kept,
                            cosigners)
    except sqlite3.DatabaseError as exc:
        raise FormatError(f"{path} cannot be read as an audit log: {exc}") from exc
    finally:
        db.close()


def _scan(rows: Iterable[tuple[int, bytes, bytes]], stored: list[tuple[int, str]],
          log_keys: Sequence[Verifier], origin: str) -> tuple[MerkleTree, int, _Bad | None]:
    """Recompute the log: every entry's place, chain hash and leaf hash up to the first
    bad entry, then the tree over the good ones and every stored checkpoint within it.
    Return (tree, checkpoints checked, the first fault or None).

    A checkpoint that does not match comes before a bad entry after it: the checkpoint
    proves an earlier entry changed."""
    sha256 = hashlib.sha256
    leaves: list[bytes] = []
    bad: _Bad | None = None
    prev = _ZERO
    try:
        for position, (idx, body, leaf) in enumerate(rows):
            if idx != position:
                raise _Bad(f"entry {position} is missing (dropped): the log goes from entry "
                           f"{position - 1} to entry {idx}", position)
            if type(body) is not bytes:
                body = _as_bytes(body)
            if not body.startswith(b'{"index":%d,"prev":"%s",' % (position, prev.hex().encode())):
                _bad_head(body, position, prev)
            computed = sha256(b"\x00" + body).digest()
            if computed != leaf:
                raise _Bad(f"entry {position} was edited: its content hashes to "
                           f"{computed.hex()[:16]}..., the log recorded "
                           f"{_as_bytes(leaf).hex()[:16]}...", position)
            leaves.append(computed)
            prev = computed
    except _Bad as exc:
        bad = exc
    tree = MerkleTree.from_leaf_hashes(leaves)
    good = checked = 0  # good: size of the last stored checkpoint that matched
    try:
        for size, note in stored:
            if size > tree.size:
                if bad is None:
                    raise _Bad(f"entry {tree.size} is missing: a checkpoint was signed for "
                               f"{size} entries and the log holds {tree.size} (rolled back or "
                               f"truncated)", tree.size)
                break
            good = _check_stored(size, note, tree, log_keys, origin, good)
            checked += 1
    except _Bad as exc:
        return tree, checked, exc
    return tree, checked, bad


def _as_bytes(value: object) -> bytes:
    """A BLOB column's value; an edit through SQL may have made it TEXT or a number."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _bad_head(body: bytes, position: int, prev: bytes) -> None:
    try:
        entry = Entry.from_body(body)
    except FormatError as exc:
        raise _Bad(f"entry {position} was edited: {exc}", position) from exc
    if entry.index != position:
        raise _Bad(f"entry {position} is not where it belongs: the log holds entry "
                   f"{entry.index} in its place (entries dropped or reordered)", position)
    if entry.prev != prev:
        raise _Bad(f"entry {max(position - 1, 0)} was edited: entry {position} records hash "
                   f"{entry.prev.hex()[:16]}... for it, it hashes to {prev.hex()[:16]}...",
                   max(position - 1, 0))
    raise _Bad(f"entry {position} was edited: its head is not in the log's form", position)


def _check_stored(size: int, note: str, tree: MerkleTree, log_keys: Sequence[Verifier],
                  origin: str, good: int) -> int:
    cp, _ = _check_note(note, log_keys, origin, f"the checkpoint of {size} entries")
    if cp.size != size:
        raise _Bad(f"the checkpoint stored for {size} entries signs {cp.size}", None)
    if cp.root_hash != tree.root(size):
        raise _Bad(f"entries {good}..{size - 1} are not what the checkpoint of {size} entries "
                   f"signed: one of them was changed (the first bad entry is at or after "
                   f"entry {good})", good)
    return size


def _check_kept(kept: Checkpoint, tree: MerkleTree, stored: list[tuple[int, str]]) -> None:
    if kept.size > tree.size:
        raise _Bad(f"entry {tree.size} is missing: the kept checkpoint has {kept.size} "
                   f"entries and the log holds {tree.size} (rolled back)", tree.size)
    root = tree.root(kept.size)
    if kept.root_hash != root:
        good = max((s for s, _ in stored if s < kept.size), default=0)
        fork = ""
        if any(s == kept.size for s, _ in stored):
            fork = (f"; the log also signed another tree of {kept.size} entries, the one it "
                    f"holds now: it forked")
        raise _Bad(f"entries {good}..{kept.size - 1} are not what the kept checkpoint of "
                   f"{kept.size} entries signed: one of them was changed (the first bad "
                   f"entry is at or after entry {good}){fork}", good)
    try:
        verify_consistency(kept.size, tree.size, kept.root_hash,
                           tree.root() if tree.size else EMPTY_ROOT,
                           tree.consistency_proof(kept.size))
    except ProofError as exc:
        raise _Bad(f"the log is not an extension of the kept checkpoint: {exc}", None) from exc


def cosign_checkpoint(root: str | Path, cosigner: Signer, *, checkpoint: str | None = None,
                      previous: str | None = None, keys: Sequence[str] = ()) -> str:
    """What a provider does before it cosigns: check the log at ``root`` offline, against
    ``previous`` (the checkpoint it kept last time, which must carry its own
    cosignature) when given; check that ``checkpoint`` (default: the log's newest) is
    signed by the log and is the log's tree at its size, so it extends ``previous``; then
    cosign it. Returns the cosigned note, to keep. ``keys`` are trusted log keys, as for
    :func:`verify`. Raises LogTamperError naming the first bad entry when a check fails."""
    if cosigner.sig_type != COSIGNATURE_V1:
        raise VaultError(f"key {cosigner.name} is not a cosigner key (type 0x04)")
    own = cosigner.verifier().vkey()
    note = latest_checkpoint(root) if checkpoint is None else checkpoint
    if note is None:
        raise VaultError(f"the log at {log_path(root)} has no signed checkpoint to cosign")
    for kept, trusted in ((previous, [*keys, own]), (note, list(keys))):
        if kept is None:
            continue
        report = verify(root, kept, keys=trusted)
        if not report.ok:
            raise LogTamperError(f"not cosigned: {report.problem}", entry=report.first_bad)
    return cosign(note, cosigner)
