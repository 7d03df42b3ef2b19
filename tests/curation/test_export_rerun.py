"""The Rerun export read back with Rerun's own reader (``rerun.chunk.RrdReader``): rows per
camera, joint and event against the source (the MCAP read by the ``mcap`` reference reader,
the release read with zarr-python), the robot's URDF entities, and joint transforms
against ones computed by hand from a URDF's origin and axis."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import zarr
from mcap.reader import make_reader

from curation.export import ExportError, export_release, write_rerun
from curation.pipeline import curate
from demofab.cli import main
from recorder.contract import EVENTS_TOPIC
from recorder.control import Command, Recorder
from recorder.profile import load_profile
from recorder.session import Session
from recorder.sources import RawMessage
from recorder.sources.synthetic import RigOptions, SyntheticRig
from recorder.urdf import urdf_from_profile

from .conftest import T0

pytest.importorskip("rerun")
from rerun.chunk import RrdReader

CAMERAS = ("camera.head.image_raw.compressed", "camera.left_wrist.image_raw.compressed",
           "camera.right_wrist.image_raw.compressed")


class _Operator:
    """The synthetic rig, with an operator who marks a subtask and an intervention in the
    first episode and a note in the second, which fails."""

    clock = "sim"

    def __init__(self) -> None:
        self.rig = SyntheticRig(load_profile("humanoid"), RigOptions(seed=3, start_ns=T0))
        self.controller: Recorder | None = None

    def bind(self, controller: Recorder) -> None:
        self.controller = controller
        controller.plan = replace(controller.plan, autostart=False)

    def messages(self) -> Iterator[RawMessage]:
        assert self.controller is not None
        q = self.controller.commands
        plan = [(0.0, Command("start", task="stack cups", operator="alice")),
                (0.2, Command("mark", outcome="subtask", label="grasp cup")),
                (0.3, Command("mark", outcome="intervention", label="took over")),
                (0.5, Command("stop", outcome="success")),
                (0.6, Command("start", task="stack cups", operator="alice")),
                (0.8, Command("mark", outcome="note", label="cup slipped")),
                (1.0, Command("stop", outcome="failure"))]
        for msg in self.rig.messages():
            t = (msg.log_time - T0) / 1e9
            while plan and t >= plan[0][0]:
                q.put(plan.pop(0)[1])
            if not plan and t > 1.05:
                return
            yield msg

    def close(self) -> None:
        self.rig.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    profile = load_profile("humanoid")
    out = tmp_path_factory.mktemp("rec") / "s_alice"
    s = Session(out, profile, robot_description=(
        "robot_description.urdf", "application/xml", urdf_from_profile(profile)))
    Recorder(s, _Operator()).run(handle_signals=False)
    return out


@pytest.fixture(scope="module")
def release(session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return curate([session], tmp_path_factory.mktemp("releases"), "cups").release


def read_rrd(path: Path, *, layout: bool = False) -> dict[str, list[pa.RecordBatch]]:
    """Every chunk of the recording (or, with ``layout``, of its one blueprint), by
    entity path."""
    reader = RrdReader(path)
    store = None
    if layout:
        (store,) = reader.blueprints()
    out: dict[str, list[pa.RecordBatch]] = defaultdict(list)
    for chunk in reader.stream(store=store):
        out[chunk.entity_path].append(chunk.to_record_batch())
    return out


def rows(batches: list[pa.RecordBatch], name: str) -> list[list[Any]]:
    """The rows of one component: each a batch of values."""
    return [v for b in batches if name in b.schema.names for v in b.column(name).to_pylist()]


def column(batches: list[pa.RecordBatch], name: str) -> list[Any]:
    """The value of one component in each row (every row is a batch of one)."""
    out = rows(batches, name)
    assert all(len(r) == 1 for r in out), name
    return [r[0] for r in out]


def times(batches: list[pa.RecordBatch], timeline: str) -> list[int]:
    return [v for b in batches if timeline in b.schema.names
            for v in b.column(timeline).cast(pa.int64()).to_pylist()]


def blobs(batches: list[pa.RecordBatch]) -> list[bytes]:
    """The images of an ``EncodedImage`` entity, one per row (a row is a batch of one)."""
    return [bytes(b) for b in column(batches, "EncodedImage:blob")]


def mcap_messages(path: Path) -> dict[str, list[bytes]]:
    """The payloads on each topic, read by the ``mcap`` reference reader."""
    out: dict[str, list[bytes]] = defaultdict(list)
    with open(path, "rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages(log_time_order=False):
            out[channel.topic].append(message.data)
    return out


def release_joint(release: Path, e: int, joint: str) -> tuple[np.ndarray, np.ndarray]:
    """A joint's recorded positions in episode ``e`` and their stamps, read with zarr."""
    js = release / "streams/joint_states"
    b = zarr.open_array(str(js / "episode_bounds"), mode="r")[e]
    names = zarr.open_group(str(js), mode="r").attrs["joint_names"]
    q = zarr.open_array(str(js / "position"), mode="r")[b[0]:b[1], names.index(joint)]
    return q, zarr.open_array(str(js / "time_ns"), mode="r")[b[0]:b[1]]


