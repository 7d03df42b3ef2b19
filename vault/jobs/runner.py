"""The process inside the sandbox (bound read-only at ``/job/runner.py``; it imports
nothing of the vault): runs the job's entry point and turns a MemoryError into the exit
status :data:`vault.jobs.sandbox.MEMORY_EXIT`.

Usage: ``python -s /job/runner.py ENTRY``, ENTRY ``module:function`` (the module is
imported from /job/code; the function is called with the input and output directories as
:class:`pathlib.Path`) or ``path/to/script.py`` (run as ``__main__``, with the two
directories as ``sys.argv[1:]``). Both are also in the environment:
``DEMOFAB_JOB_INPUT``, ``DEMOFAB_JOB_OUTPUT``.

Before the job's code is imported, a Python audit hook (:func:`sys.addaudithook`, which
Python code cannot remove) reports each attempt to get out, as one JSON line on file
descriptor ``$DEMOFAB_JOB_ATTEMPTS_FD`` (a pipe the vault reads): a connection (``socket.connect``),
a name resolution (``socket.getaddrinfo``, ``socket.gethostbyname``), a file opened for
writing outside ``/job/out`` and the scratch directories. This is detection, for the audit
log; the sandbox's namespaces are what stop the attempts (native code bypasses the hook).
"""

import importlib
import json
import os
import runpy
import sys
import traceback
from pathlib import Path

MEMORY_EXIT = 87  # vault.jobs.sandbox.MEMORY_EXIT
_fd = [-1]  # the attempts pipe
_WRITABLE = ("/job/out/", "/tmp/", "/job/home/", "/dev/shm/")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_reported = [0]


def _report(kind: str, target: str) -> None:
    if _reported[0] >= 200:
        return
    _reported[0] += 1
    try:
        os.write(_fd[0], (json.dumps({"kind": kind, "target": target[:300]}) + "\n").encode())
    except OSError:
        pass  # the pipe is gone (the job closed it): the namespaces still hold


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.connect":
        _report("connect", repr(args[1]))
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        _report("resolve", str(args[0]))
    elif event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        if not isinstance(path, str | bytes):
            return
        name = os.fsdecode(path)
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and not os.path.abspath(name).startswith(_WRITABLE) and not name.startswith("/dev/"):
            _report("write", name)


def main(entry: str) -> int:
    fd = os.environ.pop("DEMOFAB_JOB_ATTEMPTS_FD", "")
    if fd.isdigit():
        _fd[0] = int(fd)
        os.set_inheritable(_fd[0], False)
        sys.addaudithook(_hook)
    code = "/job/code"
    inputs = Path(os.environ.get("DEMOFAB_JOB_INPUT", "/job/input"))
    outputs = Path(os.environ.get("DEMOFAB_JOB_OUTPUT", "/job/out"))
    sys.path.insert(0, code)
    try:
        if ":" in entry:
            module, _, func = entry.partition(":")
            fn = getattr(importlib.import_module(module), func)
            result = fn(inputs, outputs)
            return 0 if result is None else int(result)
        sys.argv = [entry, str(inputs), str(outputs)]
        runpy.run_path(os.path.join(code, entry), run_name="__main__")
        return 0
    except MemoryError:
        traceback.print_exc()
        print("demofab clean room: the job ran out of memory", file=sys.stderr)
        return MEMORY_EXIT
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
