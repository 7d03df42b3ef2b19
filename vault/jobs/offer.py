"""The requirements a job may name: the allow-listed distributions that the sandbox's
Python environment really has, each at the exact version installed (read INSIDE the
sandbox, with :mod:`importlib.metadata`, so the offer is what a job will import)."""

from __future__ import annotations

import json
import re
import tempfile
import threading
from pathlib import Path

from .sandbox import JobLimits, run_sandboxed
from .spec import JobError

__all__ = ["ALLOWED", "check_requirements", "offer"]

ALLOWED = ("demofab", "numpy", "torch", "safetensors", "pyarrow", "zarr", "numcodecs",
           "opencv-python-headless", "scipy")
"""The distributions a job may require (``demofab``: the release loader,
:mod:`curation.loader`), when the vault's environment has them."""

_PROBE = ("import importlib.metadata as m, json\n"
          "out = {}\n"
          "for n in NAMES:\n"
          "    try:\n"
          "        out[n] = m.version(n)\n"
          "    except m.PackageNotFoundError:\n"
          "        pass\n"
          "print(json.dumps(out))\n")
_lock = threading.Lock()
_cached: dict[str, str] | None = None
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)")


def offer(*, refresh: bool = False) -> dict[str, str]:
    """``{distribution: version}`` the vault offers (computed once per process)."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            with tempfile.TemporaryDirectory(prefix="demofab-offer-") as tmp:
                dirs = [Path(tmp) / d for d in ("code", "out", "logs")]
                for d in dirs:
                    d.mkdir()
                code = f"NAMES = {list(ALLOWED)!r}\n" + _PROBE
                res = run_sandboxed(dirs[0], None, dirs[1], dirs[2], ["-c", code],
                                    JobLimits(cpu_s=30, wall_s=60))
                text = (dirs[2] / "stdout.log").read_text()
                if res.state != "succeeded":
                    err = (dirs[2] / "stderr.log").read_text()[-2000:]
                    raise JobError(f"cannot read the sandbox's environment: {res.message}: {err}")
            _cached = dict(sorted(json.loads(text).items()))
        return dict(_cached)


def check_requirements(requirements: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The requirements, normalized and sorted, if each is ``name==version`` from the
    offer; JobError listing the offer otherwise."""
    offered = offer()
    listing = ", ".join(f"{k}=={v}" for k, v in offered.items())
    out = set()
    for req in requirements:
        m = _PIN.fullmatch(req.strip()) if isinstance(req, str) else None
        if m is None:
            raise JobError(f"requirement {req!r}: name an exact version, 'name==version', from "
                           f"the offer: {listing}")
        name = m.group(1).lower().replace("_", "-")
        if name not in offered:
            raise JobError(f"requirement {req!r}: {name} is not offered; the vault offers "
                           f"{listing}")
        if offered[name] != m.group(2):
            raise JobError(f"requirement {req!r}: the vault offers {name}=={offered[name]}, not "
                           f"{m.group(2)}; the offer: {listing}")
        out.add(f"{name}=={offered[name]}")
    return tuple(sorted(out))
