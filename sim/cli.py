"""``demofab sim generate | multiply | replay``.

``generate`` records N kept episodes of the simulated operator doing a task, ``multiply``
makes N new episodes from recorded source episodes (MimicGen-style), both on a local
process pool or a Ray cluster, into a session directory, resumable; ``replay``
re-executes an episode's commands in the simulator and reports the drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .errors import SimError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` and its subcommands to the ``demofab`` parser."""
    p = sub.add_parser("sim", help="simulation: generate, multiply and replay demonstrations")
    ssub = p.add_subparsers(dest="sim_command", required=True)

    g = ssub.add_parser("generate", help="simulated teleoperation: N kept episodes of a task")
    _run_options(g)
    g.set_defaults(func=cmd_generate)

    m = ssub.add_parser("multiply", help="MimicGen-style: N new episodes from source episodes")
    m.add_argument("--source", nargs="+", action="extend", required=True, metavar="PATH",
                   help="source episodes (MCAP files, or sessions holding them): real or "
                        "simulated teleoperation with hand and object poses on /tf")
    _run_options(m)
    m.set_defaults(func=cmd_multiply)

    r = ssub.add_parser("replay", help="re-execute an episode's commands in the simulator")
    r.add_argument("episode", metavar="EPISODE", help="an episode MCAP file")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(func=cmd_replay)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="pick_place, handover or bimanual_lift")
    p.add_argument("--n", type=int, required=True, help="episodes to keep")
    p.add_argument("--seed", type=int, default=0, help="run seed (attempt i: its own seed "
                                                       "drawn from this and i)")
    p.add_argument("--workers", type=int, default=1, help="worker processes or Ray actors")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or Ray")
    p.add_argument("--address", help="Ray cluster to join (default: start Ray here)")
    p.add_argument("--out", required=True, metavar="SESSION_DIR",
                   help="output session; rerun the same command to continue an interrupted run")
    p.add_argument("--max-attempts", type=int, metavar="M",
                   help="stop after M attempts even if fewer than N were kept")
    p.add_argument("--config", metavar="YAML", help="randomization config (default: built-in)")
    p.add_argument("--no-cameras", action="store_true",
                   help="record no camera streams (physics and the other topics only)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _spec(args: argparse.Namespace, sources: tuple[str, ...] = ()) -> Any:
    from .generate import RunSpec
    from .randomize import load

    config = None
    if args.config:
        if not Path(args.config).is_file():
            raise SimError(f"--config {args.config} does not exist")
        config = load(args.config)
    return RunSpec(task=args.task, n=args.n, seed=args.seed, config=config, sources=sources,
                   cameras=not args.no_cameras, max_attempts=args.max_attempts)


def _generate(args: argparse.Namespace, sources: tuple[str, ...] = ()) -> int:
    from .generate import generate

    try:
        summary = generate(_spec(args, sources), args.out, backend=args.backend,
                           workers=args.workers, address=args.address,
                           progress=not args.json and sys.stderr.isatty())
    except KeyboardInterrupt:
        _stopped_here(Path(args.out), args.n)
        raise
    if args.json:
        print(json.dumps(summary.as_dict()))
        return 0
    s = summary
    print(f"kept {s.kept}/{s.n} episodes of {s.task} in {s.out} ({s.attempted} attempted, "
          f"{s.success_rate:.0%} success, {s.demos_per_core_hour:.0f} demos per core-hour, "
          f"{s.workers} {s.backend} workers, {s.wall_s:.1f} s"
          + (f", {s.resumed_episodes} from before" if s.resumed_episodes else "") + ")")
    for reason, count in s.failures_by_reason.items():
        print(f"  failed {count}x: {reason}")
    print(f"  every attempt: {s.journal}")
    return 0


def _stopped_here(out: Path, n: int) -> None:
    from recorder.contract import read_session_state

    try:
        state = read_session_state(out)
    except Exception:  # noqa: BLE001 - only a hint on the way out; the run stopped anyway
        state = None
    done = len(state.episodes) if state is not None else 0
    print(f"demofab sim: {done} of {n} episodes are in {out}; run the same command again "
          "to continue", file=sys.stderr)


def cmd_generate(args: argparse.Namespace) -> int:
    """``demofab sim generate``."""
    return _generate(args)


def cmd_multiply(args: argparse.Namespace) -> int:
    """``demofab sim multiply``."""
    return _generate(args, tuple(args.source))


def _as_dict(report: Any) -> dict[str, Any]:
    fn = getattr(report, "as_dict", None)
    if callable(fn):
        out: dict[str, Any] = fn()
        return out
    return dataclasses.asdict(report)


def cmd_replay(args: argparse.Namespace) -> int:
    """``demofab sim replay``."""
    from .replay import replay

    path = Path(args.episode)
    if not path.is_file():
        raise SimError(f"episode {path} does not exist" if not path.exists()
                       else f"episode {path} is not a file")
    report = _as_dict(replay(path))
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    for key, value in report.items():
        print(f"{key:>22}: {value}")
    return 0


__all__ = ["cmd_generate", "cmd_multiply", "cmd_replay", "register"]
