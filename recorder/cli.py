"""``demofab record | inspect | recover``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import MCAP_SUFFIX, PART_SUFFIX, ROBOT_DESCRIPTION
from .errors import RecorderError

if TYPE_CHECKING:
    from rich.console import Console

    from .control import Recorder
    from .replay import Player, ReplayStats
    from .session import Session


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="record episodes from a source into a session directory")
    p.add_argument("--source", default="synthetic",
                   help="synthetic (default), sim (the simulated G1 operator; --task is the "
                   "sim task), bag (an MCAP file, bag or session), dds")
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
    p.add_argument("--domain-id", type=int,
                   help="--source dds: ROS 2 domain id (default: $ROS_DOMAIN_ID or 0)")
    p.add_argument("--robot-description", help="URDF or MJCF file to attach to each episode")
    p.add_argument("--sim-config", metavar="YAML",
                   help="--source sim: randomization config (default: the built-in one)")
    p.add_argument("--no-cameras", action="store_true",
                   help="--source sim: record without rendering the cameras")
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

    register_replay(sub)


def open_session(out: Path, profile_arg: str | None, **kw: Any) -> Session:
    """Open or create a session; a reopened session keeps its recorded profile. Nothing
    is recovered here: ``Session.recover()`` is the caller's explicit step."""
    from .contract import read_session_state
    from .profile import load_profile, parse_profile
    from .session import Session

    state = read_session_state(out)
    if state is not None:
        profile = parse_profile(state.profile, str(state.path))
        if profile_arg and profile_arg != profile.name and Path(profile_arg).suffix == "":
            raise RecorderError(f"{out} was recorded with profile {profile.name!r}, "
                                f"not {profile_arg!r}")
    else:
        profile = load_profile(profile_arg or "humanoid")
    return Session(out, profile, **kw)


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
    for r in session.recover():
        con.print(f"[yellow]recovered {r.path.name}: {r.messages} messages "
                  f"({r.kept_bytes} of {r.total_bytes} bytes usable)[/]")
    profile = session.profile
    if args.robot_description:
        rd = Path(args.robot_description)
        media = "application/xml"
        session.robot_description = (rd.name, media, rd.read_bytes())
    elif args.source == "synthetic":
        session.robot_description = (ROBOT_DESCRIPTION, "application/xml",
                                     urdf_from_profile(profile))
    if args.source == "synthetic":
        source = make_source("synthetic", profile, seed=args.seed, jitter_ms=args.jitter_ms,
                             drop_rate=args.drop_rate, latency_ms=args.latency_ms,
                             realtime=args.realtime or _interactive(args))
    elif args.source in ("bag", "mcap"):
        if not args.input:
            raise RecorderError("--source bag needs --input PATH")
        source = make_source("bag", profile, path=args.input)
    elif args.source == "dds":
        source = make_source("dds", profile, domain_id=args.domain_id)
    elif args.source == "sim":
        sim_options: dict[str, Any] = {"operator": args.operator} if args.operator else {}
        source = make_source("sim", profile, task=args.task, seed=args.seed,
                             episodes=args.episodes, config=args.sim_config,
                             cameras=not args.no_cameras, **sim_options)
    else:
        source = make_source(args.source, profile)
    extended = getattr(source, "profile", None)
    if isinstance(extended, type(profile)) and extended is not profile:
        session.adopt_profile(extended)  # e.g. the simulator's ground-truth topic
        profile = extended
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


def _progress(con: Console) -> Callable[[Recorder, int], None]:
    def update(rec: Recorder, now: int) -> None:
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
    from .salvage import recover_file

    path = Path(args.path)
    if path.is_dir():
        recovered = open_session(path, None).recover()
        if not recovered:
            print(f"{path}: nothing to recover")
        for r in recovered:
            print(f"recovered {r.path}: {r.messages} messages, {r.kept_bytes} of "
                  f"{r.total_bytes} bytes usable" + (f" (cut: {r.cut_reason})" if r.cut_reason else ""))
            for line in r.lost_lines():
                print(f"  {line}")
        return 0
    out = Path(args.out) if args.out else path.with_name(
        path.name.removesuffix(PART_SUFFIX).removesuffix(MCAP_SUFFIX) + ".recovered.mcap")
    r = recover_file(path, out, load_profile(args.profile))
    print(f"recovered {r.path}: {r.messages} messages, {r.kept_bytes} of {r.total_bytes} "
          "bytes usable" + (f" (cut: {r.cut_reason})" if r.cut_reason else ""))
    for line in r.lost_lines():
        print(f"  {line}")
    if r.summary_damage:
        print(f"  summary not used: {r.summary_damage}")
    return 0


# --------------------------------------------------------------------------- replay
REPLAY_KEYS = "SPACE pause/resume  + - rate  \u2190 \u2192 seek 5 s  q quit"


