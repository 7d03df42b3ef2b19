"""Quality flags a curator relies on, each with the reason it was raised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation import curate
from curation.flags import FLAG_BITS, flag_mask, flag_names
from curation.ingest import ingest_file
from curation.inputs import InputFile


def _episodes(release: Path) -> list[dict]:
    return json.loads((release / "episodes.json").read_text())["episodes"]


def test_clean_recording_raises_no_flag(tmp_path: Path, clean_session: Path) -> None:
    eps = _episodes(curate([clean_session], tmp_path, "r").release)
    assert [e["flag_names"] for e in eps] == [[], []]


def test_lost_messages_and_a_stalled_camera_are_flagged_with_reasons(
        tmp_path: Path, lossy_session: Path) -> None:
    (e,) = _episodes(curate([lossy_session], tmp_path, "r").release)
    assert {"rate_low", "gaps", "dropped_frames"} <= set(e["flag_names"])
    assert e["flags"] == flag_mask(e["flag_names"]) and e["quality_score"] < 0.8
    cam = [r for r in e["flag_reasons"] if r["flag"] == "dropped_frames"
           and r["stream"] == "/camera/head/image_raw/compressed"]
    assert cam and "frames dropped" in cam[0]["detail"]
    gap = [r for r in e["flag_reasons"] if r["flag"] == "gaps"
           and r["stream"] == "/camera/head/image_raw/compressed"]
    assert "longest" in gap[0]["detail"]
    longest = float(gap[0]["detail"].split("longest ")[1].split(" ms")[0])
    assert 450 < longest < 650  # the 0.5 s stall


def test_truncated_file_keeps_what_is_readable_and_is_flagged(
        tmp_path: Path, clean_session: Path) -> None:
    src = sorted(clean_session.glob("*.mcap"))[0]
    data = src.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    full = ingest_file(InputFile(src, ""))
    part = ingest_file(InputFile(cut, ""))
    assert part.truncated_at is not None and part.truncated_at > 0
    n_full = len(full.streams["/joint_states"])
    n_part = len(part.streams["/joint_states"])
    assert 0.3 * n_full < n_part < n_full
    np.testing.assert_array_equal(np.asarray(part.streams["/joint_states"].fields["position"]),
                                  np.asarray(full.streams["/joint_states"].fields["position"])[
                                      np.isin(full.streams["/joint_states"].time_ns,
                                              part.streams["/joint_states"].time_ns)])
    (e,) = _episodes(curate([cut], tmp_path / "rel", "r").release)
    assert "truncated" in e["flag_names"]
    why = next(r["detail"] for r in e["flag_reasons"] if r["flag"] == "truncated")
    assert "cut.mcap" in why and "byte offset" in why
    assert e["provenance"]["truncated_at"] == part.truncated_at
    assert e["streams"]["joint_states"] == n_part


def test_garbage_file_does_not_crash_curation(tmp_path: Path, clean_session: Path) -> None:
    bad = tmp_path / "junk.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + b"\x06" + b"\xff" * 40)
    r = curate([clean_session, bad], tmp_path / "rel", "r")
    eps = _episodes(r.release)
    junk = [e for e in eps if e["provenance"]["source_file"].endswith("junk.mcap")]
    assert len(eps) == 3 and "truncated" in junk[0]["flag_names"]


def test_joint_limit_violation_and_frozen_stream_are_flagged(tmp_path: Path) -> None:
    from recorder.profile import load_profile

    from .conftest import record_session

    profile = load_profile("humanoid")
    lim = profile.robot.joints[0]
    s = record_session(tmp_path / "s", episodes=1, seconds=1.5)
    rec = ingest_file(InputFile(sorted(s.glob("*.mcap"))[0], "s"))
    js = rec.streams["/joint_states"]
    pos = np.array(js.fields["position"])
    pos[100, 0] = lim.upper + 0.5
    pos[300:700] = pos[300]  # 0.8 s of identical rows at 500 Hz
    js.fields["position"] = pos
    from curation.config import QualityConfig, SegmentConfig
    from curation.quality import Expectation, check_episode
    from curation.segment import segment_file

    (seg,), _ = segment_file(rec, SegmentConfig())
    limits = {j.name: (j.lower, j.upper) for j in profile.robot.joints}
    q = check_episode(rec, seg, {"/joint_states": Expectation(500.0, "observation")}, limits,
                      QualityConfig())
    assert {"joint_limits", "frozen"} <= q.flags
    detail = next(r["detail"] for r in q.reasons if r["flag"] == "joint_limits")
    assert lim.name in detail


def test_flag_bits_round_trip() -> None:
    for name in FLAG_BITS:
        assert flag_names(flag_mask([name])) == [name]
    assert len(set(FLAG_BITS.values())) == len(FLAG_BITS)


@pytest.mark.parametrize("kind", ["out_of_order", "clock_jump"])
def test_bad_stamps_are_flagged(tmp_path: Path, kind: str) -> None:
    from curation.config import QualityConfig, SegmentConfig
    from curation.quality import Expectation, check_episode
    from curation.segment import segment_file

    from .conftest import record_session

    s = record_session(tmp_path / "s", episodes=1, seconds=1.0)
    rec = ingest_file(InputFile(sorted(s.glob("*.mcap"))[0], "s"))
    js = rec.streams["/imu"]
    t = np.array(js.time_ns)
    if kind == "out_of_order":
        js.order = np.array(js.order if js.order is not None else np.arange(len(t)))
        js.order[[10, 11]] = js.order[[11, 10]]
    else:
        t[200:] += 5 * 10**9
        js.time_ns = t
    (seg,), _ = segment_file(rec, SegmentConfig())
    q = check_episode(rec, seg, {"/imu": Expectation(500.0)}, {}, QualityConfig())
    assert kind in q.flags
