"""The clean room's tables (on the vault's :class:`~vault.db.Base`, so SQLite and
PostgreSQL alike): jobs, their reviewers' decisions and prepared approvals, and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..catalog import Dataset, Release
from ..db import Base, UtcDateTime
from ..identities import IdentityRow, Lab

__all__ = ["JobConfirmationRow", "JobDecisionRow", "JobRow", "JobRunRow"]


class JobRow(Base):
    """One version of a lab's job: its identity (``sha256``), its spec and review state."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("lab_id", "name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id"))
    submitter_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(24))
    round: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(Text, default="")
    superseded_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    dataset: Mapped[Dataset] = relationship()
    release: Mapped[Release] = relationship()
    lab: Mapped[Lab] = relationship()
    submitter: Mapped[IdentityRow] = relationship()


class JobDecisionRow(Base):
    """A reviewer's decision on a job in one round: approve, reject or request_changes."""

    __tablename__ = "job_decisions"
    __table_args__ = (UniqueConstraint("job_id", "round", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    round: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reviewer: Mapped[IdentityRow] = relationship()


class JobConfirmationRow(Base):
    """A prepared approval of a job: the hash of its one-time code."""

    __tablename__ = "job_confirmations"
    __table_args__ = (UniqueConstraint("job_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    round: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # the job's identity when prepared
    code_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class JobRunRow(Base):
    """One run of a job, on the mock release or on real data."""

    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(24))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    output_bytes: Mapped[int] = mapped_column(Integer, default=0)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    logs_kept: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    job: Mapped[JobRow] = relationship()
