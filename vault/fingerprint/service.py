"""Fingerprinted exports over an open :class:`~vault.service.Vault`: the export policy,
making a recipient's copy, serving it, and naming the recipient of a leaked copy.

* **Policy.** A dataset is exportable only when a provider of its provider (or an admin,
  or the local operator, who holds the vault's keys) marks it so
  (:meth:`Fingerprints.set_exportable`); every change is an audit entry.
* **Export.** A lab holding a live grant gets ONE copy per grant (:meth:`Fingerprints.export`):
  the grant's episodes and streams (a subset is derived first, :mod:`vault.subset`), every
  camera frame carrying the export's pattern. The export's row is written before any
  byte of the copy, so no copy exists without its record; the copy is stored encrypted
  (objects ``export-<id>/<path>``, index ``index-export-<id>/files.json``) to be pulled over
  the API, or written to a directory by the provider. Refusals (not exportable, no grant)
  are audit entries too (``fingerprint_export_refused``).
* **Key.** The pattern of an export is keyed by the fingerprint key: 256 random bits in a
  key file OUTSIDE the vault root, mode 0600 (default ``<provider key file>.fingerprint``,
  made on the first export), read like the vault's other secret files.
* **Identify.** :meth:`Fingerprints.identify` scores a suspect copy against the pattern of
  every export (and of ``NULL_PATTERNS`` unused ones) and reports the best match with its
  false-positive probability (see :mod:`vault.fingerprint.mark`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from ..catalog import dataset_row
from ..crypto import ObjectReader, ObjectRef
from ..db import Conflict, Forbidden, NotFound
from ..errors import KeyFileError
from ..identities import Identity, Role, lab_row
from ..keys import load_data_key, read_secret_file, write_secret_file
from ..review import GrantInfo
from ..service import CONFIG, Vault, check_path
from ..subset import derive_subset
from .errors import FingerprintError, NotExportable
from .mark import AMPLITUDE, Originals, analysis, code, codes, evidence, luma, scores
from .release import camera_streams, fingerprint_release, frames_of
from .suspect import Suspect, read_suspects
from .tables import ExportRow, PolicyRow, create_tables

__all__ = ["MAX_FALSE_POSITIVE", "NULL_PATTERNS", "ExportInfo", "Fingerprints", "Identification",
           "Match", "Policy", "default_key_file"]

NULL_PATTERNS = 256
"""Unused keyed patterns scored beside the candidates: the empirical null."""
MAX_FALSE_POSITIVE = 1e-6
"""A match is reported when its false-positive probability is at most this."""
_KEY_HEADER = "demofab-fingerprint-key/v1"
_INDEX = "files.json"


@dataclass(frozen=True)
class Policy:
    """A dataset's export policy."""

    dataset: str
    exportable: bool
    set_by: str | None
    at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"dataset": self.dataset, "exportable": self.exportable, "set_by": self.set_by,
                "at": self.at.isoformat() if self.at else None}


@dataclass(frozen=True)
class ExportInfo:
    """A fingerprinted copy: its id, recipient lab, release, grant, when, and the copy's
    ``release_sha256`` and frame count (empty and 0 until it is made)."""

    export_id: str
    dataset: str
    release: int
    lab: str
    requested_by: str
    grant_id: int
    created_at: datetime
    release_sha256: str
    frames: int
    stored: bool

    @property
    def label(self) -> str:
        """What the export's pattern is keyed by (recipient, release and export id)."""
        return f"{self.dataset}/{self.release}/{self.lab}/{self.export_id}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"export_id": self.export_id, "dataset": self.dataset, "release": self.release,
                "lab": self.lab, "requested_by": self.requested_by, "grant_id": self.grant_id,
                "created_at": self.created_at.isoformat(), "release_sha256": self.release_sha256,
                "frames": self.frames, "stored": self.stored}


@dataclass(frozen=True)
class Match:
    """A candidate export scored against the suspect: ``z`` the correlation in units of its
    null standard deviation, ``z_null`` the same against the empirical null of the unused
    patterns, ``p_false`` the probability that a copy NOT carrying this export's pattern
    scores as high among all candidates (Hoeffding bound, times the number of candidates)."""

    export: ExportInfo
    z: float
    z_null: float
    p_false: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"export_id": self.export.export_id, "recipient": self.export.lab,
                "dataset": self.export.dataset, "release": self.export.release,
                "z": round(self.z, 2), "z_null": round(self.z_null, 2), "p_false": self.p_false}