def register_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .replay import publisher_names

    p = sub.add_parser("replay", help="play episodes or a session onto ROS 2 / DDS topics")
    p.add_argument("path", nargs="+", help="episode .mcap file(s) or a session directory")
    p.add_argument("--to", choices=publisher_names(), default="dds",
                   help="the replay backend: dds (default): publish with cyclonedds, no ROS 2 "
                        "needed; ros2: publish with rclpy; foxglove: serve to the Foxglove app")
    p.add_argument("--host", default="127.0.0.1", help="--to foxglove: address to bind")
    p.add_argument("--port", type=int, default=8765, help="--to foxglove: port (0: any free)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start over at the end, until q or ^C")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                   help="start S seconds into the selection")
    p.add_argument("--clock", type=float, nargs="?", const=40.0, default=None, metavar="HZ",
                   help="publish /clock (recorded time) at HZ (default 40)")
    p.add_argument("--topics", nargs="+", metavar="T", help="play only these recorded topics")
    p.add_argument("--remap", nargs="+", default=[], metavar="A:=B",
                   help="publish recorded topic A as B")
    p.add_argument("--episodes", nargs="+", type=int, metavar="I",
                   help="episode indices of the session to play, in this order")
    p.add_argument("--episode-gap", type=float, default=0.0, metavar="S",
                   help="seconds between episodes (default 0)")
    p.add_argument("--keep-gaps", action="store_true",
                   help="keep the recorded time between episodes instead")
    p.add_argument("--delay", type=float, default=1.0, metavar="S",
                   help="wait S seconds after creating the publishers, so subscribers "
                        "discover them before the first message (default 1)")
    p.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="also wait (up to 30 s) until every topic has N subscribers")
    p.add_argument("--paused", action="store_true", help="start paused (SPACE to play)")
    p.add_argument("--domain-id", type=int, help="DDS/ROS 2 domain (default $ROS_DOMAIN_ID or 0)")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    import json
    import time

    from rich.console import Console

    from .replay import Player, ReplayOptions, make_publisher, parse_remap

    con = Console(stderr=True)
    options = ReplayOptions(
        rate=args.rate, loop=args.loop, start_offset_s=args.start_offset,
        topics=tuple(args.topics) if args.topics else None, remap=parse_remap(args.remap),
        clock_hz=args.clock, episodes=tuple(args.episodes) if args.episodes else None,
        episode_gap_s=None if args.keep_gaps else args.episode_gap, start_paused=args.paused)
    source = args.path[0] if len(args.path) == 1 else args.path
    if args.to == "foxglove":
        from .replay.foxglove_cli import serve
        return serve(source, options, host=args.host, port=args.port, paused=args.paused,
                     as_json=args.json, con=con)
    publisher = make_publisher(args.to, domain_id=args.domain_id)
    try:
        player = Player(source, publisher, options)
        player.prepare()
        for topic in player.unpublished:
            why = getattr(publisher, "skipped", {}).get(player.output_topic(topic), "")
            con.print(f"[yellow]not playing {topic}: {why or 'the backend cannot publish it'}[/]")
        tl = player.timeline
        con.print(f"replaying {len(tl.episodes)} episode(s), {player.total} messages on "
                  f"{len(tl.topics) - len(player.unpublished)} topics, "
                  f"{player.duration_s:.1f} s, to {args.to}")
        if args.wait_subscribers and hasattr(publisher, "wait_for_subscribers"):
            if not publisher.wait_for_subscribers(args.wait_subscribers, 30.0):
                con.print("[yellow]not every topic has its subscribers after 30 s; playing[/]")
        time.sleep(max(0.0, args.delay))
        stats = _run_replay(player, con)
    finally:
        close = getattr(publisher, "close", None)
        if close is not None:
            close()
    j = stats.jitter_ms
    con.print(f"published {stats.messages} messages in {stats.wall_s:.1f} s"
              + (f" ({stats.loops} loops)" if stats.loops else "")
              + (", stopped" if stats.stopped else "")
              + f"; timing error p50 {j['p50']:.3f} ms, p99 {j['p99']:.3f} ms, "
                f"max {j['max']:.3f} ms")
    if args.json:
        print(json.dumps(stats.as_dict()))
    return 0


def _status_line(player: Player) -> str:
    j = player.stats.jitter
    state = "[b yellow]paused[/]" if player.paused else "playing"
    return (f"{state} {player.position_s:7.1f} / {player.duration_s:.1f} s  episode "
            f"{player.episode.index}  rate {player.rate:g}x  {player.index}/{player.total} msgs  "
            f"jitter p99 {j.percentile_ms(99):.2f} ms")


def _run_replay(player: Player, con: Console) -> ReplayStats:
    """Play in a background thread; the main thread shows one status line and reads keys
    (SPACE pause, q quit, + - rate, arrows seek) when stdin is a terminal."""
    import os
    import select
    import signal
    import termios
    import tty

    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    keys = fd >= 0 and os.isatty(fd)
    show = con.is_terminal
    old = termios.tcgetattr(fd) if keys else None
    previous = signal.signal(signal.SIGINT, lambda *_: player.stop())
    if keys:
        tty.setcbreak(fd)
        con.print(f"[dim]{REPLAY_KEYS}[/]")
    player.start()
    pending = ""
    try:
        while player.running:
            if show:
                con.print("\r" + _status_line(player) + "   ", end="")
            if keys:
                ready, _, _ = select.select([fd], [], [], 0.25)
                if not ready:
                    continue
                pending += os.read(fd, 8).decode(errors="ignore")
                while pending:
                    if pending.startswith("\x1b[C") or pending.startswith("\x1b[D"):
                        step = 5.0 if pending[2] == "C" else -5.0
                        player.seek(player.position_s + step)
                        pending = pending[3:]
                        continue
                    if pending.startswith("\x1b") and len(pending) < 3:
                        break
                    ch, pending = pending[0], pending[1:]
                    if ch == " ":
                        player.toggle_pause()
                    elif ch in "qQ":
                        player.stop()
                    elif ch == "+":
                        player.set_rate(player.rate * 1.25)
                    elif ch == "-":
                        player.set_rate(player.rate / 1.25)
            else:
                player.join(0.25)
        stats = player.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    if show:
        con.print("\r" + _status_line(player) + "   ")
    return stats
