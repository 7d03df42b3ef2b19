"""``demofab vault job submit|status|logs|code|approve|reject|offer``: the clean room over
the vault's HTTP API (``--url``, the token in ``$DEMOFAB_VAULT_TOKEN``).

Exit status: 0 done, 1 refused by the vault (the reason printed), 2 a bad argument or an
unreachable vault. ``submit --wait`` waits for the mock run and prints its logs; exits 1
when the mock run did not succeed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["register"]

_TOKEN_ENV = "DEMOFAB_VAULT_TOKEN"  # as vault.client.TOKEN_ENV (not imported: no vault extra needed)


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def register(vsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``job`` and its subcommands under ``demofab vault``."""
    p = vsub.add_parser("job", help="clean-room jobs: submit, follow, review")
    sub = p.add_subparsers(dest="job_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--url", required=True, help="the vault's URL, e.g. http://127.0.0.1:8700")
        q.add_argument("--json", action="store_true", help="print the vault's JSON answer")

    q = sub.add_parser("submit", help="submit a job (it runs on the mock release first)")
    q.add_argument("code", help="the job's code: a directory or one .py file")
    q.add_argument("--name", required=True, help="the job's name (a new version if it exists)")
    q.add_argument("--entry", required=True,
                   help="module:function (called with the input and output dirs) or script.py")
    q.add_argument("--dataset", required=True)
    q.add_argument("--release", type=int, required=True)
    q.add_argument("--require", action="append", default=[], metavar="NAME==VERSION",
                   help="a requirement from the offer (`demofab vault job offer`); repeatable")
    q.add_argument("--output", action="append", default=[], metavar="PATTERN:TYPE",
                   help="a declared output, e.g. metrics.json:json, plots/*.png:png; repeatable")
    q.add_argument("--cpu-s", type=float, default=60.0)
    q.add_argument("--memory-mb", type=int, default=2048)
    q.add_argument("--wall-s", type=float, default=120.0)
    q.add_argument("--output-mb", type=float, default=64.0)
    q.add_argument("--lab", help="the lab (default: your only lab)")
    q.add_argument("--wait", action="store_true", help="wait for the mock run, print its logs")
    common(q)
    q.set_defaults(func=_cmd(_submit))

    q = sub.add_parser("status", help="a job's review state and runs")
    q.add_argument("job", type=int)
    common(q)
    q.set_defaults(func=_cmd(_status))

    q = sub.add_parser("logs", help="the full logs of a mock run (the newest by default)")
    q.add_argument("job", type=int)
    q.add_argument("--run", type=int)
    common(q)
    q.set_defaults(func=_cmd(_logs))

    q = sub.add_parser("code", help="print a file of a job's code, as submitted (for reviewers)")
    q.add_argument("job", type=int)
    q.add_argument("path", help="the file's path in the job's code (status --json lists them)")
    common(q)
    q.set_defaults(func=_cmd(_code))

    q = sub.add_parser("approve", help="approve a job in two steps: without --code, take it "
                                       "up and print a one-time code; with --code, confirm")
    q.add_argument("job", type=int)
    q.add_argument("--code", help="the code the first step printed")
    common(q)
    q.set_defaults(func=_cmd(_approve))

    q = sub.add_parser("reject", help="reject a job (or --changes: ask for a new version)")
    q.add_argument("job", type=int)
    q.add_argument("--reason", required=True, help="what the lab should know")
    q.add_argument("--changes", action="store_true", help="request changes instead of rejecting")
    common(q)
    q.set_defaults(func=_cmd(_reject))

    q = sub.add_parser("offer", help="the requirements a job may name and the maximum limits")
    common(q)
    q.set_defaults(func=_cmd(_offer))


def _client(args: argparse.Namespace) -> Any:
    from .client import JobsClient

    token = os.environ.get(_TOKEN_ENV)
    if not token:
        raise _Refused(2, f"no token: set ${_TOKEN_ENV}")
    return JobsClient(args.url, token, timeout=120)