def test_a_session_exports_one_rrd_per_episode_with_every_frame_joint_state_and_event(
        session: Path, tmp_path: Path) -> None:
    r = write_rerun(session, tmp_path)
    files = sorted(session.glob("episode_*.mcap"))
    assert len(files) == 2
    assert [p.name for p in r.files] == [f"s_alice_{f.stem}.rrd" for f in files]
    assert sorted(tmp_path.iterdir()) == r.files  # nothing else: no temporary left
    for src, rrd in zip(files, r.files, strict=True):
        messages, data = mcap_messages(src), read_rrd(rrd)
        counts = {t: len(m) for t, m in messages.items()}
        for cam in ("head", "left_wrist", "right_wrist"):
            images = blobs(data[f"/cameras/{cam}"])
            payloads = messages[f"/camera/{cam}/image_raw/compressed"]
            assert len(images) == len(payloads) > 10
            # the stored JPEG bytes, not re-encoded: each inside its CDR message
            assert images[0][:2] == b"\xff\xd8"
            assert all(img in msg for img, msg in zip(images, payloads, strict=True))
        n = counts["/joint_states"]
        for field in ("position", "velocity", "effort"):
            assert len(column(data[f"/joint_states/left_knee_joint/{field}"],
                              "Scalars:scalars")) == n
        assert len(column(data["/joint_commands/left_knee_joint/position"],
                          "Scalars:scalars")) == counts["/joint_commands"]
        assert len(column(data["/robot/joint_transforms/left_knee_joint"],
                          "Transform3D:quaternion")) == n
        assert len(column(data["/events"], "TextLog:text")) == counts[EVENTS_TOPIC]
        # the robot: 43 joints from the URDF attachment, each link drawn as axes
        assert len(column(data["/tf_static"], "Transform3D:child_frame")) == 43
        assert column(data["/robot/frames/left_knee_link"], "CoordinateFrame:frame") == [
            "left_knee_link"]
    layout = read_rrd(r.files[0], layout=True)  # the layout the viewer opens with
    assert column(layout["/time_panel"], "TimePanelBlueprint:timeline") == ["episode_time"]
    queries = rows(sum(layout.values(), []), "ViewContents:query")
    assert ["$origin/left_knee_joint/position" in q for q in queries].count(True) == 2  # + commands
    first = read_rrd(r.files[0])
    texts = column(first["/events"], "TextLog:text")
    assert texts[1:3] == ["subtask: grasp cup", "intervention: took over"]
    assert column(first["/events"], "TextLog:level")[2] == "WARN"
    second = read_rrd(r.files[1])
    assert column(second["/events"], "TextLog:text")[-1] == "stop: failure"
    doc = column(second["/episode"], "TextDocument:text")[0]
    assert "| operator | alice |" in doc and "| outcome | failure |" in doc


def test_episode_time_starts_at_the_episode_start_and_time_is_the_header_stamp(
        session: Path, tmp_path: Path) -> None:
    rrd = write_rerun(session / "episode_0001.mcap", tmp_path, progress=True).files[0]
    assert rrd.name == "s_alice_episode_0001.rrd"  # named as when the session is exported
    events = read_rrd(rrd)["/events"]
    stamps = times(events, "time")
    assert times(events, "episode_time")[0] == 0  # the START event opens the episode
    assert [s - stamps[0] for s in stamps] == times(events, "episode_time")
    assert stamps[0] > T0 + 0.5e9  # the second episode of the session, on the rig's clock


