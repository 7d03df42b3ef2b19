"""Rerun export: one ``.rrd`` recording per episode, of a release or of recordings.

``export_rerun(path, out_dir)`` takes a release (``NAME/vN``, or ``NAME`` for the newest
version), a session directory, a folder of episode files, or one episode MCAP, and writes
``out_dir/<episode>.rrd`` for each episode (``NAME-vN_ep0003.rrd`` for a release,
``<session>_episode_0003.rrd`` for a session). Each file holds:

* two timelines: ``episode_time`` (a duration from the episode's start: what one scrubs)
  and ``time`` (the absolute header-stamp clock, to line up with other logs); every row
  is at its own recorded stamp, nothing resampled;
* ``/cameras/<name>``: the stored JPEG/PNG bytes as ``EncodedImage`` (never re-encoded);
* ``/<stream>/<joint>/<position|velocity|effort>``: ``Scalars`` for every
  ``sensor_msgs/msg/JointState`` stream (``joint_states``, ``joint_commands``);
  ``/<stream>/<field>``: the other numeric streams (IMU, poses), one series per element;
* ``/robot``: the robot from its URDF (static; meshes that cannot be found are left out
  and each link without geometry is shown as axes), and ``/robot/joint_transforms/<joint>``:
  a ``Transform3D`` from the joint's parent link frame to its child link frame at every
  joint state, computed by Rerun's URDF model (``UrdfJoint.compute_transform_columns``:
  origin, then rotation about or translation along the axis); ``/tf/<child>`` for TF;
* ``/events``: ``TextLog`` rows for start, stop (with the outcome), subtasks,
  interventions and notes; ``/episode``: the facts (task, operator, outcome, flags,
  quality) as a static markdown ``TextDocument``, also as the recording property
  ``episode``.

Each file is written under a temporary name and renamed when complete, so an interrupted
export leaves no half-written ``.rrd``. ``rerun-sdk`` is the optional extra ``view``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..inputs import InputFile
from ..loader import LoaderError, ReleaseReader, select_episodes
from .errors import ExportError
from .grid import _camera_name, staged_output
from .rerun_source import (
    JOINT_STATE,
    EpisodeView,
    NumericStream,
    recording_episode,
    recording_inputs,
    release_episode,
    release_robot,
)

APP_ID = "demofab"
TIME, EPISODE_TIME = "time", "episode_time"
CAMERA_BATCH = 256   # frames per chunk sent (bounds the memory of a long episode)
AXIS_LENGTH = 0.05   # m: axes drawn for a link that has no geometry
MOVABLE = ("revolute", "continuous", "prismatic")
LEVELS = {"intervention": "WARN", "discard": "WARN", "note": "DEBUG"}


@dataclass
class RerunExport:
    """What an export wrote."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _rerun() -> Any:
    try:
        import rerun
    except ImportError as exc:
        raise ExportError(f"the Rerun export needs rerun-sdk ({exc}): pip install "
                          "'demofab[view]'") from exc
    return rerun


def export_rerun(path: str | Path | ReleaseReader, out_dir: str | Path, **options: Any) -> Path:
    """Write one ``.rrd`` per episode under ``out_dir``; returns ``out_dir``. See
    :func:`write_rerun` for the options."""
    return write_rerun(path, out_dir, **options).out_dir


