"""``demofab vault gate check``: the output gate on files, against a release you have
(for a lab: the mock release, to see before submitting what the gate will say).

Exit status: 0 every file passes, 1 a file (or the run) is blocked, 2 a bad argument (a
release that does not open, a policy file with an unknown key)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def add_commands(vsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gate check`` under ``demofab vault``."""
    p = vsub.add_parser("gate", help="the clean room's output gate, run locally")
    sub = p.add_subparsers(dest="gate_command", required=True)
    q = sub.add_parser("check", help="check output files against a release's index; exit 1 if blocked")
    q.add_argument("files", nargs="+", type=Path, help="the output files (and logs)")
    q.add_argument("--release", required=True, help="the release the job reads (its vN directory)")
    q.add_argument("--streams", nargs="*", default=None, help="only these streams (default: all)")
    q.add_argument("--episodes", nargs="*", type=int, default=None, help="only these episodes")
    q.add_argument("--cache", type=Path, default=None, help="keep the index here and reuse it")
    q.add_argument("--policy", type=Path, default=None, help="a YAML gate policy (default: the vault's)")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from demofab.yamlutil import safe_load

    from . import GateError, GatePolicy, InputIndex, check

    try:
        policy = GatePolicy.from_mapping(safe_load(args.policy.read_text()) if args.policy else None)
        with Progress(console=Console(stderr=True), transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(what: str, done: int, total: int) -> None:  # the index build, on stderr
                if what not in tasks:
                    tasks[what] = bar.add_task(f"indexing {what}", total=total)
                bar.update(tasks[what], completed=done)

            if args.cache is not None:
                index = InputIndex.cached(args.release, args.cache, streams=args.streams,
                                          episodes=args.episodes, progress=progress)
            else:
                index = InputIndex.build(args.release, streams=args.streams, episodes=args.episodes,
                                         progress=progress)
    except (GateError, OSError) as exc:
        print(f"demofab vault gate: {exc}", file=sys.stderr)
        return 2
    report = check(args.files, index, policy)
    print(json.dumps(report.to_json(), indent=1) if args.json else report.summary())
    return 0 if report.verdict == "pass" else 1