def test_a_release_exports_its_episodes_with_the_rows_the_release_holds(
        release: Path, tmp_path: Path) -> None:
    out = export_release(release, "rerun", tmp_path)
    assert out == tmp_path
    files = sorted(tmp_path.glob("*.rrd"))
    assert [p.name for p in files] == ["cups-v1_ep0000.rrd", "cups-v1_ep0001.rrd"]
    import json

    table = json.loads((release / "episodes.json").read_text())["episodes"]
    for e, rrd in enumerate(files):
        data = read_rrd(rrd)

        def rows_in(stream: str, e: int = e) -> int:
            b = zarr.open_array(str(release / "streams" / stream / "episode_bounds"),
                                mode="r")[:]
            return int(b[e, 1] - b[e, 0])

        for cam, stream in zip(("head", "left_wrist", "right_wrist"), CAMERAS, strict=True):
            assert len(blobs(data[f"/cameras/{cam}"])) == rows_in(stream)
        elbow = data["/joint_states/right_elbow_joint/position"]
        q, stamps = release_joint(release, e, "right_elbow_joint")
        assert np.array_equal(column(elbow, "Scalars:scalars"), q)  # as recorded, every row
        assert times(elbow, "time") == stamps.tolist()
        assert times(elbow, "episode_time") == (stamps - table[e]["start_ns"]).tolist()
        gyro = rows(data["/imu/angular_velocity"], "Scalars:scalars")
        assert len(gyro) == rows_in("imu") and {len(r) for r in gyro} == {3}  # x, y, z
        assert len(column(data["/events"], "TextLog:text")) == 2 + len(table[e]["annotations"])
        assert len(column(data["/tf_static"], "Transform3D:child_frame")) == 43
        pelvis = data["/tf/pelvis"]  # recorded TF: the robot's base in the world
        assert len(column(pelvis, "Transform3D:translation")) == rows_in("tf")
        assert set(column(pelvis, "Transform3D:parent_frame")) == {"world"}
        # a TF frame the URDF lacks is drawn as axes; pelvis is the URDF's root, drawn there
        assert column(data["/tf/head_link/frame"], "CoordinateFrame:frame") == ["head_link"]
        assert "/tf/pelvis/frame" not in data
        texts = column(data["/events"], "TextLog:text")
        assert texts[0] == "start: stack cups"
        assert texts[-1] == f"stop: {table[e]['outcome']}"
    first = column(read_rrd(files[0])["/events"], "TextLog:text")
    assert "subtask: grasp cup" in first and "intervention: took over" in first


def _matrix(xyzw: list[float]) -> np.ndarray:
    x, y, z, w = xyzw
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_a_joint_transform_is_its_origin_then_the_motion_about_or_along_its_axis(
        release: Path, tmp_path: Path) -> None:
    urdf = tmp_path / "arm.urdf"
    urdf.write_text("""<?xml version="1.0"?>
<robot name="arm">
  <link name="pelvis"/>
  <link name="torso_link"/>
  <link name="thigh"><visual><geometry><mesh filename="meshes/thigh.stl"/></geometry></visual></link>
  <link name="shin"/>
  <link name="slider"/>
  <link name="toe"/>
  <joint name="toe_joint" type="revolute">
    <parent link="shin"/><child link="toe"/><axis xyz="0 0 1"/>
    <mimic joint="left_knee_joint" multiplier="2" offset="0.1"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/>
  </joint>
  <joint name="hip_joint" type="fixed"><parent link="pelvis"/><child link="thigh"/></joint>
  <joint name="right_elbow_joint" type="prismatic">
    <parent link="pelvis"/><child link="slider"/><origin xyz="0 0 0.5"/><axis xyz="0 0 1"/>
    <limit lower="0" upper="0.2" effort="1" velocity="1"/>
  </joint>
  <joint name="waist_yaw_joint" type="revolute">
    <parent link="pelvis"/><child link="torso_link"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
  </joint>
  <joint name="left_knee_joint" type="revolute">
    <parent link="thigh"/><child link="shin"/>
    <origin xyz="0.1 0.2 0.3" rpy="0 0 1.5707963267948966"/>
    <axis xyz="1 0 0"/>
    <limit lower="-0.1" upper="0.1" effort="1" velocity="1"/>
  </joint>
</robot>
""")  # the mesh is missing and the limits narrower than the motion: neither stops it
    r = write_rerun(release, tmp_path / "out", episodes=[0], robot_description=urdf)
    data = read_rrd(r.files[0])
    knee = data["/robot/joint_transforms/left_knee_joint"]
    quats = column(knee, "Transform3D:quaternion")
    q, _ = release_joint(release, 0, "left_knee_joint")
    assert len(quats) == len(q) and np.ptp(q) > 0.01
    for k in (0, len(q) // 2, len(q) - 1):
        c, s = math.cos(q[k]), math.sin(q[k])
        rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])  # origin yaw of 90 degrees
        assert np.allclose(_matrix(quats[k]), rz @ rx, atol=1e-6)
    assert np.allclose(column(knee, "Transform3D:translation")[0], [0.1, 0.2, 0.3])
    assert set(column(knee, "Transform3D:parent_frame")) == {"thigh"}
    assert set(column(knee, "Transform3D:child_frame")) == {"shin"}
    assert "/robot/arm/visual_geometries/thigh/visual_0" in data  # kept, without its mesh
    assert "/robot/frames/shin" in data and "/robot/frames/thigh" not in data
    # a mimic joint (not recorded) follows its driver: 2 q + 0.1 about z
    toe = column(data["/robot/joint_transforms/toe_joint"], "Transform3D:quaternion")
    assert len(toe) == len(q)
    for k in (0, len(q) - 1):
        a = 2 * q[k] + 0.1
        rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        assert np.allclose(_matrix(toe[k]), rz, atol=1e-6)
    # a prismatic joint: the origin, then the position along the axis, no rotation
    slide = data["/robot/joint_transforms/right_elbow_joint"]
    d, _ = release_joint(release, 0, "right_elbow_joint")
    assert np.allclose(column(slide, "Transform3D:translation"),
                       [[0, 0, 0.5 + x] for x in d], atol=1e-6)
    assert np.allclose(np.abs(column(slide, "Transform3D:quaternion")), [0, 0, 0, 1])
    assert any("40 joints of joint_states are not in the robot description" in n
               for n in r.notes)
    # recorded TF moves the base in the world, but does not give torso_link a second parent
    assert "/tf/pelvis" in data and "/tf/torso_link" not in data
    assert any("left out pelvis -> torso_link" in n for n in r.notes)


