"""The catalog: providers, their datasets, the recordings and releases of each dataset and
the episodes of each release, imported from a curated release (its ``manifest.json``,
``episodes.json`` and stream metadata; see docs/release-format.md).

What a lab may see before a grant is a dataset's description (:class:`DatasetDescription`:
streams, rates, shapes, episode count, the episode table's label schema), never its
episodes, recordings or paths; those are the provider's and the reviewers' view
(:meth:`Catalog.episodes`, :meth:`Catalog.release`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from curation.errors import CurationError
from curation.manifest import MANIFEST, verify
from curation.release import episode_table, release_attrs, resolve

from .db import (
    Base,
    CatalogError,
    Clock,
    Conflict,
    Database,
    EventHook,
    NotFound,
    UtcDateTime,
    make_event,
    utcnow,
)

__all__ = [
    "NAME_PATTERN", "Catalog", "DatasetDescription", "EpisodeInfo", "FieldInfo", "ProviderInfo",
    "RecordingInfo", "ReleaseDescription", "ReleaseInfo", "StreamInfo", "check_name",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""Names of providers, datasets, labs and identities: lower case, URL- and path-safe."""


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid name of a ``kind`` (provider, dataset, ...), else a
    :class:`CatalogError` saying what a name may hold."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise CatalogError(f"{kind} name {name!r} is not valid: 1 to 64 characters of a-z, 0-9, "
                           "'.', '_', '-', starting with a letter or digit")
    return name


# -- tables ----------------------------------------------------------------------------------

class Provider(Base):
    """A company that provides data."""

    __tablename__ = "providers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    datasets: Mapped[list[Dataset]] = relationship(back_populates="provider")


class Dataset(Base):
    """A provider's dataset: the releases of one kind of recordings."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    required_approvals: Mapped[int] = mapped_column(Integer, default=2)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    provider: Mapped[Provider] = relationship(back_populates="datasets")
    releases: Mapped[list[Release]] = relationship(back_populates="dataset",
                                                   order_by="Release.version")


class Recording(Base):
    """A source recording (an MCAP file) that episodes of the dataset's releases come from."""

    __tablename__ = "recordings"
    __table_args__ = (UniqueConstraint("dataset_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    source_file: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Release(Base):
    """One immutable release version of a dataset, as curated."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    release_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40), default="")
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime)
    episode_count: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    streams: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    label_schema: Mapped[dict[str, str]] = mapped_column(JSON)
    dataset: Mapped[Dataset] = relationship(back_populates="releases")


class Episode(Base):
    """One row of a release's episode table."""

    __tablename__ = "episodes"
    __table_args__ = (UniqueConstraint("release_id", "index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), nullable=True)
    index: Mapped[int] = mapped_column(Integer)
    episode_id: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(Text)
    success: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float] = mapped_column(Float)
    quality_score: Mapped[float] = mapped_column(Float)
    flags: Mapped[int] = mapped_column(Integer)
    streams: Mapped[dict[str, int]] = mapped_column(JSON)
    provenance_kind: Mapped[str] = mapped_column(String(32))
    release: Mapped[Release] = relationship()
    recording: Mapped[Recording | None] = relationship()


# -- views -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProviderInfo:
    """A provider as the catalog lists it."""

    name: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True)
class FieldInfo:
    """One array of a stream: its dtype and the shape of one row (trailing dimensions);
    ``ragged`` for variable-length bytes (camera frames), whose row shape is ``()``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    ragged: bool = False


@dataclass(frozen=True)
class StreamInfo:
    """A stream of a release as a lab may see it before a grant."""

    name: str
    topic: str
    type: str
    role: str
    rate_hz: float | None
    count: int
    fields: tuple[FieldInfo, ...]
    joint_names: tuple[str, ...] = ()
    camera: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        """The stream from its stored form (:meth:`as_dict`)."""
        return cls(name=d["name"], topic=d["topic"], type=d["type"], role=d["role"],
                   rate_hz=d["rate_hz"], count=d["count"],
                   fields=tuple(FieldInfo(f["name"], f["dtype"], tuple(f["shape"]), f["ragged"])
                                for f in d["fields"]),
                   joint_names=tuple(d.get("joint_names", ())), camera=d.get("camera"))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the stored form)."""
        return {"name": self.name, "topic": self.topic, "type": self.type, "role": self.role,
                "rate_hz": self.rate_hz, "count": self.count,
                "fields": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape),
                            "ragged": f.ragged} for f in self.fields],
                "joint_names": list(self.joint_names), "camera": self.camera}


