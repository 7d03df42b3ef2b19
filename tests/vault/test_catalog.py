"""The catalog on SQLite (the embedded default) and on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from curation.manifest import write_manifest
from tests.vault.pgserver import (  # noqa: F401
    SCRIPT,
    database_url,
    postgres_server,
    release_dir,
    start_server,
)
from vault.catalog import Catalog, DatasetDescription, ReleaseDescription
from vault.db import SQLITE_NAME, CatalogError, Conflict, Database, NotFound, SchemaVersion


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:  # noqa: F811
    c = Catalog(database_url)
    c.create_provider("acme", display_name="ACME Robotics")
    c.create_dataset("acme", "pick", title="Pick and place", summary="cups on a table",
                     required_approvals=1)
    yield c
    c.close()


def _copy_release(src: Path, dst: Path, *, version: int | None = None,
                  task: str | None = None) -> Path:
    """A copy of a release, changed as a curator's next version would be, manifest rewritten."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "zarr.json").read_text())
    if version is not None:
        meta["attributes"]["demofab"]["version"] = version
        (dst / "zarr.json").write_text(json.dumps(meta))
    if task is not None:
        table = json.loads((dst / "episodes.json").read_text())
        for row in table["episodes"]:
            row["task"] = task
        (dst / "episodes.json").write_text(json.dumps(table))
    attrs = meta["attributes"]["demofab"]
    write_manifest(dst, attrs["name"], attrs["version"])
    return dst


def test_a_release_is_catalogued_with_its_episodes_and_recordings(
        catalog: Catalog, release_dir: Path) -> None:  # noqa: F811
    info = catalog.import_release("pick", release_dir)
    manifest = json.loads((release_dir / "manifest.json").read_text())
    assert (info.dataset, info.name, info.version) == ("pick", "pick", 1)
    assert info.release_sha256 == manifest["release_sha256"]
    assert info.path == release_dir.resolve()
    table = json.loads((release_dir / "episodes.json").read_text())["episodes"]
    episodes = catalog.episodes("pick", 1)
    assert [e.index for e in episodes] == [0, 1, 2]
    assert [e.episode_id for e in episodes] == [r["episode_id"] for r in table]
    assert all(e.task == "stack cups" and e.success is True for e in episodes)
    assert [e.duration_s for e in episodes] == [r["duration_s"] for r in table]
    assert episodes[0].streams["joint_states"] == table[0]["streams"]["joint_states"]
    assert {r.sha256 for r in catalog.recordings("pick")} == {
        r["provenance"]["source_sha256"] for r in table}
    assert [e.recording_sha256 for e in episodes] == [
        r["provenance"]["source_sha256"] for r in table]


def test_a_lab_sees_streams_rates_shapes_count_and_label_schema_but_no_rows_or_paths(
        catalog: Catalog, release_dir: Path) -> None:  # noqa: F811
    catalog.import_release("pick", release_dir)
    d = catalog.describe_dataset("pick")
    assert (d.name, d.provider, d.title, d.required_approvals) == ("pick", "acme",
                                                                   "Pick and place", 1)
    assert d.episode_count == 3
    rel = d.latest
    assert rel is not None and rel.version == 1
    streams = {s.name: s for s in rel.streams}
    js = streams["joint_states"]
    assert (js.topic, js.type, js.role, js.rate_hz) == (
        "/joint_states", "sensor_msgs/msg/JointState", "observation", 500.0)
    assert {f.name: (f.dtype, f.shape) for f in js.fields}["position"] == ("float64", (43,))
    assert len(js.joint_names) == 43
    head = streams["camera.head.image_raw.compressed"]
    assert [(f.name, f.ragged) for f in head.fields] == [("data", True)]
    assert head.camera is not None and head.camera["format"] == "jpeg"
    imu = {f.name: f.shape for f in streams["imu"].fields}
    assert imu["orientation"] == (4,) and imu["angular_velocity"] == (3,)
    assert rel.label_schema["success"] == "boolean"
    assert rel.label_schema["task"] == "string"
    assert rel.label_schema["duration_s"] == "number"
    # the description types hold no path and no episode rows
    for cls in (DatasetDescription, ReleaseDescription):
        names = set(cls.__dataclass_fields__)
        assert not names & {"path", "episodes"}, cls
    assert "stack cups" not in repr(d) and str(release_dir) not in repr(d)
    assert [x.name for x in catalog.list_datasets()] == ["pick"]
    assert catalog.list_datasets(provider="nobody") == []