def test_a_file_that_is_not_an_mcap_raises_the_export_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "episode_0000.mcap"
    bad.write_bytes(b"this is not a recording")
    with pytest.raises(ExportError, match=r"episode_0000\.mcap: nothing to export: not an MCAP"):
        write_rerun(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ExportError, match="robot description .*nope.urdf: cannot read"):
        write_rerun(bad, tmp_path / "out", robot_description=tmp_path / "nope.urdf")


def test_a_damaged_episode_exports_what_is_intact_and_says_what_was_lost(
        session: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(session, tmp_path / "s_alice")
    whole = copy / "episode_0000.mcap"
    frames = len(mcap_messages(whole)["/camera/head/image_raw/compressed"])
    data = whole.read_bytes()
    whole.write_bytes(data[:len(data) * 6 // 10])  # cut short, as by a crash
    (copy / "episode_0001.mcap").rename(copy / "episode_0001.mcap.part")
    r = write_rerun(copy, tmp_path / "out")
    assert [p.name for p in r.files] == ["s_alice_episode_0000.rrd"]
    assert any("episode_0000.mcap" in n and "lost" in n for n in r.notes)
    assert any("episode_0001.mcap" in n and "left out" in n for n in r.notes)
    got = read_rrd(r.files[0])
    assert 0 < len(blobs(got["/cameras/head"])) < frames
    doc = column(got["/episode"], "TextDocument:text")[0]
    assert "## Notes" in doc and "lost" in doc


def test_existing_recordings_are_refused_before_anything_is_written(
        session: Path, tmp_path: Path) -> None:
    (tmp_path / "s_alice_episode_0001.rrd").write_bytes(b"keep me")
    with pytest.raises(ExportError, match="s_alice_episode_0001.rrd: already exist"):
        write_rerun(session, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["s_alice_episode_0001.rrd"]
    write_rerun(session, tmp_path, overwrite=True)
    assert (tmp_path / "s_alice_episode_0001.rrd").read_bytes() != b"keep me"


def test_an_interrupted_export_leaves_no_half_written_recording(
        session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rerun import TextLog

    import curation.export.rerun as rerun_export

    real = rerun_export.write_episode
    calls = []

    def interrupted(rec: Any, view: Any, **kw: Any) -> list[str]:
        calls.append(view.name)
        if len(calls) == 2:
            rec.log("/half", TextLog("written before the interrupt"))
            raise KeyboardInterrupt
        return real(rec, view, **kw)

    monkeypatch.setattr(rerun_export, "write_episode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_rerun(session, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["s_alice_episode_0000.rrd"]
    assert "/events" in read_rrd(tmp_path / "s_alice_episode_0000.rrd")


def test_without_rerun_sdk_the_error_says_what_to_install(
        session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rerun", None)
    with pytest.raises(ExportError, match=r"pip install 'demofab\[view\]'"):
        write_rerun(session, tmp_path)


def test_rerun_switched_off_by_its_environment_variable_is_an_error_not_empty_files(
        session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERUN", "off")
    with pytest.raises(ExportError, match="Rerun logging is disabled"):
        write_rerun(session / "episode_0000.mcap", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_exports_a_session_and_a_release_as_rerun(
        session: Path, release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(session), "--format", "rerun", "--out", str(tmp_path / "s")]) == 0
    assert "2 recordings" in capsys.readouterr().out
    assert main(["export", str(release.parent), "--format", "rerun",
                 "--out", str(tmp_path / "r")]) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "cups-v1_ep0000.rrd", "cups-v1_ep0001.rrd"]
    assert main(["export", str(tmp_path / "nothing"), "--format", "rerun",
                 "--out", str(tmp_path / "x")]) != 0
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(release), "--format", "lerobot", "--out", str(tmp_path / "l"),
                 "--robot-description", "robot.urdf"]) != 0
    assert "--robot-description is for --format rerun only" in capsys.readouterr().err