@dataclass(frozen=True)
class ReleaseDescription:
    """A release as a lab may see it before a grant: no path, no episode rows."""

    name: str
    version: int
    release_sha256: str
    created_at: str
    episode_count: int
    duration_s: float
    streams: tuple[StreamInfo, ...]
    label_schema: dict[str, str]


@dataclass(frozen=True)
class DatasetDescription:
    """What a lab may see of a dataset before a grant."""

    name: str
    provider: str
    title: str
    summary: str
    required_approvals: int
    releases: tuple[ReleaseDescription, ...]

    @property
    def latest(self) -> ReleaseDescription | None:
        """The newest release, if any."""
        return self.releases[-1] if self.releases else None

    @property
    def episode_count(self) -> int:
        """Episodes of the newest release (0 without a release)."""
        return self.releases[-1].episode_count if self.releases else 0


@dataclass(frozen=True)
class ReleaseInfo:
    """A release as the provider and the vault itself see it (with its path)."""

    dataset: str
    name: str
    version: int
    release_sha256: str
    path: Path
    imported_at: datetime
    description: ReleaseDescription

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The names of the release's streams."""
        return tuple(s.name for s in self.description.streams)


@dataclass(frozen=True)
class RecordingInfo:
    """A source recording of a dataset."""

    sha256: str
    source_file: str
    size: int | None


@dataclass(frozen=True)
class EpisodeInfo:
    """An episode of a release (the provider's and the reviewers' view)."""

    index: int
    episode_id: str
    key: str
    task: str
    success: bool | None
    outcome: str
    split: str
    duration_s: float
    quality_score: float
    flags: int
    streams: dict[str, int]
    provenance_kind: str
    recording_sha256: str | None


# -- the catalog -----------------------------------------------------------------------------

