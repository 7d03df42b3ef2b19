"""The vault over HTTP, beside the same bytes without the vault, in one run:

* ``pull_vs_plain``: every file of an encrypted release pulled through the vault API (token
  checked, grant checked, decrypted, audited) from a uvicorn server on 127.0.0.1, against
  the same files served as plain files (``FileResponse``) by the same server. Target >= 0.5.
* ``vault_loader_vs_local``: random training samples per second of curation's
  ``ReleaseDataset`` opened at ``vault://HOST:PORT/DATASET/1`` against the same release
  opened from its local directory. Target >= 0.5.

The release is curated in the run from synthetic-rig episodes (three cameras at 640x480).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

TARGETS = {"pull_vs_plain": 0.5, "vault_loader_vs_local": 0.5}


def _release(base: Path, episodes: int, seconds: float) -> Path:
    from curation import curate
    from recorder.control import Plan, Recorder
    from recorder.profile import load_profile
    from recorder.session import Session
    from recorder.sources.synthetic import RigOptions, SyntheticRig

    profile = load_profile("humanoid")
    session = Session(base / "session", profile)
    rig = SyntheticRig(profile, RigOptions(seed=3, start_ns=1_750_000_000_000_000_000))
    Recorder(session, rig, Plan(episodes=episodes, episode_seconds=seconds, task="bench")
             ).run(handle_signals=False)
    return Path(curate([base / "session"], base / "releases", "bench").release)


def _serve(app: Any) -> tuple[Any, str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("bench vault: the server did not start in 30 s")
        time.sleep(0.05)
    return server, f"127.0.0.1:{port}"


def _pull_all(client: Any, urls: list[str], headers: dict[str, str]) -> float:
    t = time.perf_counter()
    n = 0
    for url in urls:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"bench vault: GET {url}: HTTP {resp.status_code}")
            for chunk in resp.iter_raw(1 << 20):
                n += len(chunk)
    return n / (time.perf_counter() - t) / 1e6


def _samples_per_s(dataset: Any, n: int, seed: int) -> float:
    rng = random.Random(seed)
    idx = [rng.randrange(len(dataset)) for _ in range(n)]
    t = time.perf_counter()
    for i in idx:
        dataset[i]
    return n / (time.perf_counter() - t)


def run_http(base: Path, *, episodes: int = 3, seconds: float = 4.0, samples: int = 400,
             repeat: int = 3) -> dict[str, Any]:
    """Build a vault with one release and a lab's grant, serve it, measure both ratios."""
    import httpx
    from fastapi.responses import FileResponse

    from curation.loader import ReleaseDataset
    from vault.api import create_app
    from vault.identities import SCOPES, Role
    from vault.service import Vault, init_vault

    release = _release(base, episodes, seconds)
    (base / "keys").mkdir(mode=0o700)
    init_vault(base / "root", base / "keys" / "provider.key")
    v = Vault(base / "root")
    server = None
    try:
        v.catalog.create_provider("acme")
        v.catalog.create_dataset("acme", "pick", required_approvals=1)
        v.ingest_release("pick", release, mock=False)
        ids = v.identities
        for name in ("prov", "rev", "lab1"):
            ids.create_identity(name)
        ids.assign("prov", Role.PROVIDER, provider="acme")
        ids.appoint_reviewer(ids.get("prov"), "rev", "pick")
        ids.create_lab("lab")
        ids.assign("lab1", Role.LAB_MEMBER, lab="lab")
        req = v.review.submit(ids.get("lab1"), "pick", 1, purpose="bench")
        v.review.start_review(req.id, ids.get("rev"))
        v.review.confirm_approval(req.id, ids.get("rev"),
                                  v.review.prepare_approval(req.id, ids.get("rev")))
        token = ids.create_token("lab1", sorted(SCOPES)).token
        files = sorted(p.relative_to(release).as_posix() for p in release.rglob("*")
                       if p.is_file())
        app = create_app(v)

        @app.get("/bench-plain/{path:path}", include_in_schema=False)
        def plain(path: str) -> FileResponse:  # the same bytes, no vault in the way
            return FileResponse(release / path)

        server, host = _serve(app)
        auth = {"Authorization": f"Bearer {token}"}
        vault_urls = [f"http://{host}/v1/datasets/pick/releases/1/files/{f}" for f in files]
        plain_urls = [f"http://{host}/bench-plain/{f}" for f in files]
        with httpx.Client(timeout=120, trust_env=False) as c:
            vault_mb = max(_pull_all(c, vault_urls, auth) for _ in range(repeat))
            plain_mb = max(_pull_all(c, plain_urls, {}) for _ in range(repeat))
        os.environ["DEMOFAB_VAULT_TOKEN"] = token
        keys = ["joint_states/position", "camera.head.image_raw.compressed/data"]
        local = ReleaseDataset(release, keys=keys, decode_images=False)
        remote = ReleaseDataset(f"vault://{host}/pick/1", keys=keys, decode_images=False)
        _samples_per_s(remote, 50, 0)  # warm: the first reads open the arrays
        _samples_per_s(local, 50, 0)
        local_sps = max(_samples_per_s(local, samples, k) for k in range(repeat))
        remote_sps = max(_samples_per_s(remote, samples, k) for k in range(repeat))
        size = sum((release / f).stat().st_size for f in files)
        return {
            "release_mb": round(size / 1e6, 1), "release_files": len(files),
            "vault_pull_mb_s": round(vault_mb, 1), "plain_pull_mb_s": round(plain_mb, 1),
            "pull_vs_plain": round(vault_mb / plain_mb, 3),
            "loader_local_samples_per_s": round(local_sps, 1),
            "loader_vault_samples_per_s": round(remote_sps, 1),
            "vault_loader_vs_local": round(remote_sps / local_sps, 3),
            "audit_entries_written": v.audit.size,
        }
    finally:
        if server is not None:
            server.should_exit = True
        v.close()


__all__ = ["TARGETS", "run_http"]
