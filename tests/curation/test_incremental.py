"""Re-running curation: idempotent, incremental by content hash, resumable, immutable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import curation.pipeline as pipeline
from curation import curate, release_versions
from curation.labels import load_labels


def test_same_inputs_make_no_new_version(tmp_path: Path, clean_session: Path) -> None:
    first = curate([clean_session], tmp_path, "r")
    again = curate([clean_session], tmp_path, "r")
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    assert again.decoded_files == 0 and again.cached_files == 2
    assert [v for v, _ in release_versions(tmp_path / "r")] == [1]


def test_more_recordings_add_only_what_is_new(tmp_path: Path, clean_session: Path,
                                              second_session: Path) -> None:
    curate([clean_session], tmp_path, "r")
    r2 = curate([second_session], tmp_path, "r")
    assert r2.version == 2 and r2.new_episodes == 2 and r2.episodes == 4
    assert r2.decoded_files == 2  # only the new session's files were decoded
    v1 = json.loads((tmp_path / "r/v1/episodes.json").read_text())["episodes"]
    v2 = json.loads((tmp_path / "r/v2/episodes.json").read_text())["episodes"]
    assert len(v1) == 2 and [e["key"] for e in v2[:2]] == [e["key"] for e in v1]
    assert {e["operator"] for e in v2} == {"alice", "bob"}


def test_duplicate_file_is_ingested_once(tmp_path: Path, clean_session: Path) -> None:
    import shutil

    copy = tmp_path / "copy.mcap"
    shutil.copy(sorted(clean_session.glob("*.mcap"))[0], copy)
    r = curate([clean_session, copy], tmp_path / "out", "r")
    assert r.episodes == 2
    assert any("same content" in s["reason"] for s in r.skipped)


def test_interrupted_run_publishes_nothing_and_resumes_from_the_cache(
        tmp_path: Path, clean_session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_release", crash)
    with pytest.raises(KeyboardInterrupt):
        curate([clean_session], tmp_path, "r")
    assert release_versions(tmp_path / "r") == []
    assert not list((tmp_path / "r").glob(".v*"))  # no half-written version left
    monkeypatch.undo()
    r = curate([clean_session], tmp_path, "r")
    assert r.created and r.version == 1
    assert r.decoded_files == 0 and r.cached_files == 2


def test_new_labels_make_a_new_version_and_leave_the_old_one_untouched(
        tmp_path: Path, clean_session: Path) -> None:
    curate([clean_session], tmp_path, "r")
    before = (tmp_path / "r/v1/episodes.json").read_bytes()
    r = curate([clean_session], tmp_path, "r", labels=load_labels(None, ["task=pour"]))
    assert r.version == 2
    assert (tmp_path / "r/v1/episodes.json").read_bytes() == before
    eps = json.loads((tmp_path / "r/v2/episodes.json").read_text())["episodes"]
    assert {e["task"] for e in eps} == {"pour"}
    assert eps[0]["labels_source"]["task"] == "cli"


def test_interrupted_while_frames_are_written_early_leaves_nothing(
        tmp_path: Path, clean_session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the second file loads, the first file's frames already being written."""
    real = pipeline._load
    calls: list[int] = []

    def load(*args: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "_load", load)
    monkeypatch.setattr(pipeline, "_window", lambda pool, fn, items, ahead: map(fn, items))
    with pytest.raises(KeyboardInterrupt):
        curate([clean_session], tmp_path, "r")
    assert release_versions(tmp_path / "r") == []
    assert not list((tmp_path / "r").glob(".v*"))
    monkeypatch.undo()
    r = curate([clean_session], tmp_path, "r")
    assert r.created and r.episodes == 2 and r.cached_files == 1
