"""The ``demofab`` command: each stage registers its subcommands here."""

from __future__ import annotations

import argparse
import importlib
import sys

# Stage modules that add subcommands; a stage not yet installed is skipped.
STAGES = ("recorder.cli", "curation.cli", "sim.cli", "vault.cli", "bench.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demofab", description="DemoFab robot data factory")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from recorder.errors import RecorderError

    args = build_parser().parse_args(argv)
    errors: tuple[type[BaseException], ...] = (RecorderError,)
    for module, name in (("curation.errors", "CurationError"), ("sim.errors", "SimError"),
                         ("vault.errors", "VaultError")):
        try:
            errors += (getattr(importlib.import_module(module), name),)
        except ImportError:
            pass
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        print(f"demofab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"demofab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