def test_importing_the_same_release_again_changes_nothing(
        catalog: Catalog, release_dir: Path) -> None:  # noqa: F811
    first = catalog.import_release("pick", release_dir)
    again = catalog.import_release("pick", release_dir.parent)  # the name dir: its newest
    assert again == first
    assert len(catalog.episodes("pick")) == 3
    assert len(catalog.releases("pick")) == 1


def test_a_release_whose_files_differ_from_its_manifest_is_refused(
        catalog: Catalog, release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "pick" / "v1"
    shutil.copytree(release_dir, bad)
    stats = bad / "stats.json"
    stats.write_text(stats.read_text().replace("0", "1", 1))
    with pytest.raises(CatalogError, match=r"differ from its manifest: stats.json: sha256 differs"):
        catalog.import_release("pick", bad)
    assert catalog.releases("pick") == []


def test_the_same_version_with_other_content_is_a_conflict(
        catalog: Catalog, release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    catalog.import_release("pick", release_dir)
    other = _copy_release(release_dir, tmp_path / "pick" / "v1", task="other task")
    with pytest.raises(Conflict, match="already has release version 1 with sha256"):
        catalog.import_release("pick", other)
    assert {e.task for e in catalog.episodes("pick")} == {"stack cups"}


def test_versions_are_listed_oldest_first_and_the_newest_is_the_default(
        catalog: Catalog, release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    v2 = _copy_release(release_dir, tmp_path / "pick" / "v2", version=2, task="stack bowls")
    catalog.import_release("pick", v2)
    catalog.import_release("pick", release_dir)
    assert [r.version for r in catalog.releases("pick")] == [1, 2]
    assert catalog.release("pick").version == 2
    assert {e.task for e in catalog.episodes("pick")} == {"stack bowls"}
    assert {e.task for e in catalog.episodes("pick", 1)} == {"stack cups"}
    assert [r.version for r in catalog.describe_dataset("pick").releases] == [1, 2]
    # the same recordings feed both versions: catalogued once
    assert len(catalog.recordings("pick")) == 3
    with pytest.raises(NotFound, match=r"no release version 7 \(versions: \[1, 2\]\)"):
        catalog.release("pick", 7)


def test_names_are_checked_and_duplicates_refused(catalog: Catalog) -> None:
    with pytest.raises(Conflict, match="provider 'acme' already exists"):
        catalog.create_provider("acme")
    with pytest.raises(Conflict, match="dataset 'pick' already exists"):
        catalog.create_dataset("acme", "pick")
    with pytest.raises(NotFound, match="no provider 'nobody'"):
        catalog.create_dataset("nobody", "x")
    for bad in ("../etc", "Pick", "", "a/b", "x" * 65):
        with pytest.raises(CatalogError, match="dataset name .* is not valid"):
            catalog.create_dataset("acme", bad)
    with pytest.raises(CatalogError, match="required approvals must be 1 or 2, not 3"):
        catalog.create_dataset("acme", "triple", required_approvals=3)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        catalog.describe_dataset("nope")
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        catalog.import_release("nope", "/nonexistent")


def test_a_path_that_is_no_release_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot import the release: .*neither a release version"):
        catalog.import_release("pick", tmp_path)


def test_the_catalog_persists_and_reopens(database_url: str, release_dir: Path) -> None:  # noqa: F811
    first = Catalog(database_url)
    first.create_provider("acme")
    first.create_dataset("acme", "pick")
    first.import_release("pick", release_dir)
    first.close()
    again = Catalog(database_url)
    assert again.describe_dataset("pick").episode_count == 3
    assert again.describe_dataset("pick").required_approvals == 2  # the default: two reviewers
    again.close()


def test_a_database_of_another_schema_version_is_refused(database_url: str) -> None:  # noqa: F811
    db = Database(database_url)
    with db.write() as s:
        s.execute(update(SchemaVersion).values(version=99))
    db.dispose()
    with pytest.raises(CatalogError, match="schema version 99; this DemoFab reads version 1"):
        Database(database_url)


def test_sqlite_is_the_default_under_the_vault_root_in_wal_mode(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    c = Catalog(root)
    c.create_provider("acme")
    c.close()
    with sqlite3.connect(root / SQLITE_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT name FROM providers").fetchall() == [("acme",)]
    assert Catalog(f"sqlite:///{root / SQLITE_NAME}").providers()[0].name == "acme"


def test_unsupported_urls_and_roots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="backend 'mysql' is not supported"):
        Database("mysql://u@localhost/x")
    with pytest.raises(CatalogError, match="driver 'pg8000' is not supported"):
        Database("postgresql+pg8000://u@/x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CatalogError, match="exists and is not a directory"):
        Database(tmp_path / "file")


def test_catalog_changes_are_events_for_the_audit_log(tmp_path: Path, release_dir: Path) -> None:  # noqa: F811
    events: list[dict[str, Any]] = []
    c = Catalog(tmp_path / "vault", on_event=events.append)
    c.create_provider("acme", by="admin")
    c.create_dataset("acme", "pick", by="prov")
    info = c.import_release("pick", release_dir, by="curator")
    assert [(e["actor"], e["action"], e["dataset"]) for e in events] == [
        ("admin", "provider_created", None), ("prov", "dataset_created", "pick"),
        ("curator", "release_imported", "pick")]
    assert events[-1]["details"] == {"release": 1, "name": "pick",
                                     "release_sha256": info.release_sha256, "episodes": 3,
                                     "files_checked": True}
    c.import_release("pick", release_dir)  # catalogued already: no change, no event
    assert len(events) == 3


def test_the_sqlite_catalog_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    Catalog(root).create_provider("acme")
    assert root.stat().st_mode & 0o777 == 0o700
    for p in root.iterdir():
        assert p.stat().st_mode & 0o077 == 0, p


def test_a_postgresql_url_without_a_driver_uses_psycopg(postgres_server: str) -> None:  # noqa: F811
    db = Database(postgres_server.replace("postgresql+psycopg://", "postgresql://"))
    assert db.url.drivername == "postgresql+psycopg" and db.backend == "postgresql"
    db.dispose()


def test_the_test_server_listens_on_its_unix_socket_only(postgres_server: str) -> None:  # noqa: F811
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_server)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW listen_addresses")).scalar() == ""
        assert conn.execute(text("SHOW fsync")).scalar() == "off"
    engine.dispose()
    # starting it again is harmless: the same URL
    run_dir = Path(make_url(postgres_server).query["host"])  # type: ignore[arg-type]
    again = subprocess.run(["bash", str(SCRIPT), "start", str(run_dir.parent)],
                           capture_output=True, text=True, check=True)
    assert again.stdout.strip() == postgres_server


def test_without_postgresql_binaries_the_server_fixture_fails_naming_system_deps(
        tmp_path: Path) -> None:
    env = dict(os.environ, PG_BIN=str(tmp_path / "no-bin"))
    with pytest.raises(pytest.fail.Exception, match=r"not installed .*tools/system-deps.sh"):
        start_server(str(tmp_path / "pg"), env=env)
    assert not (tmp_path / "pg").exists()
    # stopping where nothing runs is fine, and says nothing
    stop = subprocess.run(["bash", str(SCRIPT), "stop", str(tmp_path / "pg")],
                          capture_output=True, text=True, check=False)
    assert (stop.returncode, stop.stderr) == (0, "")


def test_a_recording_is_catalogued_once_by_its_hash(catalog: Catalog, release_dir: Path) -> None:  # noqa: F811
    sha = "ab" * 32
    first = catalog.add_recording("pick", sha, source_file="s1/episode_0000.mcap", size=10)
    assert catalog.add_recording("pick", sha) == first
    assert [r.sha256 for r in catalog.recordings("pick")] == [sha]
    with pytest.raises(CatalogError, match="is not 64 lower-case hex digits"):
        catalog.add_recording("pick", "../../etc/passwd")
    catalog.import_release("pick", release_dir)
    assert len(catalog.recordings("pick")) == 4


def _at_once(catalogs: tuple[Catalog, ...], name: str) -> list[object]:
    """Each catalog creates provider ``name`` at the same moment: what each got."""
    barrier = threading.Barrier(len(catalogs))
    results: list[object] = []

    def create(c: Catalog) -> None:
        barrier.wait()
        try:
            results.append(c.create_provider(name))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=create, args=(c,)) for c in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_writers_taking_one_name_at_once_get_one_provider_and_one_conflict(
        database_url: str) -> None:  # noqa: F811
    pair = (Catalog(database_url), Catalog(database_url))
    for i in range(3):
        results = _at_once(pair, f"p{i}")
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "ProviderInfo"], results
    assert [p.name for p in pair[0].providers()] == ["p0", "p1", "p2"]
    for c in pair:
        c.close()
