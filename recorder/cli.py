"""``demofab record | inspect | recover``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import RecorderError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record episodes from a source into a session directory")
    p.add_argument("--source", default="synthetic",
                   help="synthetic (default), bag (an MCAP file, bag or session), dds")
    p.add_argument("--input", help="input path for --source bag")
    p.add_argument("--profile", default="humanoid", help="built-in profile name or YAML path")
    p.add_argument("--out", required=True, help="session directory (created or reopened)")
    p.add_argument("--episodes", type=int, help="stop after this many episodes")
    p.add_argument("--episode-seconds", type=float, help="length of each episode")
    p.add_argument("--reset-seconds", type=float, default=0.0,
                   help="reset phase between episodes (not recorded)")
    p.add_argument("--task", default="", help="task of the episodes")
    p.add_argument("--operator", default="", help="teleoperator's name or id")
    p.add_argument("--outcome", default="success", choices=["success", "failure", "unknown"],
                   help="outcome of episodes ended by --episode-seconds")
    p.add_argument("--interactive", action="store_true",
                   help="keys and a live panel in the terminal (default when stdin is a "
                        "terminal and --episodes is not given)")
    p.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"])
    p.add_argument("--chunk-size", type=int, default=1 << 20)
    p.add_argument("--seed", type=int, default=0, help="synthetic rig: random seed")
    p.add_argument("--jitter-ms", type=float, default=0.2, help="synthetic rig: stamp jitter")
    p.add_argument("--drop-rate", type=float, default=0.0, help="synthetic rig: loss rate")
    p.add_argument("--latency-ms", type=float, default=2.0, help="synthetic rig: latency")
    p.add_argument("--realtime", action="store_true",
                   help="synthetic rig: pace messages on the wall clock")
    p.add_argument("--robot-description", help="URDF or MJCF file to attach to each episode")
    p.add_argument("--json", action="store_true", help="print the finished episodes as JSON")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("inspect", help="show what an episode, session or rosbag2 bag holds")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("recover", help="turn an interrupted episode into a valid MCAP file")
    p.add_argument("path", help="session directory, or a damaged .mcap/.part file")
    p.add_argument("--out", help="output file when PATH is a single file")
    p.add_argument("--profile", default="humanoid")
    p.set_defaults(func=cmd_recover)


def open_session(out: Path, profile_arg: str | None, **kw: object):  # noqa: ANN201
    """Open or create a session; a reopened session keeps its recorded profile."""
    import yaml

    from .profile import load_profile, parse_profile
    from .session import STATE_FILE, Session

    state = out / STATE_FILE
    if state.exists():
        raw = yaml.safe_load(state.read_text()) or {}
        profile = parse_profile(raw.get("profile"), str(state))
        if profile_arg and profile_arg != profile.name and Path(profile_arg).suffix == "":
            raise RecorderError(f"{out} was recorded with profile {profile.name!r}, "
                                f"not {profile_arg!r}")
    else:
        profile = load_profile(profile_arg or "humanoid")
    return Session(out, profile, **kw)  # type: ignore[arg-type]


def cmd_record(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .control import Plan, Recorder
    from .sources import make_source
    from .urdf import urdf_from_profile
    from .writer import WriterOptions

    con = Console(stderr=True)
    out = Path(args.out)
    options = WriterOptions(compression=args.compression, chunk_size=args.chunk_size)
    session = open_session(out, args.profile, options=options)
    for r in session.recovered:
        con.print(f"[yellow]recovered {r.path.name}: {r.messages} messages "
                  f"({r.kept_bytes} of {r.total_bytes} bytes usable)[/]")
    profile = session.profile
    if args.robot_description:
        rd = Path(args.robot_description)
        media = "application/xml"
        session.robot_description = (rd.name, media, rd.read_bytes())
    elif args.source == "synthetic":
        session.robot_description = ("robot_description.urdf", "application/xml",
                                     urdf_from_profile(profile))
    if args.source == "synthetic":
        source = make_source("synthetic", profile, seed=args.seed, jitter_ms=args.jitter_ms,
                             drop_rate=args.drop_rate, latency_ms=args.latency_ms,
                             realtime=args.realtime or _interactive(args))
    elif args.source in ("bag", "mcap"):
        if not args.input:
            raise RecorderError("--source bag needs --input PATH")
        source = make_source("bag", profile, path=args.input)
    else:
        source = make_source(args.source, profile)
    interactive = _interactive(args)
    plan = Plan(episodes=args.episodes, episode_seconds=args.episode_seconds,
                reset_seconds=args.reset_seconds, task=args.task, operator=args.operator,
                outcome=args.outcome, autostart=not interactive)
    if interactive:
        from .console import run_interactive

        finished = run_interactive(session, source, plan)
    else:
        rec = Recorder(session, source, plan, on_update=_progress(con))
        finished = rec.run()
        if sys.stderr.isatty():
            con.print()
    for e in finished:
        state = "[red]flagged: " + ", ".join(e.flags) + "[/]" if e.flagged else "[green]ok[/]"
        con.print(f"episode {e.index} {e.file}: {e.outcome}, {e.messages} messages, "
                  f"{(e.end_ns - e.start_ns) / 1e9:.1f} s, {state}")
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps([asdict(e) for e in finished]))
    return 0


def _interactive(args: argparse.Namespace) -> bool:
    return bool(args.interactive or (args.episodes is None and sys.stdin.isatty()))


def _progress(con):  # noqa: ANN001, ANN202
    def update(rec, now: int) -> None:  # noqa: ANN001
        s = rec.session
        if s.current is None or not sys.stderr.isatty():
            return
        t = (now - s.current.start_ns) / 1e9
        total = rec.plan.episode_seconds
        con.print(f"\repisode {s.current.index}: {t:6.1f}"
                  + (f" / {total:.1f} s" if total else " s"), end="")

    return update


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_path, render, to_json

    report = inspect_path(args.path)
    if args.json:
        print(to_json(report))
    else:
        render(report)
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from .profile import load_profile
    from .recover import recover_file

    path = Path(args.path)
    if path.is_dir():
        session = open_session(path, None)
        if not session.recovered:
            print(f"{path}: nothing to recover")
        for r in session.recovered:
            print(f"recovered {r.path}: {r.messages} messages, {r.kept_bytes} of "
                  f"{r.total_bytes} bytes usable" + (f" (cut: {r.cut_reason})" if r.cut_reason else ""))
        return 0
    out = Path(args.out) if args.out else path.with_name(
        path.name.removesuffix(".part").removesuffix(".mcap") + ".recovered.mcap")
    r = recover_file(path, out, load_profile(args.profile))
    print(f"recovered {r.path}: {r.messages} messages, {r.kept_bytes} of {r.total_bytes} "
          "bytes usable" + (f" (cut: {r.cut_reason})" if r.cut_reason else ""))
    return 0
