"""The vault as a service: its root, its keys, and the one place where the catalog, the
identities, the review workflow, the object store and the audit log meet.

Root layout (``ROOT``)::

    vault.json          this vault's settings: format, the key files' paths (not the keys)
    catalog.sqlite      the catalog, identities and reviews (unless a PostgreSQL URL is given)
    objects/            the encrypted objects (:class:`~vault.store.ObjectStore`)
    keys/<dataset>.json each dataset's data key, wrapped by the provider key
    audit/log.sqlite    the audit log (and ``log.vkey``, its verifier key)

The provider key file and the log's signing key file live OUTSIDE the root, mode 0600
(:func:`init_vault` makes them); a vault refuses to open without them: there is no
default secret.

A release is ingested (:meth:`Vault.ingest_release`) as encrypted objects ``v<N>/<path>``,
one per file, plus an encrypted file index (``index-v<N>/files.json``) that says, for
each file, which stream(s) it belongs to and, for a Zarr shard, which byte ranges hold
the rows of which episodes (computed from the plaintext release at ingest, so nothing
needs decrypting to decide a pull).

Enforcing a grant (:meth:`Vault.open_file`):

* **streams**: every file under ``streams/<name>/`` of a stream the grant does not hold is
  refused, and ``sync/<a>__to__<b>`` needs both ``a`` and ``b``; ``stats.json`` is served
  with the granted streams' statistics only;
* **episodes**: a byte range of a shard file is served only when every inner chunk it
  touches holds rows of granted episodes only (the shard index at the end of the file is
  free), so a loader that reads the shard index and the chunks of its episodes (Zarr's
  sharding codec with HTTP Range) gets what it may, and a whole-file read of a shard that
  mixes in other episodes' rows is refused. ``episodes.json`` is served with the granted
  rows only; ``stats.json`` is refused (its statistics mix in every episode);
  ``episode_bounds`` is served whole (it reveals the row count of every episode of the
  stream, no content). The cost of deciding by stored chunk: a chunk (4096 rows, 1 MiB of
  frames) that holds rows of a granted and of another episode is refused, so rows at the
  edges of granted episodes are out of reach, and in a release of short episodes that
  share their chunks nothing numeric is readable at all. So an episode-subset grant is
  served a **derived release** instead (:mod:`vault.subset`): its episodes' rows of its
  streams re-written as a release of the same format (episodes renumbered ``0..k-1``,
  ``source_index`` kept; sync indices remapped; no ``stats.json``), built in memory from
  the decrypted source on the grant's first pull and stored encrypted as objects
  ``grant-<id>/<path>`` with its index ``index-grant-<id>/files.json``; every file of it
  is served whole (no range checks: nothing of another episode is in it). A lab holding
  several episode-subset grants of a release is served the derived release of the oldest
  live one. The range-refusal path below remains for stored releases without a derived
  release (none, since every episode-subset pull derives one);
* the root ``zarr.json`` lists the granted streams only (a stream subset);
* ``manifest.json`` is served listing the files the grant reaches, with the sha256 and
  size of the filtered ``episodes.json`` and ``stats.json`` as served.

Every step is an audit entry: the catalog's, identities' and review's events through
``on_event=audit.record``, and here each key use (``key.use``), each ingest and each
pull (``pull``: path, byte range, grant).
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import json
import stat
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demofab.durable import atomic_write

from .audit import AuditLog
from .catalog import Catalog, ReleaseInfo
from .crypto import ObjectReader, ObjectRef
from .db import Clock, Forbidden, NotFound, utcnow
from .errors import FormatError, KeyFileError, VaultError
from .identities import Identities, Identity, Role
from .keys import (
    FileKeyProvider,
    KeyProvider,
    create_data_key,
    generate_key_file,
    load_data_key,
    load_signer,
    write_secret_file,
)
from .note import ED25519, Signer, generate_signer
from .review import GrantInfo, Grants, Review
from .store import ObjectStore
from .subset import derive_subset

__all__ = ["CONFIG", "FileEntry", "PulledFile", "Vault", "check_path", "init_vault"]

CONFIG = "vault.json"
_FORMAT = 1
_INDEX_NAME = "files.json"
_DERIVED = ("root", "table", "stats", "manifest")  # served as the grant lets them be seen
_SEGMENT = struct.Struct("<QQ")
_EMPTY = 2**64 - 1
_PATH_PART_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_path(path: str) -> str:
    """``path`` if it is a plain relative path of a release file (parts of
    ``[A-Za-z0-9._-]``, no ``.`` or ``..`` part, no leading ``/``), else VaultError."""
    parts = path.split("/") if isinstance(path, str) and 0 < len(path) <= 1024 else [""]
    for part in parts:
        if part in ("", ".", "..") or not set(part) <= _PATH_PART_CHARS:
            raise VaultError(f"{path!r} is not a release file path (relative, parts of "
                             f"[A-Za-z0-9._-], no '.' or '..')")
    return path


@dataclass(frozen=True)
class FileEntry:
    """A release file as a grant holder may pull it: ``ranges`` None when the whole file
    may be read, else the byte ranges ``[start, stop)`` it may read (an episode subset)."""

    path: str
    size: int
    ranges: tuple[tuple[int, int], ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"path": self.path, "size": self.size,
                "ranges": None if self.ranges is None else [list(r) for r in self.ranges]}


class _BytesReader:
    """Derived content (a filtered episodes.json) with ObjectReader's reading methods."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        end = self.size if stop is None else min(stop, self.size)
        if start < end:
            yield self._data[start:end]

    def close(self) -> None:
        pass


