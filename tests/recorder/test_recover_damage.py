"""``demofab recover`` on an episode with a damaged chunk: the damage costs only that
chunk. Every intact chunk after it is kept, whether the summary's chunk index points past
the damage or the summary is gone and the next chunk is found by scanning, and the lost
bytes and log time are printed and written into the recovered file's metadata."""

from __future__ import annotations

import io
import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from mcap.records import Message
from mcap.stream_reader import StreamReader, breakup_chunk

from demofab.cli import main
from recorder.contract import RECOVERY_METADATA
from recorder.control import Plan, Recorder
from recorder.profile import Profile
from recorder.salvage import recover_file
from recorder.session import Session
from recorder.sources.synthetic import RigOptions, SyntheticRig
from recorder.writer import WriterOptions
from tests.mcapchunks import chunk_counts, chunks_of

T0 = 1_750_000_000_000_000_000


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory, humanoid: Profile) -> Path:
    """A real 2 s episode of the humanoid rig, in chunks of 256 KiB (about 50 of them)."""
    out = tmp_path_factory.mktemp("damage") / "session"
    session = Session(out, humanoid, options=WriterOptions(chunk_size=1 << 18))
    Recorder(session, SyntheticRig(humanoid, RigOptions(seed=3, start_ns=T0)),
             Plan(episodes=1, episode_seconds=2.0, task="t", operator="o")
             ).run(handle_signals=False)
    return out / "episode_0000.mcap"



