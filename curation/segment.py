"""Segmentation: where episodes start and end in a recording, and their subtask marks.

In order of preference: the recorder's START/STOP events, its ``demofab.episode``
metadata record, automatic segmentation (idle periods of the joints and commands, or
gripper/hand close-open cycles), else the whole file. Grasp and release marks (gripper
closure crossing thresholds) and contacts (effort steps) are found in every episode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recorder.contract import EPISODE_METADATA, EventKind

from .config import SegmentConfig
from .decode import JOINT_STATE, StreamData
from .ingest import FileRecord, event_name

START, STOP, DISCARD = (event_name(k) for k in (EventKind.START, EventKind.STOP,
                                                 EventKind.DISCARD))
MARKS = tuple(event_name(k) for k in (EventKind.SUBTASK, EventKind.INTERVENTION,
                                      EventKind.NOTE))


@dataclass
class Segment:
    index: int
    start_ns: int
    end_ns: int
    method: str                      # events | metadata | idle | gripper | whole_file
    whole: bool = False              # the episode is all rows of the file
    discarded: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def rows(self, sd: StreamData) -> tuple[int, int]:
        if self.whole:
            return 0, len(sd)
        t = sd.time_ns
        return (int(np.searchsorted(t, self.start_ns, "left")),
                int(np.searchsorted(t, self.end_ns, "right")))


def file_span(rec: FileRecord) -> tuple[int, int]:
    lo = [int(s.time_ns[0]) for s in rec.streams.values() if len(s)]
    hi = [int(s.time_ns[-1]) for s in rec.streams.values() if len(s)]
    lo += [e["time_ns"] for e in rec.events]
    hi += [e["time_ns"] for e in rec.events]
    return (min(lo), max(hi)) if lo else (0, 0)


def segment_file(rec: FileRecord, cfg: SegmentConfig,
                 limits: dict[str, tuple[float, float]] | None = None
                 ) -> tuple[list[Segment], list[str]]:
    """Episodes of one file, and notes on what automatic segmentation left out."""
    notes: list[str] = []
    segs = _from_events(rec)
    if not segs:
        md = rec.metadata.get(EPISODE_METADATA)
        if md is not None:
            lo, hi = file_span(rec)
            segs = [Segment(0, int(md.get("start_ns") or lo), int(md.get("end_ns") or hi),
                            "metadata", whole=True, info=_md_info(md))]
    if not segs and cfg.auto != "none":
        segs = _auto(rec, cfg, limits, notes)
    if not segs:
        lo, hi = file_span(rec)
        segs = [Segment(0, lo, hi, "whole_file", whole=True)]
    for s in segs:
        s.annotations.extend(detect_marks(rec, s, cfg, limits))
        s.annotations.sort(key=lambda a: a["time_ns"])
    return segs, notes


def _md_info(md: dict[str, str]) -> dict[str, Any]:
    return {k: md[k] for k in ("task", "operator", "outcome", "episode_id", "robot", "session",
                               "profile") if k in md} | (
        {"recorder_episode_index": int(md["episode_index"])} if "episode_index" in md else {})


def _from_events(rec: FileRecord) -> list[Segment]:
    segs: list[Segment] = []
    cur: Segment | None = None
    md = rec.metadata.get(EPISODE_METADATA, {})
    for e in rec.events:
        kind = e["kind"]
        if kind == START:
            if cur is not None:
                cur.end_ns = e["time_ns"] - 1
                segs.append(cur)
            cur = Segment(len(segs), e["time_ns"], e["time_ns"], "events", info={
                "task": e["task"], "operator": e["operator"], "episode_id": e["episode_id"],
                "recorder_episode_index": e["episode_index"]})
        elif kind in (STOP, DISCARD) and cur is not None:
            cur.end_ns = e["time_ns"]
            cur.discarded = kind == DISCARD
            if e["outcome"]:
                cur.info["outcome"] = e["outcome"]
            segs.append(cur)
            cur = None
        elif kind in MARKS:
            target = cur or (segs[-1] if segs else None)
            if target is not None:
                target.annotations.append({"kind": kind, "label": e["label"],
                                           "time_ns": e["time_ns"], "source": "event"})
    if cur is not None:  # no STOP: the file was cut; the episode runs to the last data
        cur.end_ns = max(file_span(rec)[1], cur.start_ns)
        segs.append(cur)
    if len(segs) == 1:
        segs[0].whole = True
        for k in ("outcome", "robot", "session", "profile"):
            if k in md and k not in segs[0].info:
                segs[0].info[k] = md[k]
    return segs


# -- automatic segmentation -------------------------------------------------------------
def joint_streams(rec: FileRecord) -> tuple[StreamData | None, StreamData | None]:
    """(measured joint states, joint commands) among the file's JointState streams."""
    js = [s for s in rec.streams.values() if s.type == JOINT_STATE and "position" in s.fields]
    cmd = [s for s in js if re.search("command|action|target", s.topic)]
    obs = [s for s in js if s not in cmd]
    state = max(obs, key=len) if obs else None
    command = max(cmd, key=len) if cmd else None
    return state, command


def _speed(sd: StreamData) -> np.ndarray:
    if "velocity" in sd.fields and not np.isnan(sd.fields["velocity"]).all():
        speed: np.ndarray = np.nan_to_num(np.abs(np.asarray(sd.fields["velocity"]))).max(axis=1)
        return speed
    pos = np.asarray(sd.fields["position"])
    dt = np.diff(sd.time_ns) / 1e9
    dt[dt <= 0] = np.inf
    v = np.abs(np.diff(pos, axis=0)) / dt[:, None]
    return np.concatenate([[0.0], np.nan_to_num(v).max(axis=1)])


