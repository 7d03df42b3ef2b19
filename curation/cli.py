"""``demofab curate | curate-report | release list|show|verify | export``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CurationError, ReleaseError

if TYPE_CHECKING:
    from .config import CurateConfig
    from .labels import Labels


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("curate", help="curate recordings into a versioned Zarr v3 release")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="episode MCAP files, sessions, rosbag2 bags, or folders holding them")
    p.add_argument("--out", required=True, help="releases directory")
    p.add_argument("--name", required=True, help="release name: creates OUT/NAME/vN")
    _common(p)
    p.add_argument("--replace", action="store_true",
                   help="build the new version from INPUTs only (do not carry the newest "
                        "version's episodes over)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_curate)

    p = sub.add_parser("curate-report", help="HTML quality report of a release or of recordings")
    p.add_argument("path", help="a release (version or name directory) or recordings")
    p.add_argument("--out", required=True, help="HTML file to write")
    _common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("release", help="list, show or verify curated releases")
    rsub = p.add_subparsers(dest="release_command", required=True)
    q = rsub.add_parser("list", help="versions under a releases or release-name directory")
    q.add_argument("path")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = rsub.add_parser("show", help="streams, arrays and episodes of a release version")
    q.add_argument("path", help="a version directory, or a name directory (newest version)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_show)
    q = rsub.add_parser("sample", help="draw training samples with the loader and show them")
    q.add_argument("path", help="a release version (or name directory: newest version)")
    q.add_argument("-n", type=int, default=3, help="how many random samples")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_sample)
    q = rsub.add_parser("verify", help="check every file against the manifest")
    q.add_argument("path")
    q.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="export a release to LeRobot, robomimic or Rerun")
    p.add_argument("path", help="a release version (or name directory: newest version); for "
                                "rerun also a session directory or an episode MCAP")
    p.add_argument("--format", required=True, choices=["lerobot", "robomimic", "rerun"])
    p.add_argument("--out", required=True, metavar="PATH",
                   help="what to write: a file when PATH names one (robomimic: demos.hdf5), "
                        "else a directory of that name (LeRobot: the dataset root; "
                        "robomimic: a directory holding NAME-vN.hdf5; rerun: the directory "
                        "of one .rrd per episode)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PATH")
    p.add_argument("--robot-description", metavar="URDF",
                   help="rerun: show this URDF instead of the recorded robot description")
    p.set_defaults(func=cmd_export)
    from .review.cli import register as register_review  # demofab review (the review page)
    register_review(sub)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", help="labels file (YAML or CSV; see docs/curator-guide.md)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a label for every episode, e.g. --set task='pick up the box'")
    p.add_argument("--config", help="curation config YAML (segment, quality, split sections)")
    p.add_argument("--profile", help="recording profile for recordings that carry none")


def _setup(args: argparse.Namespace) -> tuple[CurateConfig, Labels]:
    from dataclasses import replace

    from .config import load_config
    from .labels import load_labels

    cfg = load_config(args.config)
    if args.profile:
        cfg = replace(cfg, profile=args.profile)
    return cfg, load_labels(args.labels, args.set)


def _progress() -> Callable[[str, int, int], None] | None:
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    con = Console(stderr=True)

    def show(what: str, i: int, n: int) -> None:
        con.print(f"\r[{i + 1 if i < n else n}/{n}] {what}".ljust(70), end="")

    return show


def cmd_curate(args: argparse.Namespace) -> int:
    from .pipeline import curate

    cfg, labels = _setup(args)
    r = curate(args.inputs, args.out, args.name, labels=labels, config=cfg,
               replace=args.replace, progress=_progress())
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    if sys.stderr.isatty():
        print(file=sys.stderr)
    state = "created" if r.created else "unchanged (same inputs, labels and config as)"
    print(f"{state} {r.release}: {r.episodes} episodes ({r.new_episodes} new, {r.flagged} "
          f"flagged); {r.decoded_files} files decoded, {r.cached_files} from cache, "
          f"{r.input_bytes / 1e6:.1f} MB in {r.seconds:.2f} s")
    for s in r.skipped:
        print(f"  skipped {s['path']}: {s['reason']}")
    for n in r.notes:
        print(f"  note: {n}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .pipeline import curate
    from .release import release_versions
    from .report import render_release

    path = Path(args.path)
    if (path / "zarr.json").exists() or release_versions(path):
        out = render_release(path, args.out)
    else:
        cfg, labels = _setup(args)
        with tempfile.TemporaryDirectory(prefix="demofab-report-") as tmp:
            r = curate([path], tmp, "report", labels=labels, config=cfg)
            out = render_release(r.release, args.out)
    print(f"wrote {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .release import list_releases

    rows = list_releases(args.path)
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"{args.path}: no releases")
    for r in rows:
        if "error" in r:
            print(f"{r['name']} v{r['version']}: {r['error']}")
            continue
        print(f"{r['name']} v{r['version']}  {r['episodes']} episodes ({r['flagged']} flagged), "
              f"{r['duration_s']:.1f} s, {r['streams']} streams, {r['created_at']}  {r['path']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .release import release_summary

    s = release_summary(args.path)
    if args.json:
        print(json.dumps(s))
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{s['name']} v{s['version']}[/] {s['path']} ({s['files']} files, "
              f"sha256 {str(s['release_sha256'])[:16]}…), sync reference {s['sync_reference']}")
    tt = Table("stream", "type", "count", "rate Hz", "arrays")
    for st in s["streams"]:
        tt.add_row(st["name"], st["type"], str(st["count"]), str(st["measured_rate_hz"]),
                   ", ".join(st["arrays"]))
    con.print(tt)
    et = Table("#", "episode", "task", "operator", "success", "split", "s", "score", "flags",
               "provenance")
    for e in s["episodes"]:
        et.add_row(str(e["index"]), e["episode_id"][:16], e["task"], e["operator"],
                   str(e["success"]), e["split"], f"{e['duration_s']:.1f}",
                   f"{e['quality_score']:.2f}", ", ".join(e["flag_names"]) or "-",
                   provenance_line(e.get("provenance", {})))
    con.print(et)
    for line in _file_problems(s["episodes"]):
        con.print(line, markup=False, highlight=False)
    return 0


def provenance_line(p: dict[str, Any]) -> str:
    """Where an episode came from, in a few words: the recording's hash, or for a
    simulated episode its seed and the source demonstrations it was multiplied from."""
    if p.get("kind") != "sim":
        return f"rec {str(p.get('source_sha256', ''))[:12]}"
    sim = p.get("sim", {})
    out = f"sim seed {sim.get('seed', '?')}"
    sources = sim.get("sources") or []
    if isinstance(sources, list) and sources:
        names = [Path(str(s.get("path", s.get("file", "?")) if isinstance(s, dict) else s)).name
                 for s in sources]
        out += " from " + ", ".join(names)
    return out


def _file_problems(episodes: list[dict[str, Any]]) -> list[str]:
    """The reasons of flags about the input files (a bad session profile, truncation, ...),
    once each, with the episodes they concern."""
    from .flags import FILE_FLAGS

    seen: dict[tuple[str, str], list[str]] = {}
    for e in episodes:
        for r in e.get("flag_reasons", []):
            if r["flag"] in FILE_FLAGS:
                seen.setdefault((r["flag"], r["detail"]), []).append(str(e["index"]))
    return [f"{flag} (episodes {', '.join(idx)}): {detail}"
            for (flag, detail), idx in seen.items()]


def cmd_verify(args: argparse.Namespace) -> int:
    from .manifest import verify
    from .release import resolve

    p = resolve(args.path)
    bad = verify(p)
    if bad:
        raise ReleaseError(f"{p}: {len(bad)} files differ from the manifest: " + "; ".join(bad[:5]))
    print(f"{p}: every file matches the manifest")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Samples as a lab would draw them: the current joint state, 16 future commands at
    50 Hz, and the current frame of every camera, aligned on the release's clocks."""
    import numpy as np

    from .loader import ReleaseDataset, ReleaseReader

    rel = ReleaseReader(args.path)
    cams = [f"{s}/data" for s, st in rel.streams.items() if st.is_camera]
    deltas: dict[str, list[float]] = {k: [0.0] for k in cams}
    if "joint_commands" in rel.streams:
        deltas["joint_commands/position"] = [i / 50 for i in range(16)]
    keys = ["joint_states/position"] if "joint_states" in rel.streams else []
    ds = ReleaseDataset(rel.path, keys=keys, delta_timestamps=deltas)
    if len(ds) == 0:
        raise ReleaseError(f"{rel.path}: no samples (no episodes pass the filters)")
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in rng.choice(len(ds), size=min(args.n, len(ds)), replace=False):
        s = ds[int(i)]
        rows.append({"index": int(i), "episode_index": int(s["episode_index"]),
                     "time_s": round(float(s["timestamp"]), 4),
                     **{k: list(np.shape(v)) for k, v in s.items()
                        if isinstance(v, np.ndarray) and not k.endswith("_is_pad")},
                     "padded": {k: int(np.sum(v)) for k, v in s.items() if k.endswith("_is_pad")}})
    if args.json:
        print(json.dumps({"release": str(rel.path), "samples": len(ds), "drawn": rows}))
        return 0
    print(f"{rel.path}: {len(ds)} samples on clock {ds.clock!r}")
    for r in rows:
        shapes = ", ".join(f"{k} {v}" for k, v in r.items()
                           if k not in ("index", "episode_index", "time_s", "padded"))
        print(f"  sample {r['index']}: episode {r['episode_index']} t={r['time_s']} s: {shapes}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .release import resolve

    try:
        from .export import export_release
    except ImportError as exc:
        raise CurationError(f"exports are not available in this build: {exc}") from exc
    out = Path(args.out)
    if args.format == "rerun":
        return _export_rerun(args)
    if args.robot_description:
        raise CurationError("--robot-description is for --format rerun only")
    opts: dict[str, Any] = {"overwrite": args.overwrite}
    names_file = out.suffix.lower() in EXPORT_FILE_SUFFIXES
    if args.format == "lerobot":
        if names_file:
            raise CurationError(f"--out {out}: names a file, but a LeRobot dataset is a "
                                "directory; give a directory name")
        where, opts["name"] = out.parent, out.name   # the dataset root is PATH
    elif names_file:
        where, opts["name"] = out.parent, out.name   # the HDF5 file is PATH
    else:
        where = out                                  # PATH/<name>-v<N>.hdf5
    written = export_release(resolve(args.path), args.format, where, **opts)
    print(f"exported {args.path} as {args.format} to {written}")
    return 0


def _export_rerun(args: argparse.Namespace) -> int:
    from .export.rerun import write_rerun

    r = write_rerun(args.path, args.out, overwrite=args.overwrite, progress=sys.stderr.isatty(),
                    robot_description=args.robot_description)
    print(f"exported {args.path} as rerun to {r.out_dir}: {len(r.files)} recordings "
          f"({sum(f.stat().st_size for f in r.files) / 1e6:.1f} MB) in {r.seconds:.2f} s")
    for n in r.notes:
        print(f"  note: {n}")
    return 0


EXPORT_FILE_SUFFIXES = (".hdf5", ".h5", ".hdf")  # an --out with these names a file
