"""``demofab vault fingerprint exportable|export|list|identify`` (on the vault's host, with
its root and keys) and ``demofab vault export URL --out DIR`` (a lab, over the API).

``identify`` exits 0 when it names a recipient, 1 when nothing is significant, 2 on bad
input (a missing or unreadable file, no frame, no vault). The others exit 0, or 2 with the
error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..db import CatalogError
from ..errors import VaultError
from .service import MAX_FALSE_POSITIVE, Fingerprints, Identification

__all__ = ["add_commands", "pull_export"]


def _root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="the vault root")
    p.add_argument("--catalog-url", help="a PostgreSQL URL instead of ROOT/catalog.sqlite")
    p.add_argument("--key-file", help="the fingerprint key file (default: the provider key "
                                      "file's path + '.fingerprint')")


def add_commands(vsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fingerprint`` and ``export`` to the ``demofab vault`` subparsers."""
    p = vsub.add_parser("fingerprint", help="fingerprinted exports: policy, export, identify "
                                            "the recipient of a leaked copy")
    sub = p.add_subparsers(dest="fingerprint_command", required=True)

    q = sub.add_parser("exportable", help="show or set whether a dataset may be exported "
                                          "(fingerprinted) to labs holding a grant")
    _root(q)
    q.add_argument("dataset")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--yes", dest="exportable", action="store_const", const=True)
    g.add_argument("--no", dest="exportable", action="store_const", const=False)
    q.set_defaults(func=_run(_exportable))

    q = sub.add_parser("export", help="write a lab's fingerprinted copy of a release to a "
                                      "directory (the lab must hold a live grant)")
    _root(q)
    q.add_argument("dataset")
    q.add_argument("version", type=int)
    q.add_argument("--recipient", required=True, metavar="LAB", help="the lab it is for")
    q.add_argument("--out", required=True, help="a new (or empty) directory")
    q.set_defaults(func=_run(_export))

    q = sub.add_parser("list", help="every export made (one JSON object per line)")
    _root(q)
    q.add_argument("--dataset")
    q.set_defaults(func=_run(_list))

    q = sub.add_parser("identify", help="name the recipient of a leaked copy: exit 0 named, "
                                        "1 no significant match, 2 bad input")
    _root(q)
    q.add_argument("files", nargs="+", metavar="FILE",
                   help="release directories, images (JPEG, PNG), videos, or directories")
    q.add_argument("--dataset", help="only this dataset's exports are candidates")
    q.add_argument("--max-false-positive", type=float, default=MAX_FALSE_POSITIVE,
                   help=f"report a match at this false-positive probability or below "
                        f"(default {MAX_FALSE_POSITIVE:g})")
    q.add_argument("--max-frames", type=int, default=256, help="frames compared at most")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=_run(_identify))

    q = vsub.add_parser("export", help="download your lab's fingerprinted copy of a release "
                                       "(token in $DEMOFAB_VAULT_TOKEN)")
    q.add_argument("url", help="vault://HOST:PORT/DATASET/VERSION")
    q.add_argument("--out", required=True, help="a new (or empty) directory")
    q.add_argument("--lab", help="the lab it is for (a member of several labs)")
    q.set_defaults(func=_run(_pull))


