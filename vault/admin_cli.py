"""``demofab vault init|serve|ingest|provider|dataset|lab|identity|role|token``: running a
vault. :func:`add_commands` adds them to the ``demofab vault`` subparsers (vault/cli.py
calls it). Errors exit 2 with the message."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import timedelta

from .db import CatalogError
from .errors import VaultError
from .identities import Role
from .service import Vault, init_vault

__all__ = ["add_commands"]

def _root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="the vault root")
    p.add_argument("--catalog-url", help="a PostgreSQL URL instead of ROOT/catalog.sqlite")


def add_commands(vsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the vault's operating commands to the ``demofab vault`` subparsers."""
    q = vsub.add_parser("init", help="create a vault: its root, provider key, log key")
    q.add_argument("--root", required=True)
    q.add_argument("--key-file", required=True,
                   help="the provider key file to create (outside the root, mode 0600)")
    q.add_argument("--signer-key-file", help="the log's signing key (default KEY_FILE.log)")
    q.add_argument("--origin", help="the log's origin line (default demofab-vault/<key id>)")
    q.set_defaults(func=_run(_init))

    q = vsub.add_parser("serve", help="serve the HTTP API (uvicorn)")
    _root(q)
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, default=8750)
    q.set_defaults(func=_run(_serve))

    q = vsub.add_parser("ingest", help="catalog a release and store it encrypted")
    _root(q)
    q.add_argument("--dataset", required=True)
    q.add_argument("release", help="a release version directory (or its name directory)")
    q.add_argument("--no-mock", action="store_true",
                   help="do not build the mock release (it runs the simulator)")
    q.set_defaults(func=_run(_ingest))

    for kind in ("provider", "lab", "identity"):
        q = vsub.add_parser(kind, help=f"{kind}s")
        s = q.add_subparsers(dest=f"{kind}_command", required=True)
        c = s.add_parser("create", help=f"a new {kind}")
        _root(c)
        c.add_argument("name")
        c.add_argument("--display-name", default="")
        c.set_defaults(func=_run(_create), kind=kind)

    q = vsub.add_parser("dataset", help="datasets")
    s = q.add_subparsers(dest="dataset_command", required=True)
    c = s.add_parser("create", help="a new dataset of a provider")
    _root(c)
    c.add_argument("name")
    c.add_argument("--provider", required=True)
    c.add_argument("--title", default="")
    c.add_argument("--summary", default="")
    c.add_argument("--approvals", type=int, default=2, choices=(1, 2))
    c.set_defaults(func=_run(_dataset))

    q = vsub.add_parser("role", help="roles")
    s = q.add_subparsers(dest="role_command", required=True)
    c = s.add_parser("assign", help="give an identity a role")
    _root(c)
    c.add_argument("identity")
    c.add_argument("role", choices=[r.value for r in Role])
    for f in ("provider", "dataset", "lab"):
        c.add_argument(f"--{f}")
    c.set_defaults(func=_run(_role))

    q = vsub.add_parser("token", help="API tokens")
    s = q.add_subparsers(dest="token_command", required=True)
    c = s.add_parser("create", help="a new token (printed once)")
    _root(c)
    c.add_argument("identity")
    c.add_argument("--scope", action="append", required=True, help="repeatable")
    c.add_argument("--days", type=float, default=30)
    c.add_argument("--name", default="")
    c.set_defaults(func=_run(_token_create))
    c = s.add_parser("list", help="tokens (never the tokens themselves)")
    _root(c)
    c.add_argument("--identity")
    c.set_defaults(func=_run(_token_list))
    c = s.add_parser("revoke", help="revoke a token by its id")
    _root(c)
    c.add_argument("token_id")
    c.set_defaults(func=_run(_token_revoke))


def _run(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (VaultError, CatalogError, OSError) as exc:
            print(f"demofab vault: error: {exc}", file=sys.stderr)
            return 2
    return run


def _open(args: argparse.Namespace) -> Vault:
    return Vault(args.root, catalog_url=args.catalog_url)


def _init(args: argparse.Namespace) -> int:
    root = init_vault(args.root, args.key_file, signer_key_file=args.signer_key_file,
                      origin=args.origin)
    with Vault(root) as v:
        print(f"vault at {root}; provider key {v.provider.key_id} in {args.key_file}; log "
              f"{v.audit.origin}, verifier key {v.audit.verifier.vkey()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app

    vault = _open(args)  # refuses to start without its keys
    try:
        uvicorn.run(create_app(vault), host=args.host, port=args.port, log_level="info")
    finally:
        vault.close()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    with _open(args) as v:
        info = v.ingest_release(args.dataset, args.release, mock=not args.no_mock)
        print(f"release {info.name} v{info.version} ({info.description.episode_count} episodes) "
              f"stored encrypted in dataset {args.dataset}")
    return 0


def _create(args: argparse.Namespace) -> int:
    with _open(args) as v:
        if args.kind == "provider":
            v.catalog.create_provider(args.name, display_name=args.display_name)
        elif args.kind == "lab":
            v.identities.create_lab(args.name, display_name=args.display_name)
        else:
            v.identities.create_identity(args.name, display_name=args.display_name)
    print(f"{args.kind} {args.name} created")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    with _open(args) as v:
        v.catalog.create_dataset(args.provider, args.name, title=args.title,
                                 summary=args.summary, required_approvals=args.approvals)
    print(f"dataset {args.name} of {args.provider} created")
    return 0


def _role(args: argparse.Namespace) -> int:
    with _open(args) as v:
        v.identities.assign(args.identity, args.role, provider=args.provider,
                            dataset=args.dataset, lab=args.lab)
    print(f"{args.identity} is {args.role}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    with _open(args) as v:
        new = v.identities.create_token(args.identity, args.scope,
                                        expires_in=timedelta(days=args.days), name=args.name)
    print(new.token)
    print(f"token {new.info.token_id} for {args.identity}, scopes {list(new.info.scopes)}, "
          f"expires {new.info.expires_at.isoformat()} (shown once)", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    with _open(args) as v:
        for t in v.identities.list_tokens(args.identity):
            print(json.dumps({"token_id": t.token_id, "identity": t.identity, "name": t.name,
                              "scopes": list(t.scopes), "expires_at": t.expires_at.isoformat(),
                              "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}))
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    with _open(args) as v:
        t = v.identities.revoke_token(args.token_id)
    print(f"token {t.token_id} of {t.identity} revoked")
    return 0
