"""``demofab vault audit verify|show|checkpoint|cosign`` and ``demofab vault key new``.

``audit verify`` exits 0 when the log is intact, 1 naming the first bad entry when it is
not, 2 when it cannot be read (no log, a malformed checkpoint file).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from demofab.durable import atomic_write

from .errors import LogTamperError, VaultError

# the commands import the vault's modules when they run: without the vault extra
# (cryptography), `demofab --help` still works and a vault command says what is missing

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``vault`` and its subcommands to the ``demofab`` parser."""
    p = sub.add_parser("vault", help="the secure data library: audit log, keys, and (with "
                                     "the vault extra) running a vault")
    vsub = p.add_subparsers(dest="vault_command", required=True)

    a = vsub.add_parser("audit", help="check and read the vault's audit log")
    asub = a.add_subparsers(dest="audit_command", required=True)
    q = asub.add_parser("verify", help="check the log offline: exit 0 intact, 1 with the "
                                       "first bad entry")
    q.add_argument("--root", required=True, help="the vault root")
    q.add_argument("--checkpoint", help="a signed checkpoint you kept (file)")
    q.add_argument("--key", action="append", default=[], metavar="VKEY",
                   help="a verifier key you trust: the log's (instead of the one in ROOT) "
                        "or a cosigner's, whose cosignature the kept checkpoint must carry "
                        "(repeatable; a file holding the key works too)")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=_needs_extra(cmd_verify))

    q = asub.add_parser("show", help="every access to one dataset")
    q.add_argument("--root", required=True, help="the vault root")
    q.add_argument("--dataset", required=True)
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(func=_needs_extra(cmd_show))

    q = asub.add_parser("checkpoint", help="print the log's newest signed checkpoint")
    q.add_argument("--root", required=True, help="the vault root")
    q.set_defaults(func=_needs_extra(cmd_checkpoint))

    q = asub.add_parser("cosign", help="check the log, then cosign its checkpoint with your "
                                       "own key and keep it")
    q.add_argument("--root", required=True, help="the vault root")
    q.add_argument("--key-file", required=True, help="your cosigner key file (mode 0600)")
    q.add_argument("--out", required=True,
                   help="the kept checkpoint: if it exists, the log must extend it (and it "
                        "must carry your cosignature); it is replaced by the new one")
    q.add_argument("--checkpoint", help="the checkpoint to cosign (default: the log's newest)")
    q.add_argument("--key", action="append", default=[], metavar="VKEY",
                   help="the log's verifier key, if you trust it rather than ROOT's")
    q.set_defaults(func=_needs_extra(cmd_cosign))

    k = vsub.add_parser("key", help="make keys")
    ksub = k.add_subparsers(dest="key_command", required=True)
    q = ksub.add_parser("new", help="a new key file (mode 0600, never overwritten)")
    q.add_argument("kind", choices=("provider", "log", "cosigner"),
                   help="provider: the AES key that wraps your datasets' keys; log: the "
                        "log's checkpoint signing key; cosigner: your checkpoint cosigner")
    q.add_argument("--out", required=True, help="the key file to create (outside the root)")
    q.add_argument("--name", help="the key's name (log, cosigner), e.g. example.com/vault")
    q.add_argument("--root", help="the vault root (refused as the key's location)")
    q.set_defaults(func=_needs_extra(cmd_key_new))

    _add_operating_commands(vsub)
    importlib.import_module(f"{__package__}.jobs.cli").register(vsub)  # clean-room jobs


# the packages of the vault extra: without them the operating commands are left out
_EXTRA = {"cryptography", "sqlalchemy", "psycopg", "fastapi", "uvicorn", "httpx", "starlette",
          "pydantic"}


