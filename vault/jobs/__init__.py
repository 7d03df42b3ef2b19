"""Clean-room jobs: a lab's code, reviewed by the provider, run in a sandbox on the data
its grant reaches (first on the mock release), its outputs handed to the output review."""

from typing import Any

__all__ = ["MAXIMA", "JobError", "JobLimits", "JobSpec", "JobView", "Jobs", "OutputDecl", "RunView",
           "SandboxError", "SandboxResult", "read_code"]

_WHERE = {"RunView": "runs", "MAXIMA": "sandbox", "JobLimits": "sandbox", "SandboxResult": "sandbox",
          "Jobs": "service", "JobView": "service", "JobSpec": "spec", "OutputDecl": "spec",
          "read_code": "spec", "JobError": "errors", "SandboxError": "errors"}


def __getattr__(name: str) -> Any:
    """The package's names, imported on first use (so that ``demofab vault job --help``
    needs none of the vault extra)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
