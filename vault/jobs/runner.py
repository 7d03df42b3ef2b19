"""The process inside the sandbox (bound read-only at ``/job/runner.py``; it imports
nothing of the vault): runs the job's entry point and turns a MemoryError into the exit
status :data:`vault.jobs.sandbox.MEMORY_EXIT`.

Usage: ``python -s /job/runner.py ENTRY``, ENTRY ``module:function`` (the module is
imported from /job/code; the function is called with the input and output directories as
:class:`pathlib.Path`) or ``path/to/script.py`` (run as ``__main__``, with the two
directories as ``sys.argv[1:]``). Both are also in the environment:
``DEMOFAB_JOB_INPUT``, ``DEMOFAB_JOB_OUTPUT``.
"""

import importlib
import os
import runpy
import sys
import traceback
from pathlib import Path

MEMORY_EXIT = 87  # vault.jobs.sandbox.MEMORY_EXIT


def main(entry: str) -> int:
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
