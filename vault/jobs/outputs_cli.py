"""``demofab vault output list|submit|withdraw|review|release|download``: output review
over the vault's HTTP API, as the lab and the reviewers do it.

Every command takes ``--url`` (or ``$DEMOFAB_VAULT_URL``) and the caller's token
(``--token`` or ``$DEMOFAB_VAULT_TOKEN``): who acts is who the token says. ``list`` shows
each file's review state, the votes with their comments and what the gate found, with its
context (where in the output, which input it matches). ``release`` is two deliberate
steps: without ``--code`` it prepares the release and prints a one-time code; with the
code it releases. ``download`` checks each file's sha256 against the released one before
keeping it. Errors exit 2 with the vault's message.

:class:`vault.jobs.outputs_client.OutputsClient` is the Python side of the same routes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outputs_client import OutputsClient

__all__ = ["URL_ENV", "add_commands", "format_set"]

URL_ENV = "DEMOFAB_VAULT_URL"


# -- the commands ----------------------------------------------------------------------------

def add_commands(vsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``output`` and its subcommands to the ``demofab vault`` subparsers."""
    p = vsub.add_parser("output", help="review and release the outputs of clean-room jobs "
                                       "(over the HTTP API)")
    sub = p.add_subparsers(dest="output_command", required=True)

    q = sub.add_parser("list", help="output sets: files, gate findings, review state")
    _conn(q)
    q.add_argument("output_id", type=int, nargs="?", help="one set (default: all you may see)")
    q.add_argument("--job", type=int, help="only the sets of this job")
    q.add_argument("--state", help="only sets in this state")
    q.add_argument("--waiting", action="store_true",
                   help="(reviewer) only the sets waiting for your votes")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_run(_list))

    q = sub.add_parser("submit", help="(lab) send a set to the reviewers")
    _conn(q)
    q.add_argument("output_id", type=int)
    q.set_defaults(func=_run(_submit))

    q = sub.add_parser("withdraw", help="(lab) withdraw a set, or one file of it")
    _conn(q)
    q.add_argument("output_id", type=int)
    q.add_argument("--file", help="withdraw only this file (of a pending or returned set)")
    q.set_defaults(func=_run(_withdraw))

    q = sub.add_parser("review", help="(reviewer) read a file, vote on it, or return or reject "
                                      "the set")
    _conn(q)
    q.add_argument("output_id", type=int)
    q.add_argument("file", nargs="?", help="the file to vote on")
    q.add_argument("vote", nargs="?", choices=("approve", "changes_requested", "reject"))
    q.add_argument("--comment", default="", help="why (needed for changes_requested, reject)")
    q.add_argument("--read", metavar="FILE", help="print a file's content (or write it to --out)")
    q.add_argument("--out", help="with --read: write the content here")
    q.add_argument("--return-to-lab", metavar="REASON", help="send the set back to the lab")
    q.add_argument("--reject-set", metavar="REASON", help="reject the whole set (final)")
    q.set_defaults(func=_run(_review))

    q = sub.add_parser("release", help="(reviewer) release a reviewed set: without --code, "
                                       "prepare and print a one-time code; with it, release")
    _conn(q)
    q.add_argument("output_id", type=int)
    q.add_argument("--code", help="the code the first step printed")
    q.set_defaults(func=_run(_release))

    q = sub.add_parser("download", help="(lab) download released files, sha256 checked")
    _conn(q)
    q.add_argument("output_id", type=int)
    q.add_argument("files", nargs="*", help="the files (default: every released file)")
    q.add_argument("--out", required=True, help="the directory to write them into")
    q.set_defaults(func=_run(_download))


def _conn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get(URL_ENV),
                   help=f"the vault's base URL (default ${URL_ENV})")
    p.add_argument("--token", help="your API token (default $DEMOFAB_VAULT_TOKEN)")