def write_rerun(
    path: str | Path | ReleaseReader,
    out_dir: str | Path,
    *,
    episodes: Sequence[int] | None = None,
    split: str | Sequence[str] | None = None,
    robot_description: str | Path | None = None,
    joint_stream: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> RerunExport:
    """Export a release, session, folder of episode files or one episode MCAP to Rerun.

    ``episodes``/``split`` select release episodes. ``robot_description``: a URDF file used
    for every episode instead of the recorded one (its meshes resolve next to it).
    ``joint_stream``: the JointState stream that drives the robot (default
    ``joint_states``, else the first observation JointState stream). ``overwrite``:
    replace existing files (else an existing file is an error before anything is
    written). ``progress``: a progress bar on stderr."""
    rr = _rerun()
    t0 = time.perf_counter()
    out = RerunExport(Path(out_dir))
    robot = _robot_file(robot_description) if robot_description is not None else None
    loaders = _episode_loaders(path, episodes, split, robot, out.notes)
    finals = [out.out_dir / f"{stem}.rrd" for stem, _ in loaders]
    dupes = sorted({p.name for p in finals if finals.count(p) > 1})
    if dupes:
        raise ExportError(f"episodes would share the file names {', '.join(dupes)}; export "
                          "their sessions one at a time")
    existing = [str(p) for p in finals if p.exists()]
    if existing and not overwrite:
        raise ExportError(f"{', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}: "
                          "already exist (pass overwrite=True, or --overwrite, to replace)")
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task("rerun export", total=len(loaders))
        for (stem, load), final in zip(loaders, finals, strict=True):
            bar.update(task, description=stem)
            view = load()
            with staged_output(final, overwrite) as tmp:
                # the file's own id: the same episode exported from two versions stays two
                rec = rr.RecordingStream(APP_ID, recording_id=f"{stem}:{view.episode_id}")
                if not rec.is_enabled():
                    raise ExportError("Rerun logging is disabled (RERUN=off in the "
                                      "environment?): nothing would be written")
                try:
                    rec.save(tmp, default_blueprint=layout(view, joint_stream))
                    notes = write_episode(rec, view, robot_path=robot[0] if robot else None,
                                          joint_stream=joint_stream)
                    rec.flush()
                finally:
                    rec.disconnect()
                _check_written(tmp, final)
            out.files.append(final)
            out.notes += [n if n.startswith(view.source) else f"{view.source}: {n}"
                          for n in notes]
            bar.advance(task)
    out.seconds = time.perf_counter() - t0
    return out


Loader = Callable[[], EpisodeView]


def _episode_loaders(path: str | Path | ReleaseReader, episodes: Sequence[int] | None,
                     split: str | Sequence[str] | None, robot: tuple[Path, str] | None,
                     notes: list[str]) -> list[tuple[str, Loader]]:
    """(file stem, how to read the episode) for each episode to export, in order; what a
    session leaves out (unfinished or discarded files) goes to ``notes``."""
    from ..release import release_versions

    if isinstance(path, ReleaseReader):
        rel = path
    else:
        p = Path(path)
        if not p.exists():
            raise ExportError(f"{p}: does not exist (expected a release, a session or an "
                              "episode MCAP)")
        if not ((p / "zarr.json").exists() or release_versions(p)):
            if episodes is not None or split is not None:
                raise ExportError(f"{p}: episodes/split select release episodes; for "
                                  "recordings name the episode files instead")
            out: list[tuple[str, Loader]] = []
            files, left_out = recording_inputs(p)
            notes += left_out
            for inp in files:
                stem = inp.path.name.removesuffix(".part").removesuffix(".mcap")
                stem = f"{inp.session}_{stem}" if inp.session else stem
                out.append((stem, partial(_recording, inp, robot)))
            return out
        rel = ReleaseReader(p)
    try:
        chosen = select_episodes(rel, episodes=episodes, split=split)
    except LoaderError as exc:
        raise ExportError(str(exc)) from exc
    if not chosen:
        raise ExportError(f"{rel.path}: no episode to export")
    return [(f"{rel.name}-v{rel.version}_ep{e:04d}", partial(_release, rel, e, robot))
            for e in chosen]


def _recording(inp: InputFile, robot: tuple[Path, str] | None) -> EpisodeView:
    view = recording_episode(inp)
    if robot is not None:
        view.robot = (str(robot[0]), robot[1])
    return view


def _release(rel: ReleaseReader, e: int, robot: tuple[Path, str] | None) -> EpisodeView:
    return release_episode(rel, e, (str(robot[0]), robot[1]) if robot else release_robot(rel, e))


def _check_written(tmp: Path, final: Path) -> None:
    """Rerun's file sink reports write errors (a full disk) only in its log: read the
    file's footer back before it takes its final name."""
    from rerun.chunk import RrdReader

    try:
        ok = tmp.stat().st_size > 0 and bool(RrdReader(tmp).recordings())
    except (OSError, ValueError, RuntimeError) as exc:
        raise ExportError(f"{final}: the recording written is not readable: {exc}") from exc
    if not ok:
        raise ExportError(f"{final}: the recording written is empty")


def _robot_file(path: str | Path) -> tuple[Path, str]:
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"robot description {p}: cannot read: {exc}") from exc
    if "<robot" not in text:
        raise ExportError(f"robot description {p}: not a URDF (no <robot> element)")
    return p, text