class PulledFile:
    """A release file opened for one identity: ``size`` and :meth:`iter_range`. Each range
    read is checked against the grant's episodes and recorded in the audit log before a
    byte is decrypted. Close it (or use it as a context manager)."""

    def __init__(self, vault: Vault, identity: Identity, dataset: str, version: int,
                 entry: dict[str, Any], grant: GrantInfo, episodes: frozenset[int] | None,
                 reader: ObjectReader | _BytesReader) -> None:
        self._vault, self._identity = vault, identity
        self.dataset, self.version, self.path = dataset, version, str(entry["path"])
        self._entry, self._grant, self._episodes, self._reader = entry, grant, episodes, reader
        self.size: int = reader.size

    def check_range(self, start: int, stop: int) -> None:
        """Forbidden when ``[start, stop)`` touches a chunk holding rows of an episode the
        grant does not hold."""
        if self._episodes is None or isinstance(self._reader, _BytesReader):
            return
        for lo, hi, e_lo, e_hi in self._entry.get("segments", ()):
            if lo < stop and start < hi and not all(e in self._episodes
                                                    for e in range(e_lo, e_hi)):
                refusal = Forbidden(
                    f"dataset {self.dataset!r} release {self.version} {self.path}: bytes "
                    f"{lo}..{hi} hold rows of episodes {e_lo}..{e_hi - 1}, not all in grant "
                    f"{self._grant.id}; read the shard index and the chunks of your episodes "
                    f"by Range (GET .../files lists the ranges you may read)")
                self._vault.refused(self._identity, self.dataset, self.version, self.path,
                                    f"bytes {start}..{stop}: {refusal}")
                raise refusal

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The plaintext of ``[start, stop)``, checked and audited first."""
        end = self.size if stop is None else min(stop, self.size)
        self.check_range(start, end)
        self._vault.audit.append(self._identity.name, "pull", dataset=self.dataset, details={
            "release": self.version, "path": self.path, "start": start, "stop": end,
            "grant": self._grant.id, "token_id": self._identity.token_id})
        for piece in self._reader.iter_range(start, end):
            yield bytes(piece)

    def read_range(self, start: int, stop: int) -> bytes:
        """:meth:`iter_range` joined."""
        return b"".join(self.iter_range(start, stop))

    def close(self) -> None:
        """Close the underlying reader."""
        self._reader.close()

    def __enter__(self) -> PulledFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init_vault(root: str | Path, key_file: str | Path, *, signer_key_file: str | Path | None = None,
               origin: str | None = None) -> Path:
    """Create a vault at ``root``: the provider key file ``key_file`` (outside the root,
    mode 0600), the log's signing key (``signer_key_file``, default ``<key_file>.log``,
    also outside), the audit log and ``vault.json``. Refused when ``root`` is a vault
    already or a key file exists."""
    root = Path(root).absolute()
    if (root / CONFIG).exists():
        raise VaultError(f"{root} is a vault already ({root / CONFIG})")
    key_file = Path(key_file).absolute()
    signer_file = Path(signer_key_file).absolute() if signer_key_file else key_file.with_name(
        key_file.name + ".log")
    for f in (key_file, signer_file):
        if f.exists():
            raise KeyFileError(f"key file {f} exists already; a key is never overwritten")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    provider = generate_key_file(key_file, vault_root=root)
    signer = generate_signer(origin or f"demofab-vault/{provider.key_id}", ED25519)
    write_secret_file(signer_file, signer.skey() + "\n", vault_root=root)
    AuditLog.create(root, signer).close()
    atomic_write(root / CONFIG, json.dumps({
        "format": _FORMAT, "provider_key_file": str(key_file), "signer_key_file": str(signer_file),
        "provider_key_id": provider.key_id, "log_origin": signer.name}, indent=1) + "\n")
    return root


class Vault:
    """An open vault. ``catalog_url``: a PostgreSQL (or SQLite) URL instead of
    ``ROOT/catalog.sqlite``; ``key_provider``/``signer``: instead of the key files named
    in ``vault.json``. Opening fails (KeyFileError) when a key file is missing or
    readable by others: the vault never runs without its own keys."""

    def __init__(self, root: str | Path, *, catalog_url: str | None = None,
                 key_provider: KeyProvider | None = None, signer: Signer | None = None,
                 clock: Clock = utcnow) -> None:
        self.root = Path(root).absolute()
        cfg_path = self.root / CONFIG
        try:
            cfg = json.loads(cfg_path.read_text())
        except FileNotFoundError:
            raise VaultError(f"{self.root} is not a vault (no {CONFIG}); create one with "
                             f"`demofab vault init --root {self.root} --key-file KEY`") from None
        except ValueError as exc:
            raise FormatError(f"{cfg_path} is malformed: {exc}") from exc
        if cfg.get("format") != _FORMAT:
            raise FormatError(f"{cfg_path}: format {cfg.get('format')!r}; this vault reads "
                              f"{_FORMAT}")
        self.provider: KeyProvider = key_provider or FileKeyProvider(
            cfg["provider_key_file"], vault_root=self.root)
        self.signer = signer or load_signer(cfg["signer_key_file"], vault_root=self.root)
        self.audit = AuditLog(self.root, signer=self.signer)
        self.catalog = Catalog(catalog_url or self.root, clock=clock, on_event=self._record)
        self.identities = Identities(self.catalog, on_event=self._record)
        self.review = Review(self.catalog, self._record)
        self.grants: Grants = self.review.grants
        self.store = ObjectStore(self.root)
        self._indexes: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._deriving = threading.Lock()

    def _record(self, event: dict[str, Any]) -> None:
        """The catalog's, identities' and review's event hook: one audit entry each."""
        self.audit.record(event)

    def close(self) -> None:
        """Sign a checkpoint of the log as it is (so a provider can keep and cosign the
        vault's last state), then close the catalog and the audit log."""
        try:
            self.audit.checkpoint()
        finally:
            self.catalog.close()
            self.audit.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys ----------------------------------------------------------------------------
    def _data_key(self, dataset: str, actor: str, purpose: str) -> bytes:
        """The dataset's data key, its use recorded (made on first ingest)."""
        if not (self.root / "keys" / f"{dataset}.json").exists():
            return create_data_key(self.root, self.provider, dataset, audit=self.audit,
                                   actor=actor)
        return load_data_key(self.root, self.provider, dataset, audit=self.audit, actor=actor,
                             purpose=purpose)

    # -- ingest --------------------------------------------------------------------------
    def ingest_release(self, dataset: str, release_path: str | Path, *, by: str = "local",
                       mock: bool = True) -> ReleaseInfo:
        """Catalog a curated release into ``dataset`` and store an encrypted copy of every
        file (and the file index, encrypted too); then, with ``mock`` and if
        ``vault.mock.build_mock`` exists, its mock release (simulated content: it runs the
        simulator). Ingesting the same version again fills in what is missing."""
        info = self.catalog.import_release(dataset, release_path, by=by)
        version = f"v{info.version}"
        index_ref = ObjectRef(dataset, f"index-{version}", _INDEX_NAME)
        if not self.store.exists(index_ref):
            key = self._data_key(dataset, by, f"ingest release {info.version}")
            index = _build_index(info.path)
            for entry in index:
                self.store.put_file(ObjectRef(dataset, version, entry["path"]), key,
                                    info.path / entry["path"], replace=True)
            self.store.put(index_ref, key, json.dumps({"files": index}).encode())
            self.audit.append(by, "release_stored", dataset=dataset, details={
                "release": info.version, "files": len(index),
                "bytes": sum(int(e["size"]) for e in index)})
        if mock:
            self._build_mock(dataset, info, by)
        return info

    def _build_mock(self, dataset: str, info: ReleaseInfo, by: str) -> None:
        try:
            mock = importlib.import_module("vault.mock")
        except ImportError:
            return
        build = getattr(mock, "build_mock", None)
        if build is None or self.store.exists(ObjectRef(dataset, f"index-mock-v{info.version}",
                                                        _INDEX_NAME)):
            return
        with tempfile.TemporaryDirectory(prefix="demofab-mock-") as tmp:
            out = Path(build(info.path, Path(tmp), seed=info.version))
            self.put_mock(dataset, info.version, out, by=by)

    def put_mock(self, dataset: str, version: int, mock_dir: str | Path, *,
                 by: str = "local") -> int:
        """Store a mock release (simulated content in the real release's layout) for
        ``dataset`` release ``version``; returns its file count."""
        key = self._data_key(dataset, by, f"store mock release {version}")
        index = _build_index(Path(mock_dir), segments=False)
        for entry in index:
            self.store.put_file(ObjectRef(dataset, f"mock-v{version}", entry["path"]), key,
                                Path(mock_dir) / entry["path"], replace=True)
        self.store.put(ObjectRef(dataset, f"index-mock-v{version}", _INDEX_NAME), key,
                       json.dumps({"files": index}).encode(), replace=True)
        self._indexes.pop((dataset, f"mock-v{version}"), None)
        self.audit.append(by, "mock_stored", dataset=dataset,
                          details={"release": version, "files": len(index)})
        return len(index)

    def _index(self, dataset: str, version: str, actor: str) -> dict[str, dict[str, Any]]:
        cached = self._indexes.get((dataset, version))
        if cached is not None:
            return cached
        ref = ObjectRef(dataset, f"index-{version}", _INDEX_NAME)
        if not self.store.exists(ref):
            what = "no mock release" if version.startswith("mock-") else "not stored"
            raise NotFound(f"dataset {dataset!r} release {version.removeprefix('mock-v')}: "
                           f"{what}")
        key = self._data_key(dataset, actor, f"read the file index of {version}")
        with self.store.open(ref, key) as r:
            files = json.loads(r.read_all())["files"]
        index = {str(e["path"]): e for e in files}
        self._indexes[(dataset, version)] = index
        return index

    # -- grants and pulls ----------------------------------------------------------------
    def _live_grants(self, identity: Identity, dataset: str, version: int) -> list[GrantInfo]:
        try:  # the common case, a grant of the whole release, in one joined query
            return [self.grants.check(identity, dataset, version)]
        except Forbidden as exc:
            refusal = exc
        labs = self.identities.get(identity.name).labs  # membership now, not at login
        live = [g for lab in sorted(labs)
                for g in self.grants.list(lab=lab, dataset=dataset, live=True)
                if g.release == version]
        if not live:
            raise refusal  # says why: no lab, no grant, revoked, expired
        return live

    def _access(self, entry: dict[str, Any], grant: GrantInfo) -> tuple[bool, str]:
        streams = entry.get("streams") or []
        if grant.streams is not None and not set(streams) <= set(grant.streams):
            return False, f"stream(s) {sorted(set(streams) - set(grant.streams))} not granted"
        if entry["kind"] == "stats" and grant.episodes is not None:
            return False, "stats.json mixes in every episode's statistics"
        return True, ""

    def _allowed_ranges(self, entry: dict[str, Any],
                        episodes: frozenset[int] | None) -> tuple[tuple[int, int], ...] | None:
        if episodes is None or not entry.get("segments"):
            return None
        bad = [(lo, hi) for lo, hi, e_lo, e_hi in entry["segments"]
               if not all(e in episodes for e in range(e_lo, e_hi))]
        if not bad:
            return None
        out, at = [], 0
        for lo, hi in sorted(bad):
            if lo > at:
                out.append((at, lo))
            at = max(at, hi)
        if at < int(entry["size"]):
            out.append((at, int(entry["size"])))
        return tuple(out)

    def _select(self, identity: Identity, dataset: str, version: int, path: str,
                ) -> tuple[dict[str, Any], GrantInfo, frozenset[int] | None]:
        check_path(path)
        grants = self._live_grants(identity, dataset, version)
        index = self._index(dataset, f"v{version}", identity.name)
        entry = index.get(path)
        if entry is None:
            raise NotFound(f"dataset {dataset!r} release {version} has no file {path!r}")
        why = ""
        for g in grants:
            ok, why = self._access(entry, g)
            if ok:
                return entry, g, None if g.episodes is None else frozenset(g.episodes)
        raise Forbidden(f"dataset {dataset!r} release {version} {path}: {why} by the grant(s) "
                        f"{[g.id for g in grants]} of {identity.name!r}")

    def list_files(self, identity: Identity, dataset: str, version: int) -> list[FileEntry]:
        """The files ``identity`` may pull from a release, with their sizes (as served);
        under an episode subset, the files of the grant's derived release (made on first
        use, :meth:`grant_release`), each readable whole."""
        grants = self._live_grants(identity, dataset, version)
        sub = _subset_grant(grants)
        if sub is not None:
            derived = self.grant_release(sub, identity.name)
            return [FileEntry(p, int(e["size"])) for p, e in sorted(derived.items())]
        index = self._index(dataset, f"v{version}", identity.name)
        out = []
        for path, entry in index.items():
            for g in grants:
                if self._access(entry, g)[0]:
                    eps = None if g.episodes is None else frozenset(g.episodes)
                    size = (len(self._derived(dataset, version, entry, grants, identity))
                            if entry["kind"] in _DERIVED else int(entry["size"]))
                    out.append(FileEntry(path, size, self._allowed_ranges(entry, eps)))
                    break
        return out

    def open_file(self, identity: Identity, dataset: str, version: int, path: str) -> PulledFile:
        """Open a release file for ``identity`` (a live grant of one of its labs must
        reach it; see the module's note on subsets). The key use is an audit entry; each
        range read a ``pull`` entry."""
        try:
            check_path(path)
            sub = _subset_grant(self._live_grants(identity, dataset, version))
            if sub is not None:
                return self._open_derived(identity, sub, path)
            entry, grant, episodes = self._select(identity, dataset, version, path)
        except Forbidden as exc:
            self.refused(identity, dataset, version, path, str(exc))
            raise
        reader: ObjectReader | _BytesReader
        if entry["kind"] in _DERIVED:
            grants = self._live_grants(identity, dataset, version)
            reader = _BytesReader(self._derived(dataset, version, entry, grants, identity))
        else:
            key = self._data_key(dataset, identity.name, f"pull {path} of release {version}")
            reader = self.store.open(ObjectRef(dataset, f"v{version}", path), key)
        return PulledFile(self, identity, dataset, version, entry, grant, episodes, reader)

    def grant_release(self, grant: GrantInfo, actor: str = "vault") -> dict[str, dict[str, Any]]:
        """The file index (path -> entry) of the derived release of an episode-subset
        ``grant``, made on first use: the source decrypted file by file, the subset built
        in memory (:func:`vault.subset.derive_subset`), every file encrypted into the store
        as ``grant-<id>/<path>``, the index last (an interrupted derivation is redone).
        Checks nothing about the grant's liveness: callers do (every pull does)."""
        dataset, version, name = grant.dataset, grant.release, f"grant-{grant.id}"
        with self._deriving:
            if (dataset, name) in self._indexes or self.store.exists(
                    ObjectRef(dataset, f"index-{name}", _INDEX_NAME)):
                return self._index(dataset, name, actor)
            source = self._index(dataset, f"v{version}", actor)
            key = self._data_key(dataset, actor, f"derive release {version} for grant "
                                                 f"{grant.id}")

            def read(path: str) -> bytes:
                if path not in source:
                    raise FileNotFoundError(path)
                with self.store.open(ObjectRef(dataset, f"v{version}", path), key) as r:
                    return r.read_all()

            files = derive_subset(read, sorted(source), grant.episodes or (), grant.streams,
                                  source={"dataset": dataset, "release": version,
                                          "grant": grant.id})
            index = []
            for path, data in sorted(files.items()):
                self.store.put(ObjectRef(dataset, name, path), key, data, replace=True)
                index.append(_derived_entry(path, len(data)))
            self.store.put(ObjectRef(dataset, f"index-{name}", _INDEX_NAME), key,
                           json.dumps({"files": index}).encode(), replace=True)
            self.audit.append(actor, "grant_release_stored", dataset=dataset, details={
                "release": version, "grant": grant.id, "files": len(index),
                "bytes": sum(len(d) for d in files.values()),
                "episodes": list(grant.episodes or ())})
            del files
            self._indexes[(dataset, name)] = {str(e["path"]): e for e in index}
            return self._indexes[(dataset, name)]

    def _open_derived(self, identity: Identity, grant: GrantInfo, path: str) -> PulledFile:
        index = self.grant_release(grant, identity.name)
        entry = index.get(path)
        if entry is None:
            raise NotFound(f"dataset {grant.dataset!r} release {grant.release} as grant "
                           f"{grant.id} serves it has no file {path!r}")
        key = self._data_key(grant.dataset, identity.name,
                             f"pull {path} of release {grant.release} (grant {grant.id})")
        reader = self.store.open(ObjectRef(grant.dataset, f"grant-{grant.id}", path), key)
        return PulledFile(self, identity, grant.dataset, grant.release, entry, grant, None,
                          reader)

    def refused(self, identity: Identity, dataset: str, version: int, path: str,
                reason: str) -> None:
        """Record a refused pull (``pull_refused``) so the provider sees who tried what."""
        self.audit.append(identity.name, "pull_refused", dataset=dataset, details={
            "release": version, "path": path, "reason": reason[:500],
            "token_id": identity.token_id})

    def open_mock(self, identity: Identity, dataset: str, version: int, path: str) -> ObjectReader:
        """A file of the mock release of ``dataset`` release ``version`` (no grant needed:
        its content is simulated)."""
        check_path(path)
        self.catalog.release(dataset, version)
        index = self._index(dataset, f"mock-v{version}", identity.name)
        if path not in index:
            raise NotFound(f"the mock release of {dataset!r} release {version} has no file "
                           f"{path!r}")
        key = self._data_key(dataset, identity.name, f"mock {path} of release {version}")
        self.audit.append(identity.name, "mock_pull", dataset=dataset,
                          details={"release": version, "path": path})
        return self.store.open(ObjectRef(dataset, f"mock-v{version}", path), key)

    def _derived(self, dataset: str, version: int, entry: dict[str, Any],
                 grants: list[GrantInfo], identity: Identity) -> bytes:
        """episodes.json, stats.json or manifest.json as the grants let them be seen."""
        full_eps = any(g.episodes is None for g in grants)
        episodes = None if full_eps else {e for g in grants for e in (g.episodes or ())}
        full_st = any(g.streams is None for g in grants)
        streams = None if full_st else {s for g in grants for s in (g.streams or ())}
        key = self._data_key(dataset, identity.name, f"filter {entry['path']} of {version}")

        def read(path: str) -> bytes:
            with self.store.open(ObjectRef(dataset, f"v{version}", path), key) as r:
                return r.read_all()

        if entry["kind"] == "table":
            if episodes is None:
                return read(entry["path"])  # as stored
            table = json.loads(read(entry["path"]))
            table["episodes"] = [r for r in table["episodes"] if r.get("index") in episodes]
            return json.dumps(table, indent=1).encode()
        if entry["kind"] == "root":
            root = json.loads(read(entry["path"]))
            attrs = (root.get("attributes") or {}).get("demofab")
            if streams is None or not isinstance(attrs, dict):
                return read(entry["path"])
            attrs["streams"] = [x for x in attrs.get("streams", []) if x in streams]
            return json.dumps(root, indent=1).encode()
        if entry["kind"] == "stats":
            stats = json.loads(read(entry["path"]))
            if streams is None or not isinstance(stats.get("streams"), dict):
                return read(entry["path"])
            stats["streams"] = {k: v for k, v in stats["streams"].items() if k in streams}
            return json.dumps(stats, indent=1).encode()
        if any(g.episodes is None and g.streams is None for g in grants):
            return read(entry["path"])
        manifest = json.loads(read(entry["path"]))
        index = self._index(dataset, f"v{version}", identity.name)
        files = {}
        for path, meta in manifest.get("files", {}).items():
            e = index.get(path)
            if e is None or not any(self._access(e, g)[0] for g in grants):
                continue
            if e["kind"] in ("table", "stats", "root"):
                body = self._derived(dataset, version, e, grants, identity)
                meta = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
            files[path] = meta
        manifest["files"] = files
        return json.dumps(manifest, indent=1).encode()

    # -- people ----------------------------------------------------------------------------
    def audit_visible(self, identity: Identity, dataset: str) -> bool:
        """Whether ``identity`` may read the audit entries of ``dataset``: an admin, a
        global auditor, or a provider or auditor of the dataset's provider."""
        provider = self.catalog.describe_dataset(dataset).provider
        roles = self.identities.get(identity.name).roles
        return any(r.role is Role.ADMIN or (r.role is Role.AUDITOR and r.provider is None)
                   or (r.role in (Role.PROVIDER, Role.AUDITOR) and r.provider == provider)
                   for r in roles)

    def sees_request(self, identity: Identity, dataset: str, lab: str) -> bool:
        """Whether ``identity`` may see a request of ``lab`` for ``dataset``."""
        roles = self.identities.get(identity.name).roles
        provider = self.catalog.describe_dataset(dataset).provider
        return any(r.role is Role.ADMIN or (r.role is Role.LAB_MEMBER and r.lab == lab)
                   or (r.role is Role.REVIEWER and r.dataset == dataset)
                   or (r.role is Role.PROVIDER and r.provider == provider) for r in roles)


