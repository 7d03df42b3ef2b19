"""The output gate: automatic checks on a clean-room run's outputs before any person sees them.

Build an :class:`InputIndex` of the granted inputs once per release version (and subset),
then :func:`check` the run's output files against it under a :class:`GatePolicy`; the
:class:`GateReport` says per file ``pass`` or ``block`` with findings that name what matched
(an input frame, a window of an input stream) and where (byte range, CSV rows and column,
PNG region, tensor). Allowed outputs: metrics JSON, CSV, PNG plots, safetensors weights and
text logs, recognised by their content. See docs/lab-guide.md ("What the gate rejects")."""

from __future__ import annotations

from .check import check, check_file
from .errors import GateError
from .index import INDEX_FORMAT_VERSION, InputIndex
from .policy import ALLOWED_KINDS, GatePolicy, IndexConfig
from .report import KINDS, REPORT_FORMAT_VERSION, FileVerdict, Finding, GateReport

__all__ = ["ALLOWED_KINDS", "INDEX_FORMAT_VERSION", "KINDS", "REPORT_FORMAT_VERSION", "FileVerdict",
           "Finding", "GateError", "GatePolicy", "GateReport", "IndexConfig", "InputIndex", "check",
           "check_file"]
