"""Every file the recorder writes, read back with readers it does not use for writing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader as Rosbag2Reader

from recorder.profile import EVENTS_TOPIC


def _recorded_bytes(tap, session):
    """Messages the rig sent while an episode was open (start <= t < end), per topic."""
    by_topic: dict[str, list[bytes]] = {}
    for e in session.episodes:
        for m in tap.sent:
            if e.start_ns <= m.log_time < e.end_ns and m.topic != EVENTS_TOPIC:
                by_topic.setdefault(m.topic, []).append(m.data)
    return by_topic


def test_mcap_reader_sees_every_sent_message_byte_for_byte(recorded):
    session, tap, finished = recorded
    assert [e.index for e in finished] == [0, 1]
    got: dict[str, list[bytes]] = {}
    for e in session.episodes:
        with open(session.dir / e.file, "rb") as f:
            for _, channel, msg in make_reader(f).iter_messages(log_time_order=False):
                if channel.topic != EVENTS_TOPIC:
                    got.setdefault(channel.topic, []).append(msg.data)
    expected = _recorded_bytes(tap, session)
    assert set(got) == set(expected)
    for topic in expected:
        assert got[topic] == expected[topic], topic


def test_episode_files_are_chunked_compressed_indexed_with_crcs(recorded):
    session, _, _ = recorded
    with open(session.dir / session.episodes[0].file, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
    assert header.profile == "ros2"
    assert summary.chunk_indexes and all(c.compression == "zstd" for c in summary.chunk_indexes)
    assert summary.statistics.message_count == session.episodes[0].messages
    assert all(s.encoding == "ros2msg" for s in summary.schemas.values())
    assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
    qos = [c.metadata.get("offered_qos_profiles") for c in summary.channels.values()]
    assert all(q and "reliability" in q for q in qos)
    # every chunk's CRC is set and checks out
    from mcap.stream_reader import StreamReader

    with open(session.dir / session.episodes[0].file, "rb") as f:
        n = sum(1 for _ in StreamReader(f, validate_crcs=True).records)
    assert n > session.episodes[0].messages


def test_episode_facts_are_metadata_records_and_the_robot_an_attachment(recorded):
    session, _, _ = recorded
    e = session.episodes[1]
    with open(session.dir / e.file, "rb") as f:
        reader = make_reader(f)
        md = {m.name: m.metadata for m in reader.iter_metadata()}
        attachments = list(reader.iter_attachments())
    ep = md["demofab.episode"]
    assert ep["task"] == "stack cups" and ep["operator"] == "op7" and ep["outcome"] == "success"
    assert int(ep["start_ns"]) == e.start_ns and int(ep["end_ns"]) == e.end_ns
    assert ep["robot"] == "demofab_humanoid_43dof" and ep["software.demofab"]
    assert md["demofab.health"]["flagged"] == "false"
    assert [(a.name, a.media_type) for a in attachments] == [("robot_description.urdf",
                                                               "application/xml")]
    urdf = attachments[0].data.decode()
    assert urdf.count("<joint ") == 43 and 'name="left_hand_thumb_0_joint"' in urdf


def test_session_opens_as_a_rosbag2_bag_with_exact_counts(recorded):
    session, _, _ = recorded
    meta = yaml.safe_load((session.dir / "metadata.yaml").read_text())
    files = meta["rosbag2_bagfile_information"]["relative_file_paths"]
    assert files == [e.file for e in session.episodes]
    with Rosbag2Reader(session.dir) as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
        assert bag.message_count == sum(e.messages for e in session.episodes)
    expected = Counter()
    for e in session.episodes:
        expected.update(e.counts)
    assert counts == dict(expected)
    with AnyReader([session.dir]) as reader:
        seen = Counter(c.topic for c, _, _ in reader.messages())
        events = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                  if c.topic == EVENTS_TOPIC]
    assert seen == expected
    assert [(ev.kind, ev.episode_index, ev.outcome) for ev in events] == [
        (0, 0, ""), (1, 0, "success"), (0, 1, ""), (1, 1, "success")]


def test_log_time_is_receive_time_and_publish_time_the_header_stamp(recorded):
    session, tap, _ = recorded
    sent = {(m.topic, m.log_time): m.publish_time for m in tap.sent}
    with open(session.dir / session.episodes[0].file, "rb") as f:
        for _, channel, msg in make_reader(f).iter_messages():
            if channel.topic == EVENTS_TOPIC:
                assert msg.publish_time == msg.log_time
                continue
            assert sent[(channel.topic, msg.log_time)] == msg.publish_time
            assert msg.log_time > msg.publish_time  # the rig adds receive latency


def test_reset_phase_between_episodes_is_not_recorded(recorded):
    session, _, _ = recorded
    a, b = session.episodes
    assert b.start_ns - a.end_ns >= 0.5e9
    assert sum(session.between_episodes.values()) > 0
    meta = yaml.safe_load((session.dir / "metadata.yaml").read_text())
    assert meta["rosbag2_bagfile_information"]["version"] == 9
    assert Path(session.dir / "demofab_session.yaml").exists()


def test_rosbags_and_mcap_readers_return_the_same_bytes(recorded):
    session, _, _ = recorded
    via_mcap = []
    for e in session.episodes:
        with open(session.dir / e.file, "rb") as f:
            via_mcap += [(c.topic, m.log_time, bytes(m.data))
                         for _, c, m in make_reader(f).iter_messages(log_time_order=True)]
    with AnyReader([session.dir]) as reader:
        via_rosbags = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    assert sorted(via_rosbags) == sorted(via_mcap)