def topic_counts(path: Path) -> Counter[str]:
    with open(path, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        return Counter(ch.topic for _, ch, _ in reader.iter_messages())



def summary_start(data: bytes) -> int:
    return int.from_bytes(data[-37 + 9:-37 + 17], "little")


def damage(data: bytes, where: str) -> tuple[bytes, int | None]:
    """``data`` damaged at ``where``; and which chunk was hit (None: no chunk)."""
    idx = chunks_of(data)
    buf = bytearray(data)
    mid = len(idx) // 2
    if where == "start":      # 2,000 zeroed bytes inside the first chunk
        at, hit = idx[0].chunk_start_offset + 5_000, 0
        buf[at:at + 2000] = bytes(2000)
    elif where == "middle":   # the middle chunk's header zeroed: opcode and length gone
        at, hit = idx[mid].chunk_start_offset, mid
        buf[at:at + 2000] = bytes(2000)
    elif where == "end":      # one flipped byte in the last chunk
        c = idx[-1]
        at, hit = c.chunk_start_offset + c.chunk_length // 2, len(idx) - 1
        buf[at] ^= 0x40
    elif where == "summary":  # the summary's chunk index zeroed; the data is whole
        at, hit = summary_start(data) + 2000, None
        buf[at:at + 2000] = bytes(2000)
    elif where == "middle, no summary":  # the middle chunk damaged and the file cut after it
        at, hit = idx[mid].chunk_start_offset + 3000, mid
        buf[at:at + 2000] = bytes(2000)
        del buf[summary_start(data):]
    elif where == "middle header, no summary":
        at, hit = idx[mid].chunk_start_offset, mid
        buf[at:at + 2000] = bytes(2000)
        buf[summary_start(data):] = bytes(len(buf) - summary_start(data))
    else:
        raise AssertionError(where)
    return bytes(buf), hit


PLACES = ["start", "middle", "end", "summary", "middle, no summary",
          "middle header, no summary"]


@pytest.mark.parametrize("where", PLACES)
def test_recover_keeps_every_intact_chunk_and_names_the_lost_one(
        tmp_path: Path, episode: Path, humanoid: Profile, where: str) -> None:
    original = episode.read_bytes()
    bad, hit = damage(original, where)
    src = tmp_path / "bad.mcap"
    src.write_bytes(bad)
    out = tmp_path / "out.mcap"

    res = recover_file(src, out, humanoid)

    idx = chunks_of(original)
    expected = topic_counts(episode)
    if hit is not None:
        expected.subtract(chunk_counts(original, idx[hit]))
    assert topic_counts(out) == +expected  # read back by the mcap library, CRCs checked
    assert res.messages == sum(expected.values())
    lost = [r for r in res.lost if r.chunks != 0]
    if hit is None:
        assert lost == [] and res.summary_damage
        return
    (r,) = lost
    c = idx[hit]
    assert r.start == c.chunk_start_offset and r.end >= c.chunk_start_offset + c.chunk_length
    if "no summary" in where:  # bounded by the intact chunks around it
        assert (r.start_ns, r.end_ns) == (idx[hit - 1].message_end_time,
                                          idx[hit + 1].message_start_time)
    else:  # exact, by the chunk index
        assert (r.start_ns, r.end_ns) == (c.message_start_time, c.message_end_time)
    with open(out, "rb") as f:
        (md,) = [m for m in make_reader(f).iter_metadata() if m.name == RECOVERY_METADATA]
    ranges = json.loads(md.metadata["lost_ranges"])
    assert [(x["start"], x["start_ns"], x["end_ns"]) for x in ranges if x["chunks"] != 0] == [
        (r.start, r.start_ns, r.end_ns)]


def test_demofab_recover_prints_the_lost_time_range(
        tmp_path: Path, episode: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = episode.read_bytes()
    bad, hit = damage(original, "middle")
    assert hit is not None
    src = tmp_path / "episode.mcap"
    src.write_bytes(bad)

    assert main(["recover", str(src), "--out", str(tmp_path / "fixed.mcap")]) == 0

    out = capsys.readouterr().out
    c = chunks_of(original)[hit]
    kept = sum(topic_counts(episode).values()) - sum(chunk_counts(original, c).values())
    assert f"recovered {tmp_path / 'fixed.mcap'}: {kept} messages" in out
    (line,) = [x for x in out.splitlines() if x.strip().startswith("lost")]
    assert f"bytes {c.chunk_start_offset}.." in line
    assert f"log time {c.message_start_time}..{c.message_end_time} ns" in line


def test_the_2000_zeroed_bytes_of_the_issue_cost_one_chunk(
        tmp_path: Path, episode: Path, humanoid: Profile) -> None:
    """2,000 zeroed bytes 0.9 MB into the episode used to cut it there."""
    original = episode.read_bytes()
    bad = bytearray(original)
    bad[900_000:902_000] = bytes(2000)
    (tmp_path / "bad.mcap").write_bytes(bad)
    res = recover_file(tmp_path / "bad.mcap", tmp_path / "out.mcap", humanoid)
    total = sum(topic_counts(episode).values())
    (r,) = res.lost
    assert r.chunks == 1 and r.start < 900_000 < r.end
    assert 0.9 * total < res.messages < total
    assert res.last_ns == max(c.message_end_time for c in chunks_of(original))
    assert res.kept_bytes == res.total_bytes - r.size


CONFORMANCE = Path(__file__).parent.parent / "conformance"
SMALL = (CONFORMANCE / "chunks.mcap").read_bytes()
SMALL_SUMMARY = summary_start(SMALL)


def messages_of(data: bytes) -> set[tuple[str, int, bytes]]:
    reader = make_reader(io.BytesIO(data), validate_crcs=True)
    return {(ch.topic, m.log_time, m.data) for _, ch, m in reader.iter_messages()}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(8, SMALL_SUMMARY - 1), length=st.integers(1, 600),
       cut_summary=st.booleans())
def test_any_damage_costs_recover_at_most_the_chunks_it_touches(
        tmp_path: Path, start: int, length: int, cut_summary: bool) -> None:
    from recorder.profile import load_profile

    idx = chunks_of(SMALL)
    summary = make_reader(io.BytesIO(SMALL)).get_summary()
    assert summary is not None
    topics = {ch.id: ch.topic for ch in summary.channels.values()}
    if cut_summary:  # no summary to name channels: damage starts in the first chunk or later
        start = max(start, idx[0].chunk_start_offset)
    end = min(start + length, SMALL_SUMMARY)
    buf = bytearray(SMALL)
    buf[start:end] = bytes(end - start)
    if cut_summary:
        del buf[SMALL_SUMMARY:]
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    (case / "bad.mcap").write_bytes(buf)
    recover_file(case / "bad.mcap", case / "out.mcap", load_profile(CONFORMANCE / "small.yaml"))
    kept = messages_of((case / "out.mcap").read_bytes())
    assert kept <= messages_of(SMALL)
    for c in idx:
        if c.chunk_start_offset + c.chunk_length <= start or end <= c.chunk_start_offset:
            f = io.BytesIO(SMALL[c.chunk_start_offset:c.chunk_start_offset + c.chunk_length])
            chunk = next(iter(StreamReader(f, skip_magic=True, emit_chunks=True).records))
            assert {(topics[r.channel_id], r.log_time, r.data)
                    for r in breakup_chunk(chunk) if isinstance(r, Message)} <= kept