def _cmd(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``fn`` with the vault's refusals printed and turned into the exit status: 1
    refused, 2 a bad argument or an unreachable vault."""
    def run(args: argparse.Namespace) -> int:
        from ..client import ClientError, Unreachable
        from .errors import JobError

        try:
            return fn(args)
        except (_Refused, ClientError, JobError) as exc:
            status = (exc.status if isinstance(exc, _Refused)
                      else 2 if isinstance(exc, Unreachable | JobError) else 1)
            print(f"demofab vault job {args.job_command}: error: {exc}", file=sys.stderr)
            return status
    return run


def _print_job(args: argparse.Namespace, job: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(job, indent=1))
        return
    print(f"job {job['id']}: {job['name']} v{job['version']} ({job['sha256'][:12]}) of lab "
          f"{job['lab']} on {job['dataset']} release {job['release']}: {job['state']}"
          f" ({len(job['approvals'])}/{job['required_approvals']} approvals)")
    if job.get("reason"):
        print(f"  reason: {job['reason']}")
    print(f"  code: {', '.join(sorted(job['code']))}")
    for r in job["runs"]:
        print(f"  run {r['id']} [{r['kind']}] {r['state']}: {r['message']} (cpu {r['cpu_s']} s, "
              f"wall {r['wall_s']} s, outputs {sorted(r['outputs'])})")


def _submit(args: argparse.Namespace) -> int:
    outputs = []
    for o in args.output:
        pattern, sep, kind = o.rpartition(":")
        if not sep:
            raise _Refused(2, f"--output {o!r}: PATTERN:TYPE, e.g. metrics.json:json")
        outputs.append((pattern, kind))
    limits = {"cpu_s": args.cpu_s, "memory_bytes": args.memory_mb << 20, "wall_s": args.wall_s,
              "output_bytes": int(args.output_mb * (1 << 20))}
    with _client(args) as c:
        job = c.submit_job(args.code, name=args.name, entry=args.entry, dataset=args.dataset,
                           release=args.release, requirements=args.require, outputs=outputs,
                           limits=limits, lab=args.lab)
        if not args.wait:
            _print_job(args, job)
            return 0
        run = c.wait_run(job["id"], kind="mock", timeout=args.wall_s + 120)
        _print_job(args, c.job(job["id"]))
        logs = c.logs(job["id"], run["id"])
    sys.stdout.write(logs["stdout"])
    sys.stderr.write(logs["stderr"])
    return 0 if run["state"] == "succeeded" else 1


def _status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print_job(args, c.job(args.job))
    return 0


def _logs(args: argparse.Namespace) -> int:
    with _client(args) as c:
        logs = c.logs(args.job, args.run)
    if args.json:
        print(json.dumps(logs, indent=1))
        return 0
    sys.stdout.write(logs["stdout"])
    sys.stderr.write(logs["stderr"])
    return 0


def _code(args: argparse.Namespace) -> int:
    with _client(args) as c:
        sys.stdout.write(c.code(args.job, args.path).decode(errors="replace"))
    return 0


def _approve(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.code:
            _print_job(args, c.confirm_approval(args.job, args.code))
            return 0
        job = c.job(args.job)
        if job["state"] == "submitted":
            job = c.start_review(args.job)
        code = c.prepare_approval(args.job)
    _print_job(args, job)
    print(f"to approve job {args.job} ({job['sha256'][:12]}), confirm within 10 minutes:\n"
          f"  demofab vault job approve {args.job} --code {code} --url {args.url}")
    return 0


def _reject(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if c.job(args.job)["state"] == "submitted":
            c.start_review(args.job)
        job = (c.request_changes(args.job, args.reason) if args.changes
               else c.reject(args.job, args.reason))
    _print_job(args, job)
    return 0


def _offer(args: argparse.Namespace) -> int:
    with _client(args) as c:
        got = c.offer()
    print(json.dumps(got, indent=1) if args.json else "\n".join(got["requirements"]))
    return 0
