"""The clean room's sandbox: one job process under bubblewrap, cut off from the network
and from the vault, with CPU, memory, wall-time and output-size limits.

What the job sees (:func:`bwrap_argv`)::

    /usr, /lib*, /bin, /sbin     read-only (symlinks where the host has symlinks)
    <python base prefix>         read-only, at its own path (the interpreter and stdlib)
    /opt/python/site-packages    read-only: the vault's environment (its site-packages)
    /opt/demofab/<pkg>           read-only: demofab, curation, recorder (the loader)
    /job/runner.py               read-only: :mod:`vault.jobs.runner`
    /job/code                    read-only: the job's code
    /job/input                   read-only: the decrypted inputs (a tmpfs directory)
    /job/out                     writable: the only writable place on a real file system
    /tmp, /job/home, /dev/shm    small tmpfs (``--size``: 64, 16, 16 MiB: scratch space, bounded,
                                 thrown away); the root and /dev are read-only
    /proc, /dev                  the sandbox's own (its pid namespace; minimal devices)

Everything else is absent: no /work, no vault root, no key files, no /etc, no $HOME.
bwrap runs with ``--unshare-all --unshare-user --disable-userns`` (its own network
namespace holding only a loopback device: nothing outside is reachable, and names do not
resolve), ``--die-with-parent``, ``--new-session``, ``--cap-drop ALL``, ``--clearenv``
and a minimal environment, as uid/gid 65534.

Limits: RLIMIT_CPU (per process), RLIMIT_AS (per process), RLIMIT_FSIZE (the output
bytes, per file), RLIMIT_NOFILE and RLIMIT_NPROC; and a supervisor thread that every
:data:`POLL_S` sums the CPU time and resident memory of every process of the sandbox and
the bytes under the output and log directories, and kills the whole sandbox (SIGKILL to
bwrap's process group; the pid namespace dies with it) at the first limit crossed, or
when the wall time is up. The result names the limit (:class:`SandboxResult.state`).

Plaintext inputs live in :func:`private_tmpfs`: a 0700 directory on a tmpfs (checked in
``/proc/mounts``), removed when the block ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import JobError, SandboxError

__all__ = [
    "BWRAP", "MAXIMA", "MEMORY_EXIT", "POLL_S", "JobLimits", "SandboxError", "SandboxResult",
    "bwrap_argv", "is_tmpfs", "private_tmpfs", "run_sandboxed",
]

BWRAP = "/usr/bin/bwrap"
POLL_S = 0.1
"""How often the supervisor measures the sandbox."""
MEMORY_EXIT = 87
"""The runner's exit status when the job ran out of memory (a MemoryError)."""
MAX_ATTEMPTS = 200
"""The most attempts to get out kept of one run (the runner reports them as JSON lines on
the pipe named by ``DEMOFAB_JOB_ATTEMPTS_FD``)."""
_SANDBOX_UID = 65534
_PACKAGES = ("demofab", "curation", "recorder")  # the loader and what it imports
_SHM = Path("/dev/shm")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class JobLimits:
    """What one run may use: CPU seconds (all its processes together), memory (bytes of
    address space per process, and of resident memory all processes together), wall
    seconds, and output bytes (outputs and logs together)."""

    cpu_s: float = 60.0
    memory_bytes: int = 2 << 30
    wall_s: float = 120.0
    output_bytes: int = 64 << 20

    def check(self, maxima: JobLimits) -> JobLimits:
        """Itself, or JobError naming the limit that is not positive or above the
        vault's maximum."""
        for name, value in asdict(self).items():
            top = getattr(maxima, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= top:
                raise JobError(f"limit {name}={value!r} must be positive and at most the "
                                   f"vault's maximum {top}")
        if self.memory_bytes < 64 << 20:
            raise JobError(f"limit memory_bytes={self.memory_bytes}: at least 64 MiB "
                               "(the interpreter alone needs that much address space)")
        return self

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, normalized (seconds as floats, bytes as ints: the job's identity
        hashes this)."""
        return {"cpu_s": float(self.cpu_s), "memory_bytes": int(self.memory_bytes),
                "wall_s": float(self.wall_s), "output_bytes": int(self.output_bytes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobLimits:
        """From :meth:`as_dict`'s shape (missing keys: the defaults); JobError on
        unknown keys or wrong types."""
        known = {"cpu_s", "memory_bytes", "wall_s", "output_bytes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise JobError(f"unknown limit(s) {unknown}; limits are {sorted(known)}")
        try:
            d = cls()
            return cls(cpu_s=float(data.get("cpu_s", d.cpu_s)),
                       memory_bytes=int(data.get("memory_bytes", d.memory_bytes)),
                       wall_s=float(data.get("wall_s", d.wall_s)),
                       output_bytes=int(data.get("output_bytes", d.output_bytes)))
        except (TypeError, ValueError) as exc:
            raise JobError(f"limits {data!r}: {exc}") from exc


MAXIMA = JobLimits(cpu_s=3600.0, memory_bytes=16 << 30, wall_s=7200.0, output_bytes=1 << 30)
"""The vault-wide maxima of every limit."""


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended: ``state`` is ``succeeded`` (exit 0), ``failed`` (another exit or
    signal), or the limit that stopped it: ``cpu_limit``, ``memory_limit``,
    ``wall_limit``, ``output_limit``."""

    state: str
    exit_code: int | None
    signal: int | None
    cpu_s: float
    wall_s: float
    peak_rss_bytes: int
    output_bytes: int
    message: str
    attempts: tuple[dict[str, str], ...] = ()
    """What the runner's audit hook saw the job try: ``{"kind": connect|resolve|write,
    "target"}`` (at most :data:`MAX_ATTEMPTS`)."""


# -- the private tmpfs ----------------------------------------------------------------------

def is_tmpfs(path: Path) -> bool:
    """Whether ``path`` lies on a tmpfs (the longest mount point in /proc/mounts that holds
    it is of type tmpfs)."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    with open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace("\\040", " ")
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best):
                best, fstype = mnt, parts[2]
    return fstype == "tmpfs"


@contextmanager
def private_tmpfs(prefix: str = "demofab-job-", base: Path = _SHM) -> Iterator[Path]:
    """A new directory, mode 0700, on a tmpfs (``base``, /dev/shm by default), removed
    with everything in it when the block ends, even on failure. SandboxError when
    ``base`` is not a tmpfs: plaintext inputs never go to a disk."""
    if not base.is_dir() or not is_tmpfs(base):
        raise SandboxError(f"{base} is not a tmpfs; the clean room decrypts inputs only into "
                           "memory")
    path = base / f"{prefix}{secrets.token_hex(8)}"
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # a file the sandbox made unremovable: make it removable and retry
            for p in [path, *path.rglob("*")]:
                if p.is_dir() and not p.is_symlink():
                    os.chmod(p, 0o700)
            shutil.rmtree(path)


# -- the sandbox ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Python:
    executable: str  # the real interpreter (not the venv's symlink)
    prefix: str      # its installation, bound at its own path
    site: tuple[str, ...]
    packages: tuple[tuple[str, str], ...]  # (name, source dir)


def _python() -> _Python:
    exe = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if not exe.startswith(prefix + "/"):
        raise SandboxError(f"the interpreter {exe} is not under its prefix {prefix}")
    paths = sysconfig.get_paths()
    site = tuple(dict.fromkeys(os.path.realpath(paths[k]) for k in ("purelib", "platlib")))
    packages = []
    for name in _PACKAGES:
        mod = sys.modules.get(name) or __import__(name)
        packages.append((name, str(Path(str(mod.__file__)).resolve().parent)))
    return _Python(exe, prefix, site, tuple(packages))


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def bwrap_argv(code_dir: Path, input_dir: Path | None, out_dir: Path,
               command: Sequence[str], *, tmp_bytes: int = 64 << 20,
               attempts_fd: int | None = None) -> list[str]:
    """The bwrap command line that runs ``command`` (inside paths) in the sandbox."""
    py = _python()
    argv = [BWRAP, "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(_SANDBOX_UID), "--gid", str(_SANDBOX_UID), "--hostname", "cleanroom",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
            *_system_binds(), "--ro-bind", py.prefix, py.prefix]
    pythonpath = []
    for i, site in enumerate(py.site):
        dest = "/opt/python/site-packages" + (f"-{i}" if i else "")
        argv += ["--ro-bind", site, dest]
        pythonpath.append(dest)
    for name, src in py.packages:
        argv += ["--ro-bind", src, f"/opt/demofab/{name}"]
    pythonpath.insert(0, "/opt/demofab")
    runner = Path(__file__).with_name("runner.py")
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(16 << 20), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
             "--size", str(tmp_bytes), "--tmpfs", "/tmp",
             "--dir", "/job", "--size", str(16 << 20), "--tmpfs", "/job/home",
             "--ro-bind", str(runner), "/job/runner.py",
             "--ro-bind", str(code_dir), "/job/code",
             "--bind", str(out_dir), "/job/out"]
    if input_dir is not None:
        argv += ["--ro-bind", str(input_dir), "/job/input"]
    else:
        argv += ["--dir", "/job/input"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/job/home", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
           "PYTHONPATH": ":".join(pythonpath), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "DEMOFAB_JOB_INPUT": "/job/input", "DEMOFAB_JOB_OUTPUT": "/job/out"}
    if attempts_fd is not None:
        env["DEMOFAB_JOB_ATTEMPTS_FD"] = str(attempts_fd)
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--remount-ro", "/", "--chdir", "/job/home", "--", py.executable, "-s", *command]
    return argv


def _set_rlimits(limits: JobLimits) -> None:
    """In the child before exec (bwrap and the job inherit them)."""
    cpu = max(1, int(limits.cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # not enforced for root on the host, enforced otherwise
        resource.setrlimit(resource.RLIMIT_NPROC, (4096, 4096))
    except (ValueError, OSError):
        pass


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _usage(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (each live process's own and its reaped children's) and resident bytes."""
    ticks, pages = 0, 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        pages += int(fields[21])  # rss
    return ticks / _CLK_TCK, pages * _PAGE


def _tree_bytes(*dirs: Path) -> int:
    total = 0
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    continue
    return total


def run_sandboxed(code_dir: Path, input_dir: Path | None, out_dir: Path, log_dir: Path,
                  command: Sequence[str], limits: JobLimits) -> SandboxResult:
    """Run ``command`` (arguments of the sandbox's Python, inside paths) in the sandbox
    with ``limits``; stdout and stderr go to ``log_dir/stdout.log`` and ``stderr.log``.
    Returns when the sandbox is gone."""
    if not os.access(BWRAP, os.X_OK):
        raise SandboxError(f"{BWRAP} is missing: the clean room needs bubblewrap "
                           "(tools/system-deps.sh installs it)")
    for d in (code_dir, out_dir, log_dir) + ((input_dir,) if input_dir else ()):
        if not d.is_dir():
            raise SandboxError(f"{d} is not a directory")
    stopped: list[str] = []
    peak = [0, 0.0]  # rss bytes, cpu s
    start = time.monotonic()
    read_fd, write_fd = os.pipe()
    argv = bwrap_argv(code_dir, input_dir, out_dir, command, attempts_fd=write_fd)
    try:
        with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, close_fds=True,
                                    pass_fds=(write_fd,),
                                    preexec_fn=lambda: _set_rlimits(limits))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    attempts: list[dict[str, str]] = []
    reader = threading.Thread(target=_read_attempts, args=(read_fd, attempts), daemon=True)
    reader.start()
    done = threading.Event()

    def kill(why: str) -> None:
        if not stopped:
            stopped.append(why)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def supervise() -> None:
        while not done.wait(POLL_S):
            cpu, rss = _usage(_descendants(proc.pid))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], cpu)
            if time.monotonic() - start > limits.wall_s:
                kill("wall_limit")
            elif cpu > limits.cpu_s:
                kill("cpu_limit")
            elif rss > limits.memory_bytes:
                kill("memory_limit")
            elif _tree_bytes(out_dir, log_dir) > limits.output_bytes:
                kill("output_limit")

    watcher = threading.Thread(target=supervise, name="sandbox-supervisor", daemon=True)
    watcher.start()
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        status = proc.wait()
    except BaseException:
        kill("interrupted")
        proc.wait()
        raise
    finally:
        done.set()
        watcher.join()
        reader.join(5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - start
    # the children's times of this whole process: another run in parallel can add to them,
    # so take the larger of that and what the supervisor saw
    cpu = max(peak[1], (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
    written = _tree_bytes(out_dir, log_dir)
    sig = -status if status < 0 else None
    code = status if status >= 0 else None
    if code is not None and 128 < code < 128 + 65:  # bwrap's report of a job killed by a signal
        sig, code = code - 128, None
    state, message = _classify(stopped, code, sig, cpu, written, limits)
    return SandboxResult(state, code, sig, round(cpu, 3), round(wall, 3), int(peak[0]), written,
                         message, tuple(attempts))


def _read_attempts(fd: int, into: list[dict[str, str]]) -> None:
    """Read the runner's JSON lines until the sandbox is gone (at most
    :data:`MAX_ATTEMPTS` kept, 64 KiB read)."""
    buf = b""
    with os.fdopen(fd, "rb", buffering=0) as fh:
        while True:
            piece = fh.read(4096)
            if not piece:
                break
            if len(buf) < 65536:
                buf += piece
    for line in buf.decode(errors="replace").splitlines()[:MAX_ATTEMPTS]:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            into.append({"kind": str(item.get("kind", ""))[:16],
                         "target": str(item.get("target", ""))[:300]})


def _classify(stopped: list[str], code: int | None, sig: int | None, cpu: float, written: int,
              limits: JobLimits) -> tuple[str, str]:
    if stopped:
        why = stopped[0]
        return why, {"wall_limit": f"killed: the wall time limit of {limits.wall_s:g} s ran out",
                     "cpu_limit": f"killed: used more than the CPU limit of {limits.cpu_s:g} s",
                     "memory_limit": f"killed: resident memory above the limit of "
                                     f"{limits.memory_bytes} bytes",
                     "output_limit": f"killed: outputs and logs above the limit of "
                                     f"{limits.output_bytes} bytes",
                     "interrupted": "killed: the vault stopped the run"}[why]
    if sig in (signal.SIGXCPU,) or (sig == signal.SIGKILL and cpu >= limits.cpu_s):
        return "cpu_limit", f"killed by the CPU limit of {limits.cpu_s:g} s (signal {sig})"
    if sig == signal.SIGXFSZ or written > limits.output_bytes:
        return "output_limit", (f"stopped by the output limit of {limits.output_bytes} bytes "
                                f"({written} written)")
    if code == MEMORY_EXIT:
        return "memory_limit", (f"ran out of memory: the limit is {limits.memory_bytes} bytes of "
                                "address space")
    if code == 0:
        return "succeeded", "exit status 0"
    if sig is not None:
        return "failed", f"killed by signal {sig} ({signal.Signals(sig).name})"
    return "failed", f"exit status {code}"
