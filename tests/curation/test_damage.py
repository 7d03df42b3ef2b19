"""Curation of an episode with a damaged chunk: the damage costs only that chunk. The
episode keeps the time after it, and the episode's ``truncated`` flag names the lost log
time range and bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation import curate
from curation.ingest import ingest_file
from curation.inputs import InputFile
from curation.mcapread import read_mcap
from curation.report import render_release
from tests.mcapchunks import chunk_counts, chunks_of

from .conftest import record_session


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2 s episode of the humanoid rig: about ten 1 MB chunks."""
    out = record_session(tmp_path_factory.mktemp("damage") / "s_dana", episodes=1,
                         seconds=2.0, operator="dana")
    return out / "episode_0000.mcap"


@pytest.fixture(scope="module")
def clean(episode: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    (e,) = _episodes(curate([episode], tmp_path_factory.mktemp("clean"), "r").release)
    return e


def _episodes(release: Path) -> list[dict]:
    return json.loads((release / "episodes.json").read_text())["episodes"]




def damaged_copy(src: Path, dest: Path, where: str) -> tuple[int, bool]:
    """Zero 2,000 bytes of one chunk of ``src`` into ``dest``; the chunk's place, and
    whether the summary is left intact."""
    data = src.read_bytes()
    idx = chunks_of(data)
    hit = {"start": 0, "middle": len(idx) // 2, "end": len(idx) - 1,
           "middle, summary gone": len(idx) // 2}[where]
    buf = bytearray(data)
    at = idx[hit].chunk_start_offset + 4000
    buf[at:at + 2000] = bytes(2000)
    if where == "middle, summary gone":
        start = int.from_bytes(data[-37 + 9:-37 + 17], "little")
        buf[start:] = bytes(len(buf) - start)
    dest.write_bytes(buf)
    return hit, "gone" not in where


@pytest.mark.parametrize("where", ["start", "middle", "end", "middle, summary gone"])
def test_a_damaged_chunk_costs_only_its_own_messages(
        tmp_path: Path, episode: Path, where: str) -> None:
    bad = tmp_path / "episode_0000.mcap"
    hit, _ = damaged_copy(episode, bad, where)
    original = episode.read_bytes()
    lost = chunk_counts(original, chunks_of(original)[hit])
    full = ingest_file(InputFile(episode, ""))
    part = ingest_file(InputFile(bad, ""))
    for topic, sd in full.streams.items():
        assert len(part.streams[topic]) == len(sd) - lost[topic], topic
    assert len(part.events) == len(full.events) - lost["/demofab/episode_events"]


@pytest.mark.parametrize("where", ["start", "middle", "end", "middle, summary gone"])
def test_curation_keeps_the_time_after_the_damage_and_flags_the_lost_range(
        tmp_path: Path, episode: Path, clean: dict, where: str) -> None:
    bad = tmp_path / "in" / "episode_0000.mcap"
    bad.parent.mkdir()
    hit, summary_ok = damaged_copy(episode, bad, where)
    idx = chunks_of(episode.read_bytes())
    c = idx[hit]

    release = curate([bad], tmp_path / "rel", "r").release
    (e,) = _episodes(release)

    # the episode still spans the recording, not just what came before the damage
    if where == "end":  # its stop event was lost: it runs to the last intact chunk's data
        assert idx[-2].message_start_time < e["end_ns"] <= c.message_start_time
    else:
        assert (e["start_ns"], e["end_ns"]) == (clean["start_ns"], clean["end_ns"])
    assert e["duration_s"] > clean["duration_s"] - (c.message_end_time - c.message_start_time) / 1e9 - 0.05
    lost = chunk_counts(episode.read_bytes(), c)
    assert e["streams"]["joint_states"] == clean["streams"]["joint_states"] - lost["/joint_states"]
    # the flag names the lost bytes and log time
    assert "truncated" in e["flag_names"]
    (why,) = [r["detail"] for r in e["flag_reasons"] if r["flag"] == "truncated"]
    assert f"byte offset {c.chunk_start_offset}" in why
    if summary_ok:
        assert f"log time {c.message_start_time}..{c.message_end_time} ns" in why
        if where == "middle":  # and the curator's report shows it
            html = render_release(release, tmp_path / "report.html").read_text()
            assert f"log time {c.message_start_time}..{c.message_end_time} ns" in html
    else:
        assert (f"between {idx[hit - 1].message_end_time} and "
                f"{idx[hit + 1].message_start_time} ns") in why


def test_a_damaged_summary_alone_raises_no_flag(tmp_path: Path, episode: Path,
                                                clean: dict) -> None:
    data = bytearray(episode.read_bytes())
    start = int.from_bytes(data[-37 + 9:-37 + 17], "little")
    data[start + 100:start + 2100] = bytes(2000)
    bad = tmp_path / "in" / "episode_0000.mcap"
    bad.parent.mkdir()
    bad.write_bytes(data)
    (e,) = _episodes(curate([bad], tmp_path / "rel", "r").release)
    assert e["flag_names"] == clean["flag_names"] == []
    assert e["streams"] == clean["streams"]


def test_damage_between_chunks_loses_no_message_and_raises_no_flag(
        tmp_path: Path, episode: Path) -> None:
    data = bytearray(episode.read_bytes())
    c = chunks_of(bytes(data))[3]
    at = c.chunk_start_offset + c.chunk_length  # its message index records
    data[at:at + 40] = bytes(40)
    bad = tmp_path / "episode_0000.mcap"
    bad.write_bytes(data)
    full = ingest_file(InputFile(episode, ""))
    part = ingest_file(InputFile(bad, ""))
    assert {t: len(s) for t, s in part.streams.items()} == {
        t: len(s) for t, s in full.streams.items()}
    assert read_mcap(bytes(data)).lost[0].start == at  # the reader names it ...
    assert part.truncated_at is None  # ... but nothing was lost: no flag
    assert not [p for p in part.problems if p[0] == "truncated"]
