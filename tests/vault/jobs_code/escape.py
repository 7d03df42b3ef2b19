"""A job that behaves on the mock release and, on real data, tries every way out it can
think of, then spins until the CPU limit."""

import json
import os
import socket
import sys
from pathlib import Path


def main(inputs: Path, outputs: Path) -> None:
    cfg = json.loads((Path(__file__).parent / "targets.json").read_text())
    if '"mock"' in (inputs / "zarr.json").read_text():
        (outputs / "metrics.json").write_text("{}")
        print("an honest job")
        return
    tried = {}
    try:
        socket.create_connection(("127.0.0.1", cfg["port"]), timeout=2).close()
        tried["connect"] = "OPEN"
    except OSError as exc:
        tried["connect"] = f"blocked: {exc}"
    try:
        tried["resolve"] = f"OPEN {socket.getaddrinfo('example.com', 443)}"
    except OSError as exc:
        tried["resolve"] = f"blocked: {exc}"
    for path in cfg["read"]:
        try:
            tried[path] = f"OPEN {len(Path(path).read_bytes())}"
        except OSError as exc:
            tried[path] = f"blocked: {type(exc).__name__}"
    for path in cfg["write"]:
        try:
            Path(path).write_bytes(b"leak")
            tried[path] = "OPEN"
        except OSError as exc:
            tried[path] = f"blocked: {type(exc).__name__}"
    print(json.dumps(tried), flush=True)
    sys.stdout.flush()
    os.sched_yield()
    while True:
        pass