def _add_operating_commands(vsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``demofab vault init|serve|ingest|...`` from vault.admin_cli, where it is installed
    with the packages it needs."""
    try:
        admin = importlib.import_module(f"{__package__}.admin_cli")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if exc.name == f"{__package__}.admin_cli" or missing in _EXTRA:
            return
        raise
    admin.add_commands(vsub)
    importlib.import_module(f"{__package__}.jobs.outputs_cli").add_commands(vsub)
    importlib.import_module(f"{__package__}.fingerprint.cli").add_commands(vsub)
    importlib.import_module(f"{__package__}.gate.cli").add_commands(vsub)  # the output gate, locally


def _needs_extra(command: Callable[[argparse.Namespace], int],
                 ) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "cryptography":
                raise
            print("demofab vault: error: the vault needs the 'vault' extra "
                  "(pip install 'demofab[vault]'): cryptography is not installed",
                  file=sys.stderr)
            return 2
    return run


def _key_arg(value: str) -> str:
    path = Path(value)
    if "+" not in value and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return value


def cmd_verify(args: argparse.Namespace) -> int:
    """``demofab vault audit verify``."""
    from .audit import verify

    try:
        report = verify(args.root, args.checkpoint, keys=[_key_arg(k) for k in args.key])
    except (VaultError, OSError) as exc:
        print(f"demofab vault audit verify: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": report.ok, "size": report.size,
                          "root_hash": report.root_hash.hex(),
                          "checkpoints": report.checkpoints, "unsigned": report.unsigned,
                          "kept_size": None if report.kept is None else report.kept.size,
                          "cosigners": list(report.cosigners), "first_bad": report.first_bad,
                          "problem": report.problem}))
    else:
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def cmd_show(args: argparse.Namespace) -> int:
    """``demofab vault audit show``."""
    from .audit import show

    try:
        entries = show(args.root, args.dataset)
    except VaultError as exc:
        print(f"demofab vault audit show: error: {exc}", file=sys.stderr)
        return 2
    for e in entries:
        if args.json:
            print(json.dumps(e.as_dict()))
        else:
            details = json.dumps(dict(e.details)) if e.details else ""
            print(f"{e.index:>8}  {e.time}  {e.actor:<24} {e.action:<14} {details}")
    if not args.json:
        print(f"{len(entries)} entries for dataset {args.dataset}", file=sys.stderr)
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """``demofab vault audit checkpoint``."""
    from .audit import latest_checkpoint

    try:
        note = latest_checkpoint(args.root)
    except VaultError as exc:
        print(f"demofab vault audit checkpoint: error: {exc}", file=sys.stderr)
        return 2
    if note is None:
        print(f"demofab vault audit checkpoint: the log at {args.root} has no signed "
              f"checkpoint yet", file=sys.stderr)
        return 1
    sys.stdout.write(note)
    return 0


def cmd_cosign(args: argparse.Namespace) -> int:
    """``demofab vault audit cosign``."""
    from .audit import cosign_checkpoint
    from .keys import load_signer

    out = Path(args.out)
    try:
        signer = load_signer(args.key_file, vault_root=args.root)
        previous = out.read_text(encoding="utf-8") if out.exists() else None
        checkpoint = (Path(args.checkpoint).read_text(encoding="utf-8")
                      if args.checkpoint else None)
        note = cosign_checkpoint(args.root, signer, checkpoint=checkpoint, previous=previous,
                                 keys=[_key_arg(k) for k in args.key])
        atomic_write(out, note)
    except LogTamperError as exc:
        print(f"demofab vault audit cosign: {exc}", file=sys.stderr)
        return 1
    except (VaultError, OSError) as exc:
        print(f"demofab vault audit cosign: error: {exc}", file=sys.stderr)
        return 2
    size = note.split("\n")[1]
    print(f"checked and cosigned the checkpoint of {size} entries as {signer.name}; kept in "
          f"{out}; your verifier key: {signer.verifier().vkey()}")
    return 0


def cmd_key_new(args: argparse.Namespace) -> int:
    """``demofab vault key new``."""
    from .keys import generate_key_file, write_secret_file
    from .note import COSIGNATURE_V1, ED25519, generate_signer

    try:
        if args.kind == "provider":
            provider = generate_key_file(args.out, vault_root=args.root)
            print(f"provider key {provider.key_id} in {args.out}")
            return 0
        if not args.name:
            print(f"demofab vault key new: error: a {args.kind} key needs --name",
                  file=sys.stderr)
            return 2
        signer = generate_signer(args.name, ED25519 if args.kind == "log" else COSIGNATURE_V1)
        write_secret_file(args.out, signer.skey() + "\n", vault_root=args.root)
    except VaultError as exc:
        print(f"demofab vault key new: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.kind} key in {args.out}; its verifier key: {signer.verifier().vkey()}")
    return 0