# -- one episode ------------------------------------------------------------------------
def write_episode(rec: Any, view: EpisodeView, *, robot_path: Path | None = None,
                  joint_stream: str | None = None) -> list[str]:
    """Log ``view`` into the recording stream ``rec``; returns notes on what could not be
    shown (an unreadable robot description, damage of the source file)."""
    rr = _rerun()
    notes = list(view.notes)
    rec.send_recording_name(view.name)
    rec.send_recording_start_time_nanos(int(view.start_ns))
    for cam in view.cameras:
        entity = f"/cameras/{_camera_name(cam.name)}"
        for a in range(0, len(cam), CAMERA_BATCH):
            b = min(a + CAMERA_BATCH, len(cam))
            media = [cam.media_type] * (b - a) if cam.media_type else None
            rec.send_columns(entity, _indexes(rr, cam.time_ns[a:b], view.start_ns),
                             rr.EncodedImage.columns(blob=cam.read(a, b), media_type=media),
                             strict=True)
    urdf_links: dict[str, bool] = {}  # link -> whether a joint of the URDF is its parent
    if view.robot is not None:
        driver = pick_joint_stream(view.numeric, joint_stream)
        notes += _robot(rr, rec, view, robot_path, driver, urdf_links)
    for s in view.numeric:
        if s.type == JOINT_STATE and s.joint_names:
            _joint_scalars(rr, rec, s, view.start_ns)
        elif s.frames is not None:
            notes += _tf(rr, rec, s, view.start_ns, urdf_links)
        else:
            _scalars(rr, rec, s, view.start_ns)
    if view.events:
        times = np.array([e.time_ns for e in view.events], dtype=np.int64)
        rec.send_columns("/events", _indexes(rr, times, view.start_ns), rr.TextLog.columns(
            text=[e.text for e in view.events],
            level=[LEVELS.get(e.kind, "WARN" if "failure" in e.text else "INFO")
                   for e in view.events]), strict=True)
    view.facts["robot_description"] = view.robot[0] if view.robot else "none"
    rec.log("/episode", rr.TextDocument(facts_markdown(view, notes), media_type="text/markdown"),
            static=True)
    rec.send_property("episode", rr.AnyValues(**{
        k: v if isinstance(v, bool | int | float | str) else json.dumps(v)
        for k, v in view.facts.items() if v is not None}))
    return notes


def layout(view: EpisodeView, joint_stream: str | None = None) -> Any:
    """The recording's default layout: the robot in 3D above the cameras; joint positions
    (and commands), the events and the facts beside them; the time panel on
    ``episode_time``."""
    import rerun.blueprint as rrb

    rr = _rerun()
    driver = pick_joint_stream(view.numeric, joint_stream)
    joints = [s for s in view.numeric if s.type == JOINT_STATE and s.joint_names
              and "position" in s.fields]
    joints.sort(key=lambda s: s is not driver)  # the robot's own stream first
    # entity queries match one path or a whole subtree (no "*" inside): list the joints
    # dozens of joints: no legend over the plot (hovering a line names it)
    plots = [rrb.TimeSeriesView(origin=f"/{s.name}", name=f"{s.name} position", contents=[
        f"$origin/{_part(rr, j)}/position" for j in s.joint_names],
        plot_legend=rrb.PlotLegend(visible=False)) for s in joints[:2]]
    cams = [rrb.Spatial2DView(origin=f"/cameras/{_camera_name(c.name)}",
                              name=_camera_name(c.name)) for c in view.cameras]
    tf = [f"/{s.name}/**" for s in view.numeric if s.frames is not None]
    left: list[Any] = [rrb.Spatial3DView(origin="/", contents=["/robot/**", "/tf_static", *tf],
                                         name="robot")]
    if cams:
        left.append(rrb.Horizontal(*cams))
    right: list[Any] = [*plots, rrb.Horizontal(rrb.TextLogView(origin="/events", name="events"),
                                        rrb.TextDocumentView(origin="/episode", name="episode"))]
    return rrb.Blueprint(
        rrb.Horizontal(rrb.Vertical(*left, row_shares=[3, 2][:len(left)]), rrb.Vertical(*right),
                       column_shares=[3, 2]),
        rrb.TimePanel(timeline=EPISODE_TIME), collapse_panels=False)