@dataclass(frozen=True)
class Identification:
    """What :meth:`Fingerprints.identify` found: the significant matches (best first; more
    than one means copies were mixed), the best candidate even when not significant, the
    frames compared and how, and the null's mean and standard deviation."""

    matches: tuple[Match, ...]
    best: Match | None
    candidates: int
    frames: int
    informed: int
    null_mean: float
    null_std: float
    inputs: tuple[str, ...] = field(default=())
    exact: tuple[str, ...] = field(default=())

    @property
    def identified(self) -> bool:
        """Whether some recipient was named."""
        return bool(self.matches)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"identified": self.identified, "matches": [m.as_dict() for m in self.matches],
                "best": self.best.as_dict() if self.best else None,
                "candidates": self.candidates, "frames": self.frames, "informed": self.informed,
                "null_mean": round(self.null_mean, 3), "null_std": round(self.null_std, 3),
                "inputs": list(self.inputs), "exact_copy_of": list(self.exact)}


def default_key_file(root: str | Path) -> Path:
    """``<provider key file>.fingerprint``, beside the provider key named in vault.json."""
    cfg = json.loads((Path(root) / CONFIG).read_text())
    provider = Path(cfg["provider_key_file"])
    return provider.with_name(provider.name + ".fingerprint")


class Fingerprints:
    """Fingerprinted exports of ``vault`` (its tables are made on first use); ``key_file``:
    the fingerprint key file instead of :func:`default_key_file`."""

    def __init__(self, vault: Vault, *, key_file: str | Path | None = None) -> None:
        self.vault = vault
        self.db = vault.catalog.db
        create_tables(self.db.engine)
        self.key_file = Path(key_file) if key_file else default_key_file(vault.root)
        self._indexes: dict[str, dict[str, dict[str, Any]]] = {}

    # -- the key ---------------------------------------------------------------------------
    def key(self, *, create: bool = False) -> bytes:
        """The fingerprint key (made, mode 0600, when ``create`` and the file is missing)."""
        if create and not self.key_file.exists():
            text = f"{_KEY_HEADER}\nkey {base64.b64encode(os.urandom(32)).decode()}\n"
            write_secret_file(self.key_file, text, vault_root=self.vault.root)
            self.vault.audit.append("vault", "fingerprint_key_created",
                                    details={"key_file": str(self.key_file)})
        lines = read_secret_file(self.key_file, vault_root=self.vault.root).splitlines()
        if not lines or lines[0] != _KEY_HEADER or not lines[1:] or not lines[1].startswith("key "):
            raise KeyFileError(f"key file {self.key_file} is not a fingerprint key file "
                               f"({_KEY_HEADER!r} and a 'key <base64>' line)")
        try:
            key = base64.b64decode(lines[1][4:], validate=True)
        except ValueError as exc:
            raise KeyFileError(f"key file {self.key_file}: the key is not base64") from exc
        if len(key) != 32:
            raise KeyFileError(f"key file {self.key_file} holds {len(key) * 8} bits, not 256")
        return key

    # -- policy ----------------------------------------------------------------------------
    def policy(self, dataset: str) -> Policy:
        """Whether ``dataset`` is exportable (not unless its provider said so)."""
        with self.db.read() as s:
            row = s.get(PolicyRow, dataset_row(s, dataset).id)
            if row is None:
                return Policy(dataset, False, None, None)
            return Policy(dataset, row.exportable, row.set_by, row.at)

    def set_exportable(self, dataset: str, exportable: bool, by: Identity | None = None) -> Policy:
        """Mark ``dataset`` exportable or not. ``by``: a provider of the dataset's provider
        or an admin; None for the local operator (who holds the vault's keys)."""
        actor = "local" if by is None else by.name
        with self.db.write() as s:
            ds = dataset_row(s, dataset, lock=True)
            if by is not None:
                who = self.vault.identities.get(by.name)
                if not (who.is_admin or who.has_role(Role.PROVIDER, provider=ds.provider.name)):
                    raise Forbidden(f"{by.name!r} may not set the export policy of dataset "
                                    f"{dataset!r}: only a provider of {ds.provider.name!r} or "
                                    f"an admin may")
            row = s.get(PolicyRow, ds.id)
            if row is None:
                row = PolicyRow(dataset_id=ds.id)
                s.add(row)
            row.exportable, row.set_by, row.at = exportable, actor, self.db.clock()
            s.flush()
            self.vault.audit.append(actor, "fingerprint_policy", dataset=dataset,
                                    details={"exportable": exportable})
        return self.policy(dataset)

    # -- exports ---------------------------------------------------------------------------
    def exports(self, *, dataset: str | None = None, lab: str | None = None) -> list[ExportInfo]:
        """Every export, oldest first (``dataset``, ``lab`` filter)."""
        with self.db.read() as s:
            q = select(ExportRow).order_by(ExportRow.id)
            if dataset is not None:
                q = q.where(ExportRow.dataset_id == dataset_row(s, dataset).id)
            if lab is not None:
                q = q.where(ExportRow.lab_id == lab_row(s, lab).id)
            return [self._info(s, r) for r in s.scalars(q)]

    @staticmethod
    def _info(s: Any, r: ExportRow) -> ExportInfo:
        from ..catalog import Dataset
        from ..identities import Lab

        return ExportInfo(r.export_id, s.get(Dataset, r.dataset_id).name, r.release,
                          s.get(Lab, r.lab_id).name, r.requested_by, r.grant_id, r.created_at,
                          r.release_sha256, r.frames, r.stored)

    def _lab_of(self, by: Identity | None, lab: str | None) -> str:
        if by is None:
            if lab is None:
                raise FingerprintError("name the recipient lab of the export (--recipient LAB)")
            return lab
        labs = sorted(self.vault.identities.get(by.name).labs)  # membership now
        if lab is None:
            if len(labs) != 1:
                raise Forbidden(f"{by.name!r} is a member of {labs or 'no lab'}; name the lab "
                                f"the export is for")
            return labs[0]
        if lab not in labs:
            raise Forbidden(f"{by.name!r} is not a member of lab {lab!r}")
        return lab

    def _grant(self, lab: str, dataset: str, version: int) -> GrantInfo:
        self.vault.catalog.release(dataset, version)  # NotFound for an unknown release
        live = [g for g in self.vault.grants.list(lab=lab, dataset=dataset, live=True)
                if g.release == version]
        if not live:
            raise Forbidden(f"lab {lab!r} holds no live grant for dataset {dataset!r} release "
                            f"{version}: an export needs one")
        full = [g for g in live if g.episodes is None and g.streams is None]
        return (full or live)[0]

    def _refused(self, actor: str, dataset: str, version: int, lab: str | None,
                 exc: Exception) -> None:
        self.vault.audit.append(actor, "fingerprint_export_refused", dataset=dataset, details={
            "release": version, "lab": lab, "reason": str(exc)[:500]})

    def export(self, dataset: str, version: int, *, by: Identity | None = None,
               lab: str | None = None, out: str | Path | None = None,
               progress: Callable[[str, int], None] | None = None) -> ExportInfo:
        """The fingerprinted copy of release ``version`` for ``lab`` (``by``'s lab when
        ``by`` is a lab member; the local operator names it), under the lab's live grant.
        ``out``: write the copy to this new directory; otherwise store it encrypted for the
        lab to pull (once: the same grant's copy is reused)."""
        actor = "local" if by is None else by.name
        try:
            recipient = self._lab_of(by, lab)
            if not self.policy(dataset).exportable:
                raise NotExportable(f"dataset {dataset!r} is not exportable: its provider has "
                                    f"not marked it so (demofab vault fingerprint exportable)")
            grant = self._grant(recipient, dataset, version)
        except (Forbidden, NotFound, FingerprintError) as exc:
            self._refused(actor, dataset, version, lab, exc)
            raise
        dest = Path(out) if out is not None else None
        if dest is not None and dest.exists() and any(dest.iterdir()):
            raise FingerprintError(f"{dest} exists and is not empty; export into a new directory")
        info = self._existing(grant) or self._new_export(grant, actor)
        if info.stored and dest is None:
            return info
        data_key = load_data_key(self.vault.root, self.vault.provider, dataset, audit=self.vault.audit,
                                 actor=actor, purpose=f"fingerprinted export {info.export_id}")
        read = self._source(grant, data_key)
        changed, change, frames = fingerprint_release(
            read, code(self.key(create=True), info.label), progress=progress)
        manifest = json.loads(changed["manifest.json"])
        paths = sorted(set(manifest["files"]) | {"manifest.json"})
        index = []
        part = None if dest is None else dest.with_name(f".{dest.name}.part-{info.export_id}")
        for path in paths:
            body = changed[path] if path in changed else read(path)
            if part is not None:
                target = part / check_path(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
            else:
                self.vault.store.put(ObjectRef(dataset, f"export-{info.export_id}", path),
                                     data_key, body, replace=True)
            index.append({"path": path, "size": len(body)})
        if part is not None and dest is not None:
            os.replace(part, dest)  # the whole copy appears at once (onto an empty directory)
        else:
            self.vault.store.put(ObjectRef(dataset, f"index-export-{info.export_id}", _INDEX),
                                 data_key, json.dumps({"files": index}).encode(), replace=True)
        with self.db.write() as s:
            row = s.scalars(select(ExportRow).where(ExportRow.export_id == info.export_id)).one()
            row.release_sha256, row.frames = str(manifest["release_sha256"]), frames
            row.stored = row.stored or dest is None
            s.flush()
            info = self._info(s, row)
            self.vault.audit.append(actor, "fingerprint_export", dataset=dataset, details={
                "release": version, "lab": info.lab, "export": info.export_id,
                "grant": grant.id, "to": str(dest) if dest else "store", "files": len(index),
                "bytes": sum(e["size"] for e in index), "frames": frames,
                "release_sha256": info.release_sha256, "frame_change": change.as_dict()})
        return info

    def _existing(self, grant: GrantInfo) -> ExportInfo | None:
        with self.db.read() as s:
            row = s.scalars(select(ExportRow).where(ExportRow.grant_id == grant.id)
                            .order_by(ExportRow.id)).first()
            return None if row is None else self._info(s, row)

    def _new_export(self, grant: GrantInfo, actor: str) -> ExportInfo:
        try:
            with self.db.write() as s:
                row = ExportRow(export_id=secrets.token_hex(8), release=grant.release,
                                dataset_id=dataset_row(s, grant.dataset).id,
                                lab_id=lab_row(s, grant.lab).id, requested_by=actor,
                                grant_id=grant.id, created_at=self.db.clock(),
                                amplitude=AMPLITUDE)
                s.add(row)
                s.flush()
                return self._info(s, row)
        except Conflict:  # another request made this grant's export at the same moment
            existing = self._existing(grant)
            if existing is None:
                raise
            return existing

    def _source(self, grant: GrantInfo, data_key: bytes) -> Callable[[str], bytes]:
        """A reader of the plaintext release the grant reaches (the stored release, or its
        episode/stream subset derived in memory)."""
        dataset, version = grant.dataset, grant.release

        def stored(path: str) -> bytes:
            ref = ObjectRef(dataset, f"v{version}", path)
            if not self.vault.store.exists(ref):
                raise FileNotFoundError(path)
            with self.vault.store.open(ref, data_key) as r:
                return r.read_all()

        if grant.episodes is None and grant.streams is None:
            return stored
        files = sorted(set(json.loads(stored("manifest.json"))["files"]) | {"manifest.json"})
        n = self.vault.catalog.release(dataset, version).description.episode_count
        derived = derive_subset(stored, files, grant.episodes if grant.episodes is not None
                                else range(n), grant.streams,
                                source={"dataset": dataset, "release": version,
                                        "grant": grant.id})

        def subset(path: str) -> bytes:
            if path not in derived:
                raise FileNotFoundError(path)
            return derived[path]

        return subset

    def _stored(self, by: Identity, dataset: str, version: int, lab: str | None
                ) -> tuple[ExportInfo, dict[str, dict[str, Any]], bytes]:
        """``by``'s lab's stored export (a live grant needed now), its file index (cached:
        a stored copy never changes) and the data key (its use audited)."""
        recipient = self._lab_of(by, lab)
        grant = self._grant(recipient, dataset, version)
        info = self._existing(grant)
        if info is None or not info.stored:
            raise NotFound(f"lab {recipient!r} has no fingerprinted export of dataset "
                           f"{dataset!r} release {version} yet (POST .../export makes it)")
        key = load_data_key(self.vault.root, self.vault.provider, dataset, audit=self.vault.audit,
                            actor=by.name, purpose=f"serve export {info.export_id}")
        index = self._indexes.get(info.export_id)
        if index is None:
            ref = ObjectRef(dataset, f"index-export-{info.export_id}", _INDEX)
            with self.vault.store.open(ref, key) as r:
                index = {str(f["path"]): f for f in json.loads(r.read_all())["files"]}
            self._indexes[info.export_id] = index
        return info, index, key

    def export_for(self, by: Identity, dataset: str, version: int,
                   lab: str | None = None) -> tuple[ExportInfo, list[dict[str, Any]]]:
        """The stored export ``by``'s lab may pull now (a live grant, the export made) and
        its files (path, size)."""
        info, index, _ = self._stored(by, dataset, version, lab)
        return info, [index[p] for p in sorted(index)]

    def open_export_file(self, by: Identity, dataset: str, version: int, path: str,
                         lab: str | None = None) -> ObjectReader:
        """A file of ``by``'s lab's stored export, its pull an audit entry."""
        check_path(path)
        info, index, key = self._stored(by, dataset, version, lab)
        if path not in index:
            raise NotFound(f"export {info.export_id} has no file {path!r}")
        self.vault.audit.append(by.name, "export_pull", dataset=dataset, details={
            "release": version, "export": info.export_id, "path": path,
            "token_id": by.token_id})
        return self.vault.store.open(ObjectRef(dataset, f"export-{info.export_id}", path), key)

    # -- identification ----------------------------------------------------------------------
    def _originals(self, dataset: str, version: int, actor: str) -> Originals:
        key = load_data_key(self.vault.root, self.vault.provider, dataset, audit=self.vault.audit,
                            actor=actor, purpose=f"fingerprint identify against release {version}")

        def read(path: str) -> bytes:
            ref = ObjectRef(dataset, f"v{version}", path)
            if not self.vault.store.exists(ref):
                raise FileNotFoundError(path)
            with self.vault.store.open(ref, key) as r:
                return r.read_all()

        frames, digests = [], []
        for c in camera_streams(read):
            for i, f in enumerate(frames_of(read, c)):
                frames.append(analysis(luma(f, f"{dataset} v{version} {c} row {i}")))
                digests.append(hashlib.sha256(f).digest())
        return Originals(np.stack(frames) if frames else np.zeros((0, 96, 128), np.float32),
                         digests)

    def identify(self, paths: Sequence[str | Path], *, dataset: str | None = None,
                 max_false_positive: float = MAX_FALSE_POSITIVE, by: str = "local",
                 max_frames: int = 256) -> Identification:
        """Name the recipient of a leaked copy: ``paths`` are release directories, image
        files, videos or directories of images (:func:`~vault.fingerprint.suspect.read_suspects`).
        Every export (of ``dataset``) is a candidate; the result and the inputs are an audit
        entry."""
        suspect: Suspect = read_suspects(paths, max_frames=max_frames)
        candidates = self.exports(dataset=dataset)
        key = self.key() if candidates else b""  # nothing exported yet: no key, no match
        nulls = codes(key, (f"null/{i}" for i in range(NULL_PATTERNS))) if candidates else []
        groups: dict[tuple[str, int], list[ExportInfo]] = {}
        for c in candidates:
            groups.setdefault((c.dataset, c.release), []).append(c)
        scored: list[tuple[ExportInfo, float, float]] = []
        null_mean = null_std = 0.0
        informed = 0
        for (ds, version), exports in groups.items():
            ev = evidence(suspect.frames, self._originals(ds, version, by))
            z = scores(ev, codes(key, (e.label for e in exports)))
            zn = scores(ev, nulls)
            mean, std = float(zn.mean()), float(zn.std()) or 1.0
            if ev.informed >= informed:
                informed, null_mean, null_std = ev.informed, mean, std
            scored += [(e, float(x), (float(x) - mean) / std) for e, x in zip(exports, z,
                                                                               strict=True)]
        m = max(len(candidates), 1)
        ranked = sorted((Match(e, z, zn, min(1.0, m * math.exp(-max(z, 0.0) ** 2 / 2)))
                         for e, z, zn in scored), key=lambda x: -x.z)
        exact = tuple(e.export_id for e in candidates
                      if e.release_sha256 and e.release_sha256 in suspect.release_sha256s)
        result = Identification(
            tuple(x for x in ranked if x.p_false <= max_false_positive),
            ranked[0] if ranked else None, len(candidates), len(suspect.frames), informed,
            null_mean, null_std, tuple(suspect.inputs), exact)
        where = dataset or (result.best.export.dataset if result.best else None)
        self.vault.audit.append(by, "fingerprint_identify", dataset=where, details={
            "inputs": list(suspect.inputs)[:50], "frames": result.frames,
            "candidates": result.candidates, "identified": result.identified,
            "matches": [x.as_dict() for x in result.matches][:10],
            "best": result.best.as_dict() if result.best else None})
        return result
