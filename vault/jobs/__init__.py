"""Clean-room jobs: a lab's code, reviewed by the provider, run in a sandbox on the data
its grant reaches (first on the mock release), its outputs handed to the output review."""

from .runs import RunView
from .sandbox import MAXIMA, JobLimits, SandboxError, SandboxResult
from .service import Jobs, JobView
from .spec import JobError, JobSpec, OutputDecl, read_code

__all__ = ["MAXIMA", "JobError", "JobLimits", "JobSpec", "JobView", "Jobs", "OutputDecl", "RunView",
           "SandboxError", "SandboxResult", "read_code"]