def _run(fn: Callable[[OutputsClient, argparse.Namespace], int],
         ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..client import TOKEN_ENV
        from ..errors import VaultError
        from .outputs_client import OutputsClient

        token = args.token or os.environ.get(TOKEN_ENV)
        if not args.url or not token:
            print(f"demofab vault output: error: need --url (or ${URL_ENV}) and --token (or "
                  f"${TOKEN_ENV})", file=sys.stderr)
            return 2
        try:
            client = OutputsClient(args.url, token)
            try:
                return fn(client, args)
            finally:
                client.close()
        except (VaultError, OSError) as exc:
            print(f"demofab vault output: error: {exc}", file=sys.stderr)
            return 2
    return run


def _list(c: OutputsClient, args: argparse.Namespace) -> int:
    sets = ([c.output_set(args.output_id)] if args.output_id is not None
            else c.output_sets(job=args.job, state=args.state, waiting=args.waiting))
    if args.json:
        print(json.dumps(sets if args.output_id is None else sets[0], indent=1))
        return 0
    for s in sets:
        print(format_set(s))
    if args.output_id is None:
        print(f"{len(sets)} output set(s)", file=sys.stderr)
    return 0


def format_set(s: dict[str, Any]) -> str:
    """An output set for a person: its state, then per file its state, decision, the
    gate's verdict with every finding in context, and the votes with their comments."""
    lines = [f"output set {s['id']}  job {s['job_id']} run {s['run_id']}  {s['dataset']} "
             f"v{s['release']}  lab {s['lab']} (by {s['submitter']})  {s['state'].upper()}  "
             f"round {s['round']}, {s['required_approvals']} approval(s) needed per file"]
    if s.get("reason"):
        lines.append(f"  reason: {s['reason']}")
    for f in s["files"]:
        flags = " [withdrawn]" if f["withdrawn"] else " [gone: the last run did not write it]" \
            if f["gone"] else ""
        lines.append(f"  {f['name']}  {f['size']} B  sha256 {f['sha256'][:16]}...  "
                     f"{f['state']}, {f['decision']}{flags}")
        gate = f["gate"]
        lines.append(f"    gate: {gate['verdict'].upper()}"
                     + (f", {len(gate['findings'])} finding(s)" if gate["findings"] else ""))
        for x in gate["findings"]:
            lines.append(f"      {x.get('severity', 'block')}: [{x.get('kind', '?')}] "
                         f"{x.get('message', '')}")
            for part in ("where", "input"):
                if x.get(part):
                    lines.append(f"        {part}: {json.dumps(x[part], sort_keys=True)}")
        for v in f["votes"]:
            lines.append(f"    {v['reviewer']}: {v['vote']}"
                         + (f" - {v['comment']}" if v["comment"] else ""))
        if f["earlier_votes"]:
            lines.append(f"    ({f['earlier_votes']} vote(s) on earlier content, reset by a change)")
    return "\n".join(lines)


def _submit(c: OutputsClient, args: argparse.Namespace) -> int:
    s = c.submit(args.output_id)
    print(f"output set {s['id']}: {s['state']} ({len(s['files'])} file(s) for review)")
    return 0


def _withdraw(c: OutputsClient, args: argparse.Namespace) -> int:
    s = c.withdraw(args.output_id, args.file)
    what = f"file {args.file}" if args.file else "the set"
    print(f"output set {s['id']}: {what} withdrawn ({s['state']})")
    return 0


def _review(c: OutputsClient, args: argparse.Namespace) -> int:
    chosen = [x for x in (args.read, args.return_to_lab, args.reject_set, args.vote) if x]
    if len(chosen) != 1 or (args.vote and not args.file) or (args.file and not args.vote):
        print("demofab vault output review: error: give one of FILE VOTE, --read FILE, "
              "--return-to-lab REASON, --reject-set REASON", file=sys.stderr)
        return 2
    if args.read:
        data = c.read_for_review(args.output_id, args.read)
        if args.out:
            from demofab.durable import atomic_write

            atomic_write(Path(args.out), data)
            print(f"{args.read}: {len(data)} bytes written to {args.out}")
        else:
            sys.stdout.buffer.write(data)
        return 0
    if args.return_to_lab:
        s = c.return_to_lab(args.output_id, args.return_to_lab)
    elif args.reject_set:
        s = c.reject(args.output_id, args.reject_set)
    else:
        s = c.vote(args.output_id, args.file, args.vote, args.comment)
    print(format_set(s))
    return 0


def _release(c: OutputsClient, args: argparse.Namespace) -> int:
    if args.code is None:
        code = c.prepare_release(args.output_id)
        s = c.output_set(args.output_id)
        print(format_set(s))
        print(f"release prepared; to release these {len(s['files'])} file(s) run again with "
              f"--code {code} (valid 10 minutes, one try)")
        return 0
    s = c.confirm_release(args.output_id, args.code)
    print(f"output set {s['id']}: {s['state']} by {s['released_by']}")
    return 0


def _download(c: OutputsClient, args: argparse.Namespace) -> int:
    from demofab.durable import atomic_write

    from ..service import check_path

    s = c.output_set(args.output_id)
    names = args.files or [f["name"] for f in s["files"] if f["state"] == "released"]
    if not names:
        print(f"demofab vault output download: error: output set {s['id']} is {s['state']}: "
              "nothing released to download", file=sys.stderr)
        return 2
    out = Path(args.out)
    for name in names:
        data = c.download(args.output_id, check_path(name))
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out / name, data)
        print(f"{name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}... "
              f"-> {out / name}")
    return 0