class Catalog:
    """The catalog of a vault. ``url_or_root``: the vault root (SQLite at
    ``ROOT/catalog.sqlite``), a SQLAlchemy URL, or an open :class:`Database`. ``on_event``
    receives one event dict per change (a provider, a dataset, a release imported); ``by``
    of each change names who made it (the local operator by default)."""

    def __init__(self, url_or_root: str | Path | Database, *, clock: Clock = utcnow,
                 on_event: EventHook | None = None) -> None:
        self.db = url_or_root if isinstance(url_or_root, Database) else Database(url_or_root,
                                                                                  clock=clock)
        self._on_event = on_event

    def _emit(self, event: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def __repr__(self) -> str:
        return f"Catalog({self.db!r})"

    def close(self) -> None:
        """Close the database connections."""
        self.db.dispose()

    # -- providers and datasets ----------------------------------------------------------------
    def create_provider(self, name: str, *, display_name: str = "",
                        by: str = "local") -> ProviderInfo:
        """A new provider (:class:`Conflict` when the name is taken)."""
        check_name("provider", name)
        with self.db.write() as s:
            if s.scalars(select(Provider).where(Provider.name == name)).first():
                raise Conflict(f"provider {name!r} already exists")
            p = Provider(name=name, display_name=display_name, created_at=self.db.clock())
            s.add(p)
            s.flush()
            self._emit(make_event(by, "provider_created", None, provider=name))
        return ProviderInfo(p.name, p.display_name, p.created_at)

    def providers(self) -> list[ProviderInfo]:
        """Every provider, by name."""
        with self.db.read() as s:
            return [ProviderInfo(p.name, p.display_name, p.created_at)
                    for p in s.scalars(select(Provider).order_by(Provider.name))]

    def create_dataset(self, provider: str, name: str, *, title: str = "", summary: str = "",
                       required_approvals: int = 2, by: str = "local") -> DatasetDescription:
        """A new, empty dataset of ``provider``; ``required_approvals``: how many distinct
        reviewers must approve an access request (1 or 2; the provider may change it later
        through the review workflow)."""
        check_name("dataset", name)
        _check_approvals(required_approvals)
        with self.db.write() as s:
            prov = s.scalars(select(Provider).where(Provider.name == provider)).first()
            if prov is None:
                raise NotFound(f"no provider {provider!r}")
            if s.scalars(select(Dataset).where(Dataset.name == name)).first():
                raise Conflict(f"dataset {name!r} already exists")
            s.add(Dataset(provider=prov, name=name, title=title, summary=summary,
                          required_approvals=required_approvals, created_at=self.db.clock()))
            s.flush()
            self._emit(make_event(by, "dataset_created", name, provider=provider,
                                  required_approvals=required_approvals))
        return self.describe_dataset(name)

    def list_datasets(self, *, provider: str | None = None) -> list[DatasetDescription]:
        """Every dataset's description (a lab's view), by name; ``provider`` filters."""
        with self.db.read() as s:
            q = select(Dataset).order_by(Dataset.name)
            if provider is not None:
                q = q.join(Provider).where(Provider.name == provider)
            return [_describe(d) for d in s.scalars(q)]

    def describe_dataset(self, name: str) -> DatasetDescription:
        """A dataset's description (a lab's view: no episode rows, no paths)."""
        with self.db.read() as s:
            return _describe(dataset_row(s, name))

    # -- releases ------------------------------------------------------------------------------
    def import_release(self, dataset: str, release_path: str | Path, *,
                       check_files: bool = True, by: str = "local") -> ReleaseInfo:
        """Catalog a curated release version (a ``vN`` directory, or a release name
        directory: its newest version) into ``dataset``: the release, its episodes and the
        recordings they come from.

        ``check_files``: hash every file against the release's manifest first and refuse a
        release whose files differ. Importing the same version again (same
        ``release_sha256``) returns the catalogued one; the same version with another
        content is a :class:`Conflict` (published versions never change)."""
        with self.db.read() as s:
            dataset_row(s, dataset)  # before hashing a release for a dataset that is not there
        try:
            path = resolve(release_path).resolve()
            attrs = release_attrs(path)
            rows = episode_table(path)
            manifest = json.loads((path / MANIFEST).read_text())
            if check_files and (bad := verify(path)):
                more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
                raise CatalogError(f"{path}: the release's files differ from its manifest: "
                                   f"{'; '.join(bad[:5])}{more}")
        except (CurationError, OSError, ValueError) as exc:
            raise CatalogError(f"{release_path}: cannot import the release: {exc}") from exc
        sha = manifest.get("release_sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise CatalogError(f"{path / MANIFEST}: no release_sha256")
        version = int(attrs["version"])
        streams = [_stream_info(path, n) for n in attrs["streams"]]
        episodes = [_episode_fields(path, i, r) for i, r in enumerate(rows)]
        if len(episodes) != attrs.get("episodes", len(episodes)):
            raise CatalogError(f"{path}: episodes.json has {len(episodes)} rows, the release "
                               f"attributes say {attrs.get('episodes')}")
        now = self.db.clock()
        with self.db.write() as s:
            ds = dataset_row(s, dataset)
            old = s.scalars(select(Release).where(Release.dataset_id == ds.id,
                                                  Release.version == version)).first()
            if old is not None:
                if old.release_sha256 != sha:
                    raise Conflict(f"dataset {dataset!r} already has release version {version} "
                                   f"with sha256 {old.release_sha256}; {path} has {sha}")
                return _release_info(old)
            rel = Release(dataset=ds, name=str(attrs["name"]), version=version,
                          release_sha256=sha, path=str(path),
                          created_at=str(attrs.get("created_at") or ""), imported_at=now,
                          episode_count=len(episodes),
                          duration_s=round(sum(e["duration_s"] for e in episodes), 6),
                          streams=[st.as_dict() for st in streams],
                          label_schema=_label_schema(rows))
            s.add(rel)
            recordings: dict[str, Recording] = {
                r.sha256: r for r in s.scalars(select(Recording).where(
                    Recording.dataset_id == ds.id))}
            for ep, row in zip(episodes, rows, strict=True):
                prov = row.get("provenance") or {}
                rec = None
                src = prov.get("source_sha256") if prov.get("kind") == "recording" else None
                if isinstance(src, str) and src:
                    rec = recordings.get(src)
                    if rec is None:
                        rec = Recording(dataset_id=ds.id, sha256=src,
                                        source_file=str(prov.get("source_file") or ""),
                                        size=prov.get("source_size"), created_at=now)
                        s.add(rec)
                        recordings[src] = rec
                s.add(Episode(release=rel, recording=rec, **ep))
            s.flush()
            self._emit(make_event(by, "release_imported", dataset, release=version, name=rel.name,
                                  release_sha256=sha, episodes=len(episodes),
                                  files_checked=check_files))
            return _release_info(rel)

    def releases(self, dataset: str) -> list[ReleaseInfo]:
        """The dataset's releases, oldest first."""
        with self.db.read() as s:
            return [_release_info(r) for r in dataset_row(s, dataset).releases]

    def release(self, dataset: str, version: int | None = None) -> ReleaseInfo:
        """One release of a dataset (``None``: the newest)."""
        with self.db.read() as s:
            return _release_info(release_row(s, dataset, version))

    def episodes(self, dataset: str, version: int | None = None) -> list[EpisodeInfo]:
        """The episode table of a release, in release order."""
        with self.db.read() as s:
            rel = release_row(s, dataset, version)
            eps = s.scalars(select(Episode).where(Episode.release_id == rel.id)
                            .order_by(Episode.index))
            return [_episode_info(e) for e in eps]

    def add_recording(self, dataset: str, sha256: str, *, source_file: str = "",
                      size: int | None = None, by: str = "local") -> RecordingInfo:
        """Catalog a source recording of ``dataset`` by its sha256 (a recording stored in
        the vault before any release uses it); adding one the catalog has changes nothing."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            raise CatalogError(f"recording sha256 {sha256!r} is not 64 lower-case hex digits")
        with self.db.write() as s:
            ds = dataset_row(s, dataset)
            rec = s.scalars(select(Recording).where(Recording.dataset_id == ds.id,
                                                    Recording.sha256 == sha256)).first()
            if rec is None:
                rec = Recording(dataset_id=ds.id, sha256=sha256, source_file=source_file,
                                size=size, created_at=self.db.clock())
                s.add(rec)
                s.flush()
                self._emit(make_event(by, "recording_added", dataset, sha256=sha256,
                                      source_file=source_file, size=size))
            return RecordingInfo(rec.sha256, rec.source_file, rec.size)

    def recordings(self, dataset: str) -> list[RecordingInfo]:
        """The source recordings of the dataset's releases, by sha256."""
        with self.db.read() as s:
            ds = dataset_row(s, dataset)
            return [RecordingInfo(r.sha256, r.source_file, r.size) for r in s.scalars(
                select(Recording).where(Recording.dataset_id == ds.id).order_by(Recording.sha256))]


# -- rows (shared with identities and review) ------------------------------------------------

def dataset_row(s: Session, name: str, *, lock: bool = False) -> Dataset:
    """The dataset named ``name`` (:class:`NotFound` otherwise); ``lock``: FOR UPDATE."""
    q = select(Dataset).where(Dataset.name == name)
    d = s.scalars(q.with_for_update() if lock else q).first()
    if d is None:
        raise NotFound(f"no dataset {name!r}")
    return d


def release_row(s: Session, dataset: str, version: int | None) -> Release:
    """A release of a dataset by version (``None``: the newest)."""
    ds = dataset_row(s, dataset)
    q = select(Release).where(Release.dataset_id == ds.id)
    rel = s.scalars(q.order_by(Release.version.desc()) if version is None
                    else q.where(Release.version == version)).first()
    if rel is None:
        have = [r.version for r in ds.releases]
        what = "no release" if version is None else f"no release version {version}"
        raise NotFound(f"dataset {dataset!r} has {what} (versions: {have or 'none'})")
    return rel


def _check_approvals(n: int) -> None:
    if n not in (1, 2):
        raise CatalogError(f"required approvals must be 1 or 2, not {n!r}")


def _describe(d: Dataset) -> DatasetDescription:
    return DatasetDescription(name=d.name, provider=d.provider.name, title=d.title,
                              summary=d.summary, required_approvals=d.required_approvals,
                              releases=tuple(_release_description(r) for r in d.releases))


def _release_description(r: Release) -> ReleaseDescription:
    return ReleaseDescription(name=r.name, version=r.version, release_sha256=r.release_sha256,
                              created_at=r.created_at, episode_count=r.episode_count,
                              duration_s=r.duration_s,
                              streams=tuple(StreamInfo.from_dict(x) for x in r.streams),
                              label_schema=dict(r.label_schema))


def _release_info(r: Release) -> ReleaseInfo:
    return ReleaseInfo(dataset=r.dataset.name, name=r.name, version=r.version,
                       release_sha256=r.release_sha256, path=Path(r.path),
                       imported_at=r.imported_at, description=_release_description(r))


def _episode_info(e: Episode) -> EpisodeInfo:
    return EpisodeInfo(index=e.index, episode_id=e.episode_id, key=e.key, task=e.task,
                       success=e.success, outcome=e.outcome, split=e.split,
                       duration_s=e.duration_s, quality_score=e.quality_score, flags=e.flags,
                       streams=dict(e.streams), provenance_kind=e.provenance_kind,
                       recording_sha256=e.recording.sha256 if e.recording else None)


# -- reading a release -----------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(out, dict):
        raise CatalogError(f"{path}: not a JSON object")
    return out


def _array(path: Path) -> tuple[str, tuple[int, ...]]:
    meta = _read_json(path / "zarr.json")
    if meta.get("node_type") != "array":
        raise CatalogError(f"{path / 'zarr.json'}: not a Zarr array")
    return str(meta["data_type"]), tuple(int(n) for n in meta["shape"][1:])


def _stream_info(release: Path, name: str) -> StreamInfo:
    d = release / "streams" / name
    attrs = _read_json(d / "zarr.json").get("attributes") or {}
    fields = []
    for f in attrs.get("fields", []):
        dtype, shape = _array(d / f)
        fields.append(FieldInfo(f, dtype, shape))
    for f in attrs.get("ragged", []):
        fields.append(FieldInfo(f, str(attrs.get("dtype", "uint8")), (), ragged=True))
    return StreamInfo(name=name, topic=str(attrs.get("topic", "")), type=str(attrs.get("type", "")),
                      role=str(attrs.get("role", "unknown")),
                      rate_hz=None if attrs.get("rate_hz") is None else float(attrs["rate_hz"]),
                      count=int(attrs.get("count", 0)), fields=tuple(fields),
                      joint_names=tuple(attrs.get("joint_names", ())), camera=attrs.get("camera"))


def _episode_fields(release: Path, i: int, row: dict[str, Any]) -> dict[str, Any]:
    where = f"{release / 'episodes.json'}: episode {i}"
    try:
        if row["index"] != i:
            raise CatalogError(f"{where}: index is {row['index']}, expected {i}")
        return {"index": i, "episode_id": str(row["episode_id"]), "key": str(row["key"]),
                "task": str(row["task"]),
                "success": None if row["success"] is None else bool(row["success"]),
                "outcome": str(row["outcome"]), "split": str(row["split"]),
                "duration_s": float(row["duration_s"]),
                "quality_score": float(row["quality_score"]), "flags": int(row["flags"]),
                "streams": {str(k): int(v) for k, v in row["streams"].items()},
                "provenance_kind": str((row.get("provenance") or {}).get("kind", ""))}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CatalogError(f"{where}: bad or missing field: {exc!r}") from exc


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _label_schema(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The episode table's keys with their JSON types (``"boolean|null"`` when mixed)."""
    types: dict[str, set[str]] = {}
    for r in rows:
        for k, v in r.items():
            types.setdefault(k, set()).add(_json_type(v))
    return {k: "|".join(sorted(t, key=lambda x: (x == "null", x))) for k, t in sorted(types.items())}
