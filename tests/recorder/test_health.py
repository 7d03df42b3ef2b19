"""Live health: rates, gaps, latency; an episode that misses its thresholds is flagged."""

from __future__ import annotations

from recorder.sources.synthetic import RigOptions

from .conftest import T0, record


def test_clean_rig_is_not_flagged(recorded):
    session, _, finished = recorded
    assert [e.flagged for e in finished] == [False, False]
    report = session.last_report
    joint = next(t for t in report.topics if t.topic == "/joint_states")
    assert abs(joint.rate_hz - 500) < 10 and joint.gaps == 0
    assert 1.0 < joint.latency_p50_ms < 3.0  # the rig's 2 ms mean latency


def test_dropped_messages_and_an_unplugged_camera_flag_the_episode(tmp_path, humanoid):
    rig = RigOptions(seed=1, start_ns=T0, drop_rate=0.2,
                     stalls={"/camera/head/image_raw/compressed": (0.3, 0.5)})
    _, _, (ep,) = record(tmp_path / "s", humanoid, episodes=1, seconds=1.5, rig=rig)
    assert ep.flagged
    assert "rate_low:/joint_states" in ep.flags
    assert "gaps:/camera/head/image_raw/compressed" in ep.flags


def test_latency_over_threshold_is_flagged(tmp_path, humanoid):
    rig = RigOptions(seed=1, start_ns=T0, latency_ms=80.0)
    session, _, (ep,) = record(tmp_path / "s", humanoid, episodes=1, seconds=0.5, rig=rig)
    assert "latency_high:/imu" in ep.flags
    imu = next(t for t in session.last_report.topics if t.topic == "/imu")
    assert imu.latency_p99_ms > 50


def test_live_window_shows_a_stalled_topic_as_silent(tmp_path, humanoid):
    from recorder.control import Plan, Recorder
    from recorder.session import Session
    from recorder.sources.synthetic import SyntheticRig

    rig = SyntheticRig(humanoid, RigOptions(seed=2, start_ns=T0,
                                            stalls={"/imu": (1.0, 10.0)}))
    session = Session(tmp_path / "s", humanoid)
    seen = []

    def on_update(rec, now):
        if session.current is not None and now - session.current.start_ns > 1.6e9:
            seen.append(session.health(at_ns=now, window_s=0.5))
            rec.request_stop("test")

    Recorder(session, rig, Plan(episodes=1, episode_seconds=5.0), on_update=on_update,
             update_every_s=0.1).run(handle_signals=False)
    live = next(t for t in seen[0].topics if t.topic == "/imu")
    assert live.count == 0 and "no_messages" in live.flags
    assert seen[0].disk_free_bytes > 0 and seen[0].seconds_left is not None
    assert session.episodes[0].ended_by == "close"