def _runs(times: np.ndarray, gap_ns: int) -> list[tuple[int, int]]:
    if not len(times):
        return []
    breaks = np.flatnonzero(np.diff(times) > gap_ns)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(times) - 1]])
    return [(int(times[a]), int(times[b])) for a, b in zip(starts, ends, strict=True)]


def _auto(rec: FileRecord, cfg: SegmentConfig, limits: dict[str, tuple[float, float]] | None,
          notes: list[str]) -> list[Segment]:
    state, command = joint_streams(rec)
    if state is None and command is None:
        return []
    spans: list[tuple[int, int]] = []
    method = ""
    if "idle" in cfg.auto:
        active = []
        if state is not None and len(state) > 1:
            active.append(state.time_ns[_speed(state) > cfg.idle_velocity])
        if command is not None and len(command) > 1:
            pos = np.asarray(command.fields["position"])
            delta = np.nan_to_num(np.abs(np.diff(pos, axis=0))).max(axis=1)
            active.append(command.time_ns[1:][delta > cfg.idle_command_delta])
        times = np.sort(np.concatenate(active)) if active else np.zeros(0, np.int64)
        spans = _runs(times, int(cfg.idle_min_s * 1e9))
        method = "idle"
    if "gripper" in cfg.auto:
        marks = _grasp_marks(state or command, cfg, limits, None)
        releases = [m["time_ns"] for m in marks if m["kind"] == "release"]
        if releases:
            lo, hi = file_span(rec)
            cuts = [lo] + releases + ([hi] if hi > releases[-1] else [])
            gspans = [(cuts[i] + (1 if i else 0), cuts[i + 1]) for i in range(len(cuts) - 1)]
            if spans:
                spans = [(max(a, c), min(b, d)) for a, b in spans for c, d in gspans
                         if min(b, d) > max(a, c)]
            else:
                spans = gspans
            method = "gripper" if method == "" else "idle+gripper"
    keep = [(a, b) for a, b in spans if (b - a) / 1e9 >= cfg.min_episode_s]
    for a, b in spans:
        if (b - a) / 1e9 < cfg.min_episode_s:
            notes.append(f"{rec.path}: automatic segment {a}..{b} ns ({(b - a) / 1e9:.2f} s) "
                         f"is shorter than min_episode_s={cfg.min_episode_s}; left out")
    if spans and not keep:
        return []
    return [Segment(i, a, b, method) for i, (a, b) in enumerate(keep)]


# -- subtask marks ----------------------------------------------------------------------
def _closure(sd: StreamData, cfg: SegmentConfig,
             limits: dict[str, tuple[float, float]] | None) -> np.ndarray | None:
    names = sd.attrs.get("joint_names") or []
    pick = [i for i, n in enumerate(names) if re.search(cfg.gripper_joints, n)]
    if not pick:
        return None
    pos = np.asarray(sd.fields["position"])[:, pick]
    lo = np.nanmin(pos, axis=0)
    hi = np.nanmax(pos, axis=0)
    if limits:
        for j, i in enumerate(pick):
            if names[i] in limits and np.isfinite(limits[names[i]]).all():
                lo[j], hi[j] = limits[names[i]]
    rng = np.where(hi - lo > 1e-9, hi - lo, 1.0)
    # a joint whose closed end is its lower limit closes toward negative values
    norm = (pos - lo) / rng
    closed_low = np.abs(lo) > np.abs(hi)
    norm[:, closed_low] = 1.0 - norm[:, closed_low]
    closure: np.ndarray = np.nanmean(norm, axis=1)
    return closure


def _grasp_marks(sd: StreamData | None, cfg: SegmentConfig,
                 limits: dict[str, tuple[float, float]] | None,
                 rows: tuple[int, int] | None) -> list[dict[str, Any]]:
    if sd is None or "position" not in sd.fields or len(sd) < 2:
        return []
    c = _closure(sd, cfg, limits)
    if c is None:
        return []
    t = sd.time_ns
    a, b = rows or (0, len(sd))
    c, t = c[a:b], t[a:b]
    marks = []
    closed = bool(len(c) and c[0] > cfg.grasp_close)
    for i in range(1, len(c)):
        if not closed and c[i] > cfg.grasp_close:
            closed = True
            marks.append({"kind": "grasp", "label": "", "time_ns": int(t[i]), "source": "auto"})
        elif closed and c[i] < cfg.grasp_open:
            closed = False
            marks.append({"kind": "release", "label": "", "time_ns": int(t[i]),
                          "source": "auto"})
    return marks


def detect_marks(rec: FileRecord, seg: Segment, cfg: SegmentConfig,
                 limits: dict[str, tuple[float, float]] | None) -> list[dict[str, Any]]:
    state, command = joint_streams(rec)
    ref = state or command
    if ref is None:
        return []
    marks = _grasp_marks(ref, cfg, limits, seg.rows(ref))
    if cfg.contact_effort_step > 0 and state is not None and "effort" in state.fields:
        a, b = seg.rows(state)
        eff = np.asarray(state.fields["effort"][a:b])
        if len(eff) > 1:
            step = np.nan_to_num(np.abs(np.diff(eff, axis=0))).max(axis=1)
            hits = np.flatnonzero(step > cfg.contact_effort_step) + 1
            last = -(10**18)
            for i in hits:
                t = int(state.time_ns[a + i])
                if t - last > 500_000_000:
                    marks.append({"kind": "contact", "label": "", "time_ns": t, "source": "auto"})
                    last = t
    return marks