def _indexes(rr: Any, times: np.ndarray, start_ns: int) -> list[Any]:
    t = np.asarray(times, dtype=np.int64)
    return [rr.TimeColumn(EPISODE_TIME, duration=(t - start_ns).astype("timedelta64[ns]")),
            rr.TimeColumn(TIME, timestamp=t.astype("datetime64[ns]"))]


def _joint_scalars(rr: Any, rec: Any, s: NumericStream, start_ns: int) -> None:
    idx = _indexes(rr, s.time_ns, start_ns)
    for f, values in s.fields.items():
        if values.ndim != 2 or values.shape[1] != len(s.joint_names):
            continue
        for j, joint in enumerate(s.joint_names):
            rec.send_columns(f"/{s.name}/{_part(rr, joint)}/{f}", idx,
                             rr.Scalars.columns(scalars=values[:, j].astype(np.float64)),
                             strict=True)


def _scalars(rr: Any, rec: Any, s: NumericStream, start_ns: int) -> None:
    idx = _indexes(rr, s.time_ns, start_ns)
    for f, values in s.fields.items():
        if f.endswith("_covariance"):
            continue  # constant 3x3 matrices: nothing to plot
        flat = values.reshape(len(values), -1).astype(np.float64)
        entity = f"/{s.name}/{_part(rr, f)}"
        names = s.names.get(f)
        if names and len(names) == flat.shape[1]:
            rec.log(entity, rr.SeriesLines(names=names), static=True)
        rec.send_columns(entity, idx, rr.Scalars.columns(
            scalars=flat if flat.shape[1] > 1 else flat[:, 0]), strict=True)


def _tf(rr: Any, rec: Any, s: NumericStream, start_ns: int, urdf_links: dict[str, bool]
        ) -> list[str]:
    """TF messages of constant layout: slot k is always parents[k] -> children[k]. An edge
    to a link whose parent the robot description gives is left out (a frame has one
    parent; the URDF's joints already move it), so TF adds what the URDF lacks: the
    robot's base in the world, sensor and end-effector frames (drawn as axes)."""
    assert s.frames is not None
    parents, children = s.frames
    tr = s.fields.get("transforms.transform.translation")
    rot = s.fields.get("transforms.transform.rotation")
    if tr is None or rot is None or tr.ndim != 3 or tr.shape[1] != len(children):
        _scalars(rr, rec, s, start_ns)
        return []
    idx = _indexes(rr, s.time_ns, start_ns)
    n = len(s.time_ns)
    shadowed = []
    for k, (parent, child) in enumerate(zip(parents, children, strict=False)):
        if not parent or not child:
            continue
        if urdf_links.get(child):
            shadowed.append(f"{parent} -> {child}")
            continue
        entity = f"/{s.name}/{_part(rr, child)}"
        rec.send_columns(entity, idx, rr.Transform3D.columns(
            translation=tr[:, k], quaternion=rot[:, k], parent_frame=[parent] * n,
            child_frame=[child] * n), strict=True)
        if child not in urdf_links:
            rec.log(f"{entity}/frame", rr.CoordinateFrame(child),
                    rr.TransformAxes3D(AXIS_LENGTH, show_frame=False), static=True)
    if shadowed:
        return [f"{s.name}: left out {', '.join(shadowed)} (the robot description's joints "
                "give those frames' parents)"]
    return []


def _part(rr: Any, name: str) -> str:
    return str(rr.escape_entity_path_part(name))


