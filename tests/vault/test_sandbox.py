"""The sandbox: no way out (network, names, files outside the output directory, the
vault's keys and database) and every limit enforced, with the state naming it."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault.jobs.sandbox import JobLimits, SandboxResult, is_tmpfs, private_tmpfs, run_sandboxed


@pytest.fixture()
def dirs(tmp_path: Path) -> dict[str, Path]:
    out = {d: tmp_path / d for d in ("code", "input", "out", "logs")}
    for d in out.values():
        d.mkdir()
    (out["input"] / "secret.bin").write_bytes(b"provider data")
    return out


def run(dirs: dict[str, Path], source: str, limits: JobLimits | None = None) -> SandboxResult:
    (dirs["code"] / "job.py").write_text(source)
    return run_sandboxed(dirs["code"], dirs["input"], dirs["out"], dirs["logs"],
                         ["/job/runner.py", "job.py"], limits or JobLimits(cpu_s=20, wall_s=30))


def stdout(dirs: dict[str, Path]) -> str:
    return (dirs["logs"] / "stdout.log").read_text()


@pytest.fixture()
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener on 127.0.0.1 outside the sandbox; the connections it accepted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join()
    srv.close()
    for c in accepted:
        c.close()


def test_a_job_cannot_reach_a_listener_on_the_hosts_loopback(
        dirs: dict[str, Path], listener: tuple[int, list[socket.socket]]) -> None:
    port, accepted = listener
    # the listener is reachable from outside the sandbox: the check below can fail
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    res = run(dirs, f"""
import socket
for fam, addr in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_INET6, ("::1", {port}))):
    try:
        socket.create_connection(addr[:2], timeout=2).close()
        print("CONNECTED", addr)
    except OSError as exc:
        print("blocked:", type(exc).__name__, exc)
print("interfaces", [n for _, n in socket.if_nameindex()])
""")
    assert res.state == "succeeded", res.message
    assert "CONNECTED" not in stdout(dirs) and stdout(dirs).count("blocked:") == 2
    assert "interfaces ['lo']" in stdout(dirs)
    assert {"kind": "connect", "target": repr(("127.0.0.1", port))} in res.attempts
    assert len(accepted) == 1  # the test's own connection only


def test_a_job_cannot_resolve_a_host_name(dirs: dict[str, Path]) -> None:
    res = run(dirs, """
import socket
for host in ("localhost", "example.com", "pypi.org"):
    try:
        print("RESOLVED", host, socket.getaddrinfo(host, 443))
    except OSError as exc:
        print("unresolved", host, exc)
""")
    assert res.state == "succeeded", res.message
    assert "RESOLVED" not in stdout(dirs) and stdout(dirs).count("unresolved") == 3
    assert [a["target"] for a in res.attempts if a["kind"] == "resolve"] == [
        "localhost", "example.com", "pypi.org"]


def targets_written(tmp_path: Path) -> list[str]:
    return ["/job/code/x", "/job/input/x", "/job/input/secret.bin", "/usr/x", "/x", "/opt/x",
            "/job/runner.py", str(tmp_path / "outside")]


def test_a_job_writes_only_into_its_output_directory(dirs: dict[str, Path], tmp_path: Path) -> None:
    res = run(dirs, f"""
import os
targets = ["/job/code/x", "/job/input/x", "/job/input/secret.bin", "/usr/x", "/x", "/opt/x",
           "/job/runner.py", {str(tmp_path / 'outside')!r}]
for t in targets:
    try:
        with open(t, "ab") as fh:
            fh.write(b"leak")
        print("WROTE", t)
    except OSError as exc:
        print("refused", t, type(exc).__name__)
