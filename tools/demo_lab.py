"""The lab's and the reviewer's side of ``make demo``'s vault part (tools/demo-vault.sh):
browse the catalog and the mock release, ask for access, the reviewer approves in two
steps, then pull and load a sample of the real release through ``vault://``. Then the
clean room: the lab submits a metrics job (the DemoFab loader over its input), it runs on
the mock release, the reviewer approves it (two steps), the vault runs it on the real
data in its sandbox, the gate checks its metrics JSON and logs, the reviewer reads and
approves every file and releases them (two steps), and the lab downloads the metrics and
prints them."""

from __future__ import annotations

import argparse
import json
import os
import sys

from curation.loader import ReleaseDataset
from vault.client import VaultClient
from vault.jobs.client import JobsClient
from vault.jobs.outputs_cli import format_set
from vault.jobs.outputs_client import OutputsClient

JOB_CODE = '''"""A clean-room metrics job: reads its input through the DemoFab loader and writes a
few aggregate figures (no sample, frame or row of the data) to metrics.json."""

import json
from pathlib import Path

import numpy as np

from curation.loader import ReleaseDataset


def main(inputs: Path, outputs: Path) -> None:
    ds = ReleaseDataset(inputs, keys=["joint_states/position"])
    pos = np.stack([ds[i]["joint_states/position"] for i in range(len(ds))]).astype(np.float64)
    ep = np.array([int(ds[i]["episode_index"]) for i in range(len(ds))])
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)[ep[1:] == ep[:-1]]
    rows = json.loads((inputs / "episodes.json").read_text())["episodes"]
    known = [r["success"] for r in rows if r.get("success") is not None]
    metrics = {
        "samples": len(ds),
        "episodes": len(rows),
        "success_rate": round(sum(known) / len(known), 3) if known else None,
        "mean_episode_s": round(float(np.mean([r["duration_s"] for r in rows])), 2),
        "joint_path_rad_per_episode": round(float(steps.sum()) / len(rows), 1),
    }
    print(f"metrics over {len(ds)} samples of {len(rows)} episodes")
    (outputs / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\\n")
'''
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--lab-token", required=True)
    p.add_argument("--reviewer-token", required=True)
    args = p.parse_args(argv)
    host = args.url.split("://", 1)[1]
    os.environ["DEMOFAB_VAULT_TOKEN"] = args.lab_token  # how a lab's loader gets its token
    with VaultClient(args.url, args.lab_token) as lab, \
            VaultClient(args.url, args.reviewer_token) as reviewer:
        print("== lab: the catalog (a description, not the data)")
        d = lab.describe(args.dataset)
        version = lab.latest_version(args.dataset)
        print(f"  {args.dataset}: {d.get('title', '')!r}, release v{version}, "
              f"{len(d.get('releases', [{}])[-1].get('streams', []))} streams")
        mock = ReleaseDataset(f"vault://{host}/{args.dataset}/{version}/mock",
                              decode_images=False)
        print(f"  mock release: {len(mock)} samples, same layout, simulated content "
              f"(no byte of the provider's data); keys {sorted(mock[0])[:4]} ...")
        req = lab.request_access(args.dataset, version, purpose="train a pick-and-place "
                                 "policy; no redistribution")
        print(f"== lab: request {req['id']} submitted ({req['state']})")
        try:
            lab.files(args.dataset, version)
            print("  unexpected: files listed before any grant", file=sys.stderr)
            return 1
        except Exception as exc:  # noqa: BLE001  (the client's AccessDenied: shown, expected)
            print(f"  before a grant: {type(exc).__name__}: {exc}")
        print("== reviewer: review, then approve in two deliberate steps")
        reviewer.start_review(req["id"])
        code = reviewer.prepare_approval(req["id"])
        done = reviewer.confirm_approval(req["id"], code)
        print(f"  request {req['id']}: {done['state']}")
        print("== lab: pull and load through vault://")
        ds = ReleaseDataset(f"vault://{host}/{args.dataset}/{version}", decode_images=False)
        sample = ds[len(ds) // 2]
        print(f"  {len(ds)} samples; sample {len(ds) // 2}: "
              + ", ".join(f"{k} {getattr(v, 'shape', '')}" for k, v in list(sample.items())[:4]))
        print(f"  grants: {[g.get('grant_id', g.get('id')) for g in lab.grants()]}")
    clients = (JobsClient(args.url, args.lab_token), OutputsClient(args.url, args.lab_token),
               JobsClient(args.url, args.reviewer_token),
               OutputsClient(args.url, args.reviewer_token))
    try:
        return clean_room(*clients, dataset=args.dataset, version=version)
    finally:
        for c in clients:
            c.close()


def clean_room(lab_jobs: JobsClient, lab: OutputsClient, reviewer_jobs: JobsClient,
               reviewer: OutputsClient, *, dataset: str, version: int) -> int:
    """A metrics job from submission to the lab's download of its released metrics."""
    print("== lab: a clean-room job (metrics through the DemoFab loader), first on the mock")
    offer = {r.split("==")[0]: r for r in lab_jobs.offer()["requirements"]}
    job = lab_jobs.submit_job({"metrics.py": JOB_CODE.encode()}, name="demo-metrics",
                              entry="metrics:main", dataset=dataset, release=version,
                              requirements=[offer["demofab"], offer["numpy"]],
                              outputs=[("metrics.json", "json")],
                              limits={"cpu_s": 120, "wall_s": 300})
    mock = lab_jobs.wait_run(job["id"], kind="mock", timeout=600)
    logs = lab_jobs.logs(job["id"])
    print(f"  job {job['id']} ({job['sha256'][:12]}): mock run {mock['id']} {mock['state']}; "
          f"its log: {logs['stdout'].strip()!r}")
    if mock["state"] != "succeeded":
        print(logs["stderr"], file=sys.stderr)
        return 1
    print("== reviewer: read the job, approve it in two steps; the vault runs it on real data")
    reviewer_jobs.start_review(job["id"])
    code = reviewer_jobs.prepare_approval(job["id"])
    approved = reviewer_jobs.confirm_approval(job["id"], code)
    real = lab_jobs.wait_run(job["id"], kind="real", timeout=600)
    print(f"  job {job['id']}: {approved['state']}; real run {real['id']} in the sandbox: "
          f"{real['state']} ({real['message']})")
    if real["state"] != "succeeded":
        return 1
    sets = lab.output_sets(job=job["id"])
    out = sets[-1]
    print(f"== lab: the run's outputs wait for review as output set {out['id']}; "
          f"the gate's verdicts: " + ", ".join(f"{f['name']} {f['gate']['verdict']}"
                                               for f in out["files"]))
    if any(f["gate"]["verdict"] == "block" for f in out["files"]):
        print(format_set(out), file=sys.stderr)
        return 1
    lab.submit(out["id"])
    try:
        lab.download(out["id"], "metrics.json")
        print("  unexpected: outputs downloaded before their release", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001  (the client's AccessDenied: shown, expected)
        print(f"  before the release: {type(exc).__name__}: {exc}")
    print("== reviewer: read every file, approve each, release in two steps")
    for f in out["files"]:
        body = reviewer.read_for_review(out["id"], f["name"])
        print(f"  {f['name']} ({len(body)} bytes) read; approve")
        reviewer.vote(out["id"], f["name"], "approve")
    code = reviewer.prepare_release(out["id"])
    done = reviewer.confirm_release(out["id"], code)
    print(format_set(done))
    print("== lab: download the released metrics (sha256 checked)")
    metrics = json.loads(lab.download(out["id"], "metrics.json"))
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