def _run(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (VaultError, CatalogError, OSError) as exc:
            print(f"demofab vault: error: {exc}", file=sys.stderr)
            return 2
    return run


def _open(args: argparse.Namespace) -> Fingerprints:
    """The vault at ``--root`` and its exports (close with ``fp.vault.close()``)."""
    from ..service import Vault

    vault = Vault(args.root, catalog_url=args.catalog_url)
    try:
        return Fingerprints(vault, key_file=args.key_file)
    except BaseException:
        vault.close()
        raise


def _exportable(args: argparse.Namespace) -> int:
    fp = _open(args)
    try:
        policy = (fp.policy(args.dataset) if args.exportable is None
                  else fp.set_exportable(args.dataset, args.exportable))
    finally:
        fp.vault.close()
    print(f"dataset {policy.dataset}: {'exportable' if policy.exportable else 'not exportable'}"
          + (f" (set by {policy.set_by} at {policy.at.isoformat()})" if policy.at else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    fp = _open(args)
    try:
        info = fp.export(args.dataset, args.version, lab=args.recipient, out=args.out,
                         progress=lambda s, n: print(f"  {s}: {n} frames marked", file=sys.stderr))
    finally:
        fp.vault.close()
    print(f"export {info.export_id} of {info.dataset} release {info.release} for lab {info.lab}: "
          f"{info.frames} frames fingerprinted, written to {args.out} "
          f"(release_sha256 {info.release_sha256})")
    return 0


def _list(args: argparse.Namespace) -> int:
    fp = _open(args)
    try:
        for e in fp.exports(dataset=args.dataset):
            print(json.dumps(e.as_dict()))
    finally:
        fp.vault.close()
    return 0


def _identify(args: argparse.Namespace) -> int:
    fp = _open(args)
    try:
        result = fp.identify(args.files, dataset=args.dataset, by="local",
                             max_false_positive=args.max_false_positive,
                             max_frames=args.max_frames)
    finally:
        fp.vault.close()
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(_summary(result))
    return 0 if result.identified else 1


def _summary(r: Identification) -> str:
    how = f"{r.frames} frames ({r.informed} matched to their originals), {r.candidates} exports"
    if not r.matches:
        best = (f"; best {r.best.export.lab} z={r.best.z:.1f} p={r.best.p_false:.2g}"
                if r.best else "")
        return f"no match: nothing significant among {how}{best}"
    lines = [f"{m.export.lab}: export {m.export.export_id} of {m.export.dataset} release "
             f"{m.export.release}, z={m.z:.1f}, false-positive probability {m.p_false:.2g}"
             for m in r.matches]
    if r.exact:
        lines.append(f"byte-identical to export(s) {', '.join(r.exact)}")
    head = "recipient" if len(r.matches) == 1 else "recipients (copies were mixed)"
    return f"{head} from {how}:\n  " + "\n  ".join(lines)


def pull_export(url: str, out: str | Path, *, lab: str | None = None,
                token: str | None = None) -> dict[str, Any]:
    """Make (first time) and download ``url``'s release as a fingerprinted copy for the
    caller's lab into ``out``; every file is checked against the copy's manifest. Returns
    the export's description."""
    import httpx

    from ..client import TOKEN_ENV, Unreachable, _detail, _error, parse_vault_url

    where = parse_vault_url(url)
    if where.version is None or where.mock:
        raise VaultError(f"{url!r}: name the release version (vault://HOST:PORT/DATASET/N); a "
                         f"mock release is not exported")
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()):
        raise VaultError(f"{dest} exists and is not empty; download into a new directory")
    base = f"/v1/datasets/{where.dataset}/releases/{where.version}/export"
    secret = token or os.environ.get(TOKEN_ENV)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    with httpx.Client(base_url=where.base_url, headers=headers, timeout=120,
                      trust_env=False) as http:

        def call(method: str, path: str, body: object = None) -> httpx.Response:
            try:  # the first POST makes the copy (every frame re-encoded): give it time
                resp = http.request(method, path, json=body,
                                    params={"lab": lab} if lab and method == "GET" else None,
                                    timeout=3600 if method == "POST" else 120)
            except httpx.TransportError as exc:
                raise Unreachable(f"{method} {where.base_url}{path}: vault unreachable: {exc}",
                                  status=0, detail=str(exc), method=method, path=path) from exc
            if resp.status_code not in (200, 201):
                raise _error(resp.status_code, _detail(resp), method, path)
            return resp

        info: dict[str, Any] = call("POST", base, {"lab": lab}).json()
        manifest = call("GET", f"{base}/files/manifest.json").json()
        for f in sorted(info["files"], key=lambda f: str(f["path"])):
            path = str(f["path"])
            data = call("GET", f"{base}/files/{quote(path)}").content
            want = manifest["files"].get(path)
            if want is not None and hashlib.sha256(data).hexdigest() != want["sha256"]:
                raise VaultError(f"{path}: the downloaded bytes do not match the copy's manifest")
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(data)
    return info


def _pull(args: argparse.Namespace) -> int:
    info = pull_export(args.url, args.out, lab=args.lab)
    print(f"export {info['export_id']} of {info['dataset']} release {info['release']} for lab "
          f"{info['lab']}: {len(info['files'])} files in {args.out}")
    return 0