open("/job/out/ok.json", "w").write("{{}}")
""")
    assert res.state == "succeeded", res.message
    assert "WROTE" not in stdout(dirs) and stdout(dirs).count("refused") == 8
    # reported: every write outside /job/out and the scratch space (the host's tmp_path
    # is a path under the sandbox's own scratch /tmp there, so not reported)
    assert [a["target"] for a in res.attempts if a["kind"] == "write"] == targets_written(tmp_path)[:-1]
    assert sorted(p.name for p in dirs["code"].iterdir()) == ["job.py"]
    assert (dirs["input"] / "secret.bin").read_bytes() == b"provider data"
    assert [p.name for p in dirs["out"].iterdir()] == ["ok.json"]
    assert not (tmp_path / "outside").exists()


def test_the_vaults_keys_database_and_work_tree_are_absent(dirs: dict[str, Path], tmp_path: Path) -> None:
    from vault.service import Vault, init_vault

    (tmp_path / "keys").mkdir()
    root = init_vault(tmp_path / "root", tmp_path / "keys" / "provider.key")
    Vault(root).close()
    paths = [str(tmp_path / "keys" / "provider.key"), str(tmp_path / "keys" / "provider.key.log"),
             str(root / "catalog.sqlite"), str(root / "audit" / "log.sqlite"), str(root),
             str(Path(__file__).resolve().parents[2]), os.path.expanduser("~/.ssh"), "/etc/passwd"]
    assert all(os.path.exists(p) for p in paths[:6])
    res = run(dirs, f"""
import json, os
found = {{p: os.path.exists(p) for p in {paths!r}}}
print(json.dumps(found))
print("root", sorted(os.listdir("/")))
print("env", sorted(os.environ))
""")
    assert res.state == "succeeded", res.message
    lines = stdout(dirs).splitlines()
    assert json.loads(lines[0]) == {p: False for p in paths}
    assert "'work'" not in lines[1] and "'etc'" not in lines[1]
    assert "DEMOFAB_VAULT_TOKEN" not in lines[2] and "'HOME'" in lines[2]


@pytest.mark.parametrize(("limit", "source", "limits"), [
    ("cpu_limit", "while True:\n    pass\n", JobLimits(cpu_s=1, wall_s=30)),
    ("cpu_limit",  # CPU spread over processes: the supervisor sums them
     "import os\nfor _ in range(3):\n    if os.fork() == 0:\n        break\nwhile True:\n    pass\n",
     JobLimits(cpu_s=1.5, wall_s=30)),
    ("memory_limit", "x = bytearray(1 << 30)\n", JobLimits(memory_bytes=256 << 20)),
    ("wall_limit", "import time\ntime.sleep(60)\n", JobLimits(wall_s=1)),
    ("output_limit", "open('/job/out/big.json', 'wb').write(b'0' * (2 << 20))\n",
     JobLimits(output_bytes=1 << 20)),
    ("output_limit",  # many files, each under the limit
     "for i in range(40):\n    open(f'/job/out/{i}.csv', 'wb').write(b'0' * (100 << 10))\n"
     "import time\ntime.sleep(30)\n", JobLimits(output_bytes=1 << 20, wall_s=20)),
    ("output_limit", "import sys\nsys.stdout.write('x' * (2 << 20))\n", JobLimits(output_bytes=1 << 20)),
])
def test_a_job_over_a_limit_is_stopped_and_the_state_names_the_limit(
        dirs: dict[str, Path], limit: str, source: str, limits: JobLimits) -> None:
    res = run(dirs, source, limits)
    assert res.state == limit, (res, (dirs["logs"] / "stderr.log").read_text()[-500:])
    assert res.wall_s < 15


def test_scratch_space_is_small_and_the_rest_read_only(dirs: dict[str, Path]) -> None:
    res = run(dirs, """
for d in ("/dev", "/dev/shm", "/tmp", "/job/home", "/", "/usr/lib"):
    try:
        with open(d.rstrip("/") + "/fill", "wb") as fh:
            for _ in range(80):
                fh.write(b"0" * (1 << 20))
        print("FILLED", d)
    except OSError as exc:
        print("bounded", d, exc.strerror)
""", JobLimits(output_bytes=200 << 20))
    assert res.state == "succeeded", res.message
    assert "FILLED" not in stdout(dirs) and stdout(dirs).count("bounded") == 6


def test_a_failing_job_is_failed_with_its_traceback_in_the_logs(dirs: dict[str, Path]) -> None:
    res = run(dirs, "raise RuntimeError('boom')\n")
    assert res.state == "failed" and res.exit_code == 1
    assert "RuntimeError: boom" in (dirs["logs"] / "stderr.log").read_text()


def test_the_private_directory_is_on_a_tmpfs_and_gone_afterwards() -> None:
    with pytest.raises(RuntimeError), private_tmpfs() as work:
        assert is_tmpfs(work) and os.stat(work).st_mode & 0o777 == 0o700
        (work / "plain.bin").write_bytes(b"x")
        raise RuntimeError("a failed run")
    assert not work.exists()
    assert not is_tmpfs(Path(__file__))
