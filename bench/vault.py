"""Vault: audit log appends and verification, encryption at rest beside bare AES-GCM.

Builds everything in a temp dir (on the disk, not tmpfs, unless ``--dir`` says
otherwise), best of ``--repeat`` runs each:

* ``audit_appends_per_s``: ``AuditLog.append`` of typical entries (actor, action,
  dataset, a few details), one SQLite WAL transaction each, with the default
  ``sync="normal"`` and a checkpoint signed (with a full sync) every 1000 entries.
  Target >= 2000. ``audit_appends_per_s_full`` is the same with ``sync="full"`` (an fsync
  per append): what the disk allows when every single entry must survive a power cut.
* ``verify_100k_s``: ``vault.audit.verify`` of a log of ``--verify-entries`` (100,000)
  entries with its 100 checkpoints: every leaf recomputed, the tree rebuilt, each
  checkpoint's signature and root checked. Target <= 2 s.
* ``crypto_vs_bare``: ``ObjectWriter`` encrypting ``--crypto-mib`` of plaintext from
  memory in 1 MiB chunks (nonce and associated data per chunk, the header, the chunk
  buffering) into a sink that drops the bytes, against the bare ``AESGCM.encrypt_into``
  loop over the same chunks into a preallocated buffer. Target >= 0.8.
  ``decrypt_vs_bare`` is the same for ``ObjectReader.iter_range(reuse=True)`` over a
  page-cached file against bare ``AESGCM.decrypt_into`` of the same ciphertext chunks
  held in memory.
* ``pull_vs_plain`` and ``vault_loader_vs_local``: the release over HTTP (bench/vault_http.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .timing import best_of

# the vault's modules are imported by the runs: `demofab bench` lists this benchmark
# without the vault extra installed

TARGETS = {"audit_appends_per_s": 2000, "verify_100k_s": 2.0, "crypto_vs_bare": 0.8}
CHUNK = 1 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--appends", type=int, default=5000, help="appends per run")
    p.add_argument("--appends-full", type=int, default=500, help="appends per run, sync=full")
    p.add_argument("--verify-entries", type=int, default=100_000)
    p.add_argument("--crypto-mib", type=int, default=256, help="plaintext per run (MiB)")
    p.add_argument("--repeat", type=int, default=3, help="best of N runs")
    p.add_argument("--dir", default=None, help="where to build the logs (default: temp)")
    p.add_argument("--samples", type=int, default=400, help="loader samples per run")
    p.add_argument("--no-http", action="store_true", help="skip the pulls and the loader")


class _NullSink:
    """Takes ciphertext and drops it (the cost of the medium is not the cipher's)."""

    def write(self, data: memoryview, /) -> int:
        return len(data)


def _event(i: int) -> tuple[str, str, dict[str, Any]]:
    return (f"lab:acme/user{i % 7}", ("pull", "request", "job.output")[i % 3],
            {"release": "v3", "episodes": [i % 100, i % 100 + 1], "bytes": 1 << 20,
             "stream": "cameras/head"})


def _appends(base: Path, n: int, sync: str, repeat: int) -> float:
    from vault.audit import AuditLog
    from vault.note import generate_signer

    signer = generate_signer("bench.example/log")
    rates = []
    for r in range(repeat):
        root = base / f"appends-{sync}-{r}"
        log = AuditLog.create(root, signer, sync="full" if sync == "full" else "normal")
        t = time.perf_counter()
        for i in range(n):
            actor, action, details = _event(i)
            log.append(actor, action, dataset="kitchen", details=details)
        rates.append(n / (time.perf_counter() - t))
        log.close()
        shutil.rmtree(root)
    return max(rates)


def _verify(base: Path, n: int, repeat: int) -> tuple[float, int]:
    from vault.audit import AuditLog, verify
    from vault.note import generate_signer

    root = base / "verify"
    log = AuditLog.create(root, generate_signer("bench.example/log"), checkpoint_every=1000)
    batch = 10_000
    for start in range(0, n, batch):
        events = []
        for i in range(start, min(n, start + batch)):
            actor, action, details = _event(i)
            events.append({"actor": actor, "action": action, "dataset": "kitchen",
                           "details": details})
        log.append_many(events)
    log.close()
    reports = []

    def run() -> None:
        reports.append(verify(root))

    (best,) = best_of([run], repeat)
    if not reports[-1].ok or reports[-1].size != n:
        raise RuntimeError(f"the benchmark's log did not verify: {reports[-1].problem}")
    return best, reports[-1].checkpoints


def _crypto(base: Path, mib: int, repeat: int) -> dict[str, float]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from vault.crypto import TAG_SIZE, ObjectReader, ObjectRef, ObjectWriter, encrypt_object

    data = memoryview(os.urandom(mib << 20))
    key = AESGCM.generate_key(bit_length=256)
    ref = ObjectRef("kitchen", "v3", "data/cameras/head/values")
    bare = AESGCM(key)
    out = bytearray(CHUNK + TAG_SIZE)
    nonce = os.urandom(12)

    def ours() -> None:
        with ObjectWriter(_NullSink(), key, ref, chunk_size=CHUNK) as w:
            w.write(data)

    def bare_loop() -> None:
        for start in range(0, len(data), CHUNK):
            bare.encrypt_into(nonce, data[start:start + CHUNK], b"", out)

    t_ours, t_bare = best_of([ours, bare_loop], repeat)

    path = base / "object.enc"
    encrypt_object(path, key, ref, data, chunk_size=CHUNK)
    aad = bytes(41)  # the reader's associated data is 41 bytes too
    sealed = [bare.encrypt(nonce, data[i:i + CHUNK], aad) for i in range(0, len(data), CHUNK)]
    plain = bytearray(CHUNK)

    def ours_read() -> None:
        with ObjectReader(path, key, ref) as r:
            for _ in r.iter_range(reuse=True):
                pass

    def bare_read() -> None:
        for c in sealed:
            bare.decrypt_into(nonce, c, aad, plain)

    t_read, t_bare_read = best_of([ours_read, bare_read], repeat)
    gb = len(data) / 1e9
    return {"crypto_vs_bare": round(t_bare / t_ours, 3),
            "encrypt_gb_s": round(gb / t_ours, 2), "bare_encrypt_gb_s": round(gb / t_bare, 2),
            "decrypt_vs_bare": round(t_bare_read / t_read, 3),
            "decrypt_gb_s": round(gb / t_read, 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the vault benchmarks; the dict is printed as JSON on the last line."""
    base = Path(tempfile.mkdtemp(prefix="bench-vault-", dir=args.dir))
    try:
        result: dict[str, Any] = {
            "audit_appends_per_s": round(_appends(base, args.appends, "normal", args.repeat)),
            "audit_appends_per_s_full": round(_appends(base, args.appends_full, "full",
                                                       args.repeat)),
        }
        verify_s, checkpoints = _verify(base, args.verify_entries, args.repeat)
        result["verify_100k_s"] = round(verify_s * 100_000 / args.verify_entries, 3)
        result["verify_entries"] = args.verify_entries
        result["verify_checkpoints"] = checkpoints
        result.update(_crypto(base, args.crypto_mib, args.repeat))
        targets = dict(TARGETS)
        meets = (result["audit_appends_per_s"] >= TARGETS["audit_appends_per_s"]
                 and result["verify_100k_s"] <= TARGETS["verify_100k_s"]
                 and result["crypto_vs_bare"] >= TARGETS["crypto_vs_bare"])
        if not args.no_http:
            from .vault_http import TARGETS as HTTP_TARGETS
            from .vault_http import run_http

            (base / "http").mkdir()
            result.update(run_http(base / "http", samples=args.samples, repeat=args.repeat))
            targets.update(HTTP_TARGETS)
            meets = meets and all(result[k] >= t for k, t in HTTP_TARGETS.items())
        result["targets"] = targets
        result["meets_targets"] = meets
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)
