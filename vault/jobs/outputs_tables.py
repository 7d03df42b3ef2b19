"""The tables and views of output review (:mod:`vault.jobs.outputs`): output sets, their
files (one row per output name, its current content), reviewers' votes on a file's content,
and prepared releases.

A vote is for one content (``sha256``) of one file: when a re-run brings a new content for
the same name, the votes on the old content stop counting (they stay in the table, and in
the audit log, as history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..catalog import Dataset, Release
from ..db import Base, UtcDateTime
from ..identities import IdentityRow, Lab

__all__ = [
    "FINAL_STATES", "REVIEW_STATES", "FileState", "FileView", "OutputFileRow", "OutputSetRow",
    "OutputSetView", "OutputState", "OutputVoteRow", "ReleaseConfirmationRow", "Vote", "VoteInfo",
]


class OutputState(StrEnum):
    """The states of an output set (the Airlock states)."""

    PENDING = "pending"                        # registered after a real-data run, not yet submitted
    SUBMITTED = "submitted"                    # waiting for reviewers
    PARTIALLY_REVIEWED = "partially_reviewed"  # some, not enough, reviewers voted on every file
    REVIEWED = "reviewed"                      # enough distinct reviewers voted on every file
    RETURNED = "returned"                      # sent back to the lab (changes requested)
    RELEASED = "released"                      # released: the lab may download the files
    REJECTED = "rejected"                      # final: nothing leaves
    WITHDRAWN = "withdrawn"                    # the lab withdrew it: nothing leaves


REVIEW_STATES = frozenset({OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED,
                           OutputState.REVIEWED})
"""The states in which reviewers vote."""

FINAL_STATES = frozenset({OutputState.RELEASED, OutputState.REJECTED, OutputState.WITHDRAWN})
"""The states nothing leaves (a new run of the job opens a new output set)."""


class Vote(StrEnum):
    """A reviewer's vote on one file's content."""

    APPROVE = "approve"
    CHANGES_REQUESTED = "changes_requested"
    REJECT = "reject"


class FileState(StrEnum):
    """Where one file stands: its set's state, narrowed by its own votes."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIALLY_REVIEWED = "partially_reviewed"
    REVIEWED = "reviewed"
    RETURNED = "returned"
    RELEASED = "released"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


# -- tables ----------------------------------------------------------------------------------

class OutputSetRow(Base):
    """The outputs of a job's real-data run(s), reviewed and released together."""

    __tablename__ = "output_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    run_id: Mapped[int] = mapped_column(Integer)  # the run whose outputs it holds now
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id"))
    submitter_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    state: Mapped[str] = mapped_column(String(24))
    round: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dataset: Mapped[Dataset] = relationship()
    release: Mapped[Release] = relationship()
    lab: Mapped[Lab] = relationship()
    submitter: Mapped[IdentityRow] = relationship()
    files: Mapped[list[OutputFileRow]] = relationship(back_populates="output_set",
                                                      order_by="OutputFileRow.name")


class OutputFileRow(Base):
    """One output (or log) file of a set: its current content, stored encrypted as object
    ``output-<id>-<content>/<name>`` of the dataset."""

    __tablename__ = "output_files"
    __table_args__ = (UniqueConstraint("set_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("output_sets.id"))
    name: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[int] = mapped_column(Integer, default=1)  # bumped at each new content
    run_id: Mapped[int] = mapped_column(Integer)              # the run that wrote this content
    gate_verdict: Mapped[str] = mapped_column(String(16))     # pass | warn | block
    gate_findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)  # the latest run did not write it
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    output_set: Mapped[OutputSetRow] = relationship(back_populates="files")


class OutputVoteRow(Base):
    """A reviewer's vote on one content of a file; changing one's vote updates the row."""

    __tablename__ = "output_votes"
    __table_args__ = (UniqueConstraint("file_id", "sha256", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("output_files.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    vote: Mapped[str] = mapped_column(String(24))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reviewer: Mapped[IdentityRow] = relationship()


class ReleaseConfirmationRow(Base):
    """A prepared release: the hash of its one-time code and of the contents it covers."""

    __tablename__ = "output_release_confirmations"
    __table_args__ = (UniqueConstraint("set_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("output_sets.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    code_sha256: Mapped[str] = mapped_column(String(64))
    contents_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


# -- views -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VoteInfo:
    """A vote as shown: who, on which content, what, and why."""

    reviewer: str
    sha256: str
    vote: Vote
    comment: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"reviewer": self.reviewer, "sha256": self.sha256, "vote": self.vote.value,
                "comment": self.comment, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class FileView:
    """One file of an output set as the lab and the reviewers see it: what it is, what the
    gate found (with context), and the votes on its current content."""

    name: str
    sha256: str
    size: int
    content: int
    run_id: int
    gate_verdict: str
    gate_findings: tuple[dict[str, Any], ...]
    state: FileState
    decision: str          # approved | changes_requested | rejected | blocked | undecided | withdrawn
    approvals: tuple[str, ...]
    votes: tuple[VoteInfo, ...]     # on the current content
    earlier_votes: int              # votes on earlier contents (reset by a change)
    withdrawn: bool
    gone: bool

    @property
    def blocked(self) -> bool:
        """Whether the gate blocked this file (it cannot be approved or released)."""
        return self.gate_verdict == "block"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"name": self.name, "sha256": self.sha256, "size": self.size,
                "content": self.content, "run_id": self.run_id,
                "gate": {"verdict": self.gate_verdict, "findings": list(self.gate_findings)},
                "state": self.state.value, "decision": self.decision,
                "approvals": list(self.approvals), "votes": [v.as_dict() for v in self.votes],
                "earlier_votes": self.earlier_votes, "withdrawn": self.withdrawn,
                "gone": self.gone}


@dataclass(frozen=True)
class OutputSetView:
    """An output set: whose job, which data, its state, and its files."""

    id: int
    job_id: int
    run_id: int
    dataset: str
    release: int
    lab: str
    submitter: str
    state: OutputState
    round: int
    required_approvals: int
    reviewers_done: tuple[str, ...]   # reviewers who voted on every live file's current content
    reason: str
    files: tuple[FileView, ...]
    created_at: datetime
    updated_at: datetime
    released_at: datetime | None
    released_by: str | None

    def file(self, name: str) -> FileView:
        """The file named ``name`` (KeyError naming the set's files otherwise)."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"output set {self.id} has no file {name!r}; its files: "
                       f"{[f.name for f in self.files]}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"id": self.id, "job_id": self.job_id, "run_id": self.run_id,
                "dataset": self.dataset, "release": self.release, "lab": self.lab,
                "submitter": self.submitter, "state": self.state.value, "round": self.round,
                "required_approvals": self.required_approvals,
                "reviewers_done": list(self.reviewers_done), "reason": self.reason,
                "files": [f.as_dict() for f in self.files],
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "released_at": self.released_at.isoformat() if self.released_at else None,
                "released_by": self.released_by}
