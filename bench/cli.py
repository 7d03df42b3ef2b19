"""``demofab bench NAME [--json]``: each benchmark module in BENCHES exposes
``add_arguments(parser)`` and ``run(args) -> dict``; the dict is printed as the last line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from types import ModuleType
from typing import Any

BENCHES = {
    "record": "bench.record",
    "ros2": "bench.ros2",
    "curate": "bench.curate",
    "load": "bench.load",
    "sim": "bench.sim",
    "vault": "bench.vault",
    "review": "bench.review",
    "cleanroom": "bench.cleanroom",
    "gate": "bench.gate_bench",
    "fingerprint": "bench.fingerprint",
    "foxglove": "bench.foxglove_replay",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks, each against a reference, JSON on the last line")
    bsub = p.add_subparsers(dest="bench", required=True)
    for name, module_name in BENCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        bp = bsub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        bp.add_argument("--json", action="store_true", help="only the JSON line on stdout")
        module.add_arguments(bp)
        bp.set_defaults(func=lambda args, m=module: _run(m, args))


def _run(module: ModuleType, args: argparse.Namespace) -> int:
    result: dict[str, Any] = module.run(args)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>28}: {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0