# -- the file index ------------------------------------------------------------------------

def _subset_grant(grants: list[GrantInfo]) -> GrantInfo | None:
    """The episode-subset grant whose derived release is served (the oldest), None when
    a grant holds every episode."""
    if not grants or any(g.episodes is None for g in grants):
        return None
    return min(grants, key=lambda g: g.id)


def _derived_entry(rel: str, size: int) -> dict[str, Any]:
    """A derived release's file as the index lists it (kind and streams as
    :func:`_build_index` says; no segments: every file is served whole)."""
    parts = rel.split("/")
    kinds = {"zarr.json": "root", "episodes.json": "table", "stats.json": "stats",
             "manifest.json": "manifest"}
    entry: dict[str, Any] = {"path": rel, "size": size, "kind": kinds.get(rel, "meta"),
                             "streams": []}
    if parts[0] == "streams" and len(parts) > 2:
        entry["streams"] = [parts[1]]
    elif parts[0] == "sync" and len(parts) > 1 and "__to__" in parts[1]:
        entry["streams"] = sorted(set(parts[1].split("__to__", 1)))
    if entry["streams"] and parts[-1] != "zarr.json":
        entry["kind"] = "data"
    return entry


def _regular_files(base: Path) -> list[Path]:
    if not base.is_dir():
        raise VaultError(f"{base} is not a directory")
    files = []
    for path in sorted(base.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise VaultError(f"{path} is a symlink or a special file; only regular files are "
                             f"stored")
        if stat.S_ISREG(mode):
            files.append(path)
    return files


def _build_index(base: Path, *, segments: bool = True) -> list[dict[str, Any]]:
    """Every file of a release: path, size, kind, the streams it belongs to and (shards of
    per-row or ragged arrays) the byte segments with the episodes their rows belong to."""
    bounds: dict[str, list[int]] = {}
    n_episodes = 0
    if segments and (base / "episodes.json").is_file():
        rows = json.loads((base / "episodes.json").read_text()).get("episodes", [])
        n_episodes = len(rows)
        names = {s for r in rows for s in (r.get("streams") or {})}
        for s in names:
            acc = [0]
            for r in rows:
                acc.append(acc[-1] + int((r.get("streams") or {}).get(s, 0)))
            bounds[s] = acc
    out = []
    for f in _regular_files(base):
        rel = f.relative_to(base).as_posix()
        try:
            check_path(rel)
        except VaultError as exc:
            raise VaultError(f"{base}: release file {rel!r} has a name the vault does not "
                             f"serve ({exc})") from exc
        parts = rel.split("/")
        entry: dict[str, Any] = {"path": rel, "size": f.stat().st_size, "kind": "meta",
                                 "streams": []}
        if rel == "zarr.json":
            entry["kind"] = "root"
        elif rel == "episodes.json":
            entry["kind"] = "table"
        elif rel == "stats.json":
            entry["kind"] = "stats"
        elif rel == "manifest.json":
            entry["kind"] = "manifest"
        elif parts[0] == "streams" and len(parts) > 2:
            entry["streams"] = [parts[1]]
            if parts[-1] != "zarr.json":
                entry["kind"] = "data"
        elif parts[0] == "sync" and len(parts) > 1 and "__to__" in parts[1]:
            entry["streams"] = sorted(set(parts[1].split("__to__", 1)))
            if parts[-1] != "zarr.json":
                entry["kind"] = "data"
        if entry["kind"] == "data" and segments:
            entry["segments"] = _segments(base, parts, bounds, n_episodes)
        out.append(entry)
    return out


def _array_dir(base: Path, parts: list[str]) -> tuple[Path, list[str]] | None:
    if "c" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("c")
    return base.joinpath(*parts[:at]), parts[at + 1:]


def _segments(base: Path, parts: list[str], bounds: dict[str, list[int]],
              n_episodes: int) -> list[list[int]]:
    """``[byte_lo, byte_hi, episode_lo, episode_hi)`` for each inner chunk of a shard; one
    segment over the whole file (all of its episodes) when the layout is not understood."""
    path = base.joinpath(*parts)
    size = path.stat().st_size
    stream = parts[1].split("__to__", 1)[0]  # a sync index's rows are its first stream's
    acc = bounds.get(stream)
    every = [[0, size, 0, n_episodes]]
    found = _array_dir(base, parts)
    if acc is None or found is None:
        return every
    adir, key = found
    try:
        meta = json.loads((adir / "zarr.json").read_text())
        shape = [int(n) for n in meta["shape"]]
        shard = [int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        codec = meta["codecs"][0]
        if codec["name"] != "sharding_indexed" or codec["configuration"].get(
                "index_location", "end") != "end":
            return every
        inner = [int(n) for n in codec["configuration"]["chunk_shape"]]
        shard_index = int(key[0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return every
    name = adir.name
    if name == "episode_bounds":
        return []  # rows are episodes: their row counts, free (see the module's note)
    per = [-(-s // c) for s, c in zip(shard, inner, strict=True)]
    n_chunks = 1
    for n in per:
        n_chunks *= n
    index_bytes = n_chunks * _SEGMENT.size + 4
    if size < index_bytes or per[1:] != [1] * (len(per) - 1):
        return every
    with open(path, "rb") as fh:
        fh.seek(size - index_bytes)
        raw = fh.read(n_chunks * _SEGMENT.size)
    ragged_values = name == "values"
    offsets: list[int] | None = None
    if ragged_values:
        offsets = _read_offsets(adir.parent / "offsets")
        if offsets is None:
            return every
    total_rows = acc[-1]
    segs = []
    for j in range(n_chunks):
        off, nbytes = _SEGMENT.unpack_from(raw, j * _SEGMENT.size)
        if off == _EMPTY:
            continue
        lo = shard_index * shard[0] + j * inner[0]
        hi = min(lo + inner[0], shape[0])
        if offsets is not None:  # byte positions of the values -> the rows they hold
            r_lo = bisect.bisect_right(offsets, lo) - 1
            r_hi = bisect.bisect_left(offsets, hi)
            lo, hi = max(r_lo, 0), min(r_hi, total_rows)
        elif name == "offsets":
            lo, hi = max(lo - 1, 0), min(hi, total_rows)
        e_lo = max(bisect.bisect_right(acc, lo) - 1, 0)
        e_hi = bisect.bisect_left(acc, hi)
        segs.append([int(off), int(off + nbytes), e_lo, max(e_hi, e_lo)])
    return segs


def _read_offsets(path: Path) -> list[int] | None:
    try:
        import zarr

        values: Any = zarr.open_array(str(path), mode="r")[:]
        return [int(x) for x in values]
    except Exception:  # noqa: BLE001 - an unreadable offsets array: the whole file is one segment
        return None
