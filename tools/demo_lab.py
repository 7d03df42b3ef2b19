"""The lab's and the reviewer's side of ``make demo``'s vault part (tools/demo-vault.sh):
browse the catalog and the mock release, ask for access, the reviewer approves in two
steps, then pull and load a sample of the real release through ``vault://``."""

from __future__ import annotations

import argparse
import os
import sys

from curation.loader import ReleaseDataset
from vault.client import VaultClient


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