def pick_joint_stream(streams: Sequence[NumericStream], wanted: str | None
                      ) -> NumericStream | None:
    """The JointState stream that drives the robot: ``wanted``, else ``joint_states``,
    else the first observation JointState stream, else the first one not named a
    command."""
    joints = [s for s in streams if s.type == JOINT_STATE and s.joint_names
              and "position" in s.fields]
    if wanted is not None:
        for s in joints:
            if s.name == wanted:
                return s
        raise ExportError(f"joint stream {wanted!r}: not a JointState stream of the episode; "
                          f"JointState streams: {', '.join(s.name for s in joints) or 'none'}")
    for test in (lambda s: s.name == "joint_states", lambda s: s.role == "observation",
                 lambda s: "command" not in s.name):
        for s in joints:
            if test(s):
                return s
    return None


def _robot(rr: Any, rec: Any, view: EpisodeView, robot_path: Path | None,
           driver: NumericStream | None, links: dict[str, bool]) -> list[str]:
    """The URDF (static) and the joint transforms at every state of ``driver``; its links
    go to ``links`` (True: a joint's child, False: the root)."""
    from rerun.urdf import UrdfTree

    assert view.robot is not None
    where, text = view.robot
    with tempfile.TemporaryDirectory(prefix="demofab-urdf-") as tmp:
        path = robot_path or Path(tmp) / "robot.urdf"
        if robot_path is None:
            path.write_text(text)
        try:
            tree = UrdfTree.from_file_path(path, "robot")
            tree.log_urdf_to_recording(rec)
        except (RuntimeError, ValueError) as exc:
            view.robot = None
            return [f"robot description ({where}) not shown: {exc}"]
    links[tree.root_link().name] = False
    links.update((j.child_link, True) for j in tree.joints())
    for link in links:
        if not tree.get_visual_geometry_paths(link):
            rec.log(f"/robot/frames/{_part(rr, link)}", rr.CoordinateFrame(link),
                    rr.TransformAxes3D(AXIS_LENGTH, show_frame=False), static=True)
    if driver is None:
        return ["robot shown at rest: the episode has no JointState stream with positions"]
    positions = driver.fields["position"]
    column = {n: i for i, n in enumerate(driver.joint_names)}
    idx_all = _indexes(rr, driver.time_ns, view.start_ns)
    moved = 0
    for joint in tree.joints():
        if joint.joint_type not in MOVABLE:
            continue
        if joint.name in column:
            values = positions[:, column[joint.name]].astype(np.float64)
        elif joint.mimic is not None and joint.mimic.joint in column:
            m = joint.mimic
            values = positions[:, column[m.joint]] * m.multiplier + m.offset
        else:
            continue
        ok = np.isfinite(values)
        idx = idx_all if ok.all() else _indexes(rr, driver.time_ns[ok], view.start_ns)
        if not ok.any():
            continue
        rec.send_columns(f"/robot/joint_transforms/{_part(rr, joint.name)}", idx,
                         joint.compute_transform_columns(values[ok].tolist(), clamp=False),
                         strict=True)
        moved += 1
    missing = [n for n in driver.joint_names if tree.get_joint_by_name(n) is None]
    notes = []
    if missing:
        notes.append(f"{len(missing)} joints of {driver.name} are not in the robot description "
                     f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); "
                     "they are plotted but do not move the robot")
    if not moved:
        notes.append(f"no joint of the robot description is in {driver.name}: robot at rest")
    return notes


def facts_markdown(view: EpisodeView, notes: Sequence[str]) -> str:
    """The episode's facts as the markdown of its ``/episode`` document."""
    lines = [f"# {view.facts.get('task') or view.name}", "", "| fact | value |", "|---|---|"]
    for k, v in view.facts.items():
        if isinstance(v, list):
            v = "; ".join(str(x) for x in v) or "-"
        lines.append(f"| {k} | {str(v).replace('|', '/')} |")
    lines += ["", f"{len(view.events)} events, {sum(len(c) for c in view.cameras)} "
              f"camera frames, start {view.start_ns} ns, "
              f"{(view.end_ns - view.start_ns) / 1e9:.3f} s."]
    if notes:
        lines += ["", "## Notes", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
