"""Replay and the bag source read a session as the recording contract lays it out: the
files in the order of the bag listing, the indices of the session state."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader

from recorder.contract import BAG_INFO_KEY, BAG_METADATA, EVENTS_TOPIC, STATE_FILE
from recorder.errors import SourceError
from recorder.replay import ReplayError, Timeline
from recorder.sources.bag import BagSource


@pytest.fixture
def copy(recorded, tmp_path) -> Path:
    session, _, _ = recorded
    out = tmp_path / "session"
    shutil.copytree(session.dir, out)
    return out


def edit_listing(session: Path, **info: object) -> None:
    meta = session / BAG_METADATA
    raw = yaml.safe_load(meta.read_text())
    raw[BAG_INFO_KEY].update(info)
    meta.write_text(yaml.safe_dump(raw))


def listed(session: Path) -> list[str]:
    return list(yaml.safe_load((session / BAG_METADATA).read_text())[BAG_INFO_KEY]
                ["relative_file_paths"])


def test_a_session_plays_in_the_order_of_its_bag_listing_with_the_state_s_indices(copy):
    files = listed(copy)
    edit_listing(copy, relative_file_paths=files[::-1])
    tl = Timeline.open(copy)
    assert [e.path.name for e in tl.episodes] == files[::-1]
    assert [e.index for e in tl.episodes] == [1, 0]


def test_a_listed_file_that_is_missing_is_named(copy):
    first = listed(copy)[0]
    (copy / first).unlink()
    with pytest.raises(ReplayError, match=f"lists {first}, which is not in"):
        Timeline.open(copy)
    with pytest.raises(SourceError, match=f"lists {first}, not found"):
        list(BagSource(_profile(), copy).messages())


def test_a_bag_in_another_storage_is_refused_with_the_storage_named(copy):
    edit_listing(copy, storage_identifier="sqlite3")
    with pytest.raises(ReplayError, match="stored as 'sqlite3'; replay reads MCAP bags only"):
        Timeline.open(copy)
    with pytest.raises(SourceError, match="stored as 'sqlite3'"):
        list(BagSource(_profile(), copy).messages())


def test_a_malformed_session_state_is_a_replay_error_naming_the_file(copy):
    (copy / STATE_FILE).write_text("format_version: 99\n")
    with pytest.raises(ReplayError, match=f"{STATE_FILE}: session format_version 99"):
        Timeline.open(copy)


def test_the_bag_source_reads_a_session_in_the_order_of_its_listing(copy):
    files = listed(copy)
    edit_listing(copy, relative_file_paths=files[::-1])
    source = BagSource(_profile(), copy)
    first = next(iter(source.messages()))
    source.close()
    with open(copy / files[-1], "rb") as f:
        expected = next(m for _, c, m in make_reader(f).iter_messages(log_time_order=True)
                        if c.topic != EVENTS_TOPIC)
    assert (first.log_time, first.data) == (expected.log_time, expected.data)


def _profile():
    from recorder.profile import load_profile

    return load_profile("humanoid")
