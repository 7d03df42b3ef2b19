"""The fingerprint tables, on the vault's database (SQLite or PostgreSQL): which datasets
their provider lets be exported, and every export made (whose pattern a leaked copy is
correlated against)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Engine, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UtcDateTime

__all__ = ["ExportRow", "PolicyRow", "create_tables"]


class PolicyRow(Base):
    """A dataset's export policy: exportable or not, who set it and when (no row: not
    exportable)."""

    __tablename__ = "fingerprint_policy"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    exportable: Mapped[bool] = mapped_column(Boolean)
    set_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ExportRow(Base):
    """One fingerprinted copy: to which lab (the recipient), of which release, by whom,
    under which grant (one copy per grant), and the content hash of the copy as made."""

    __tablename__ = "fingerprint_exports"
    __table_args__ = (UniqueConstraint("export_id"), UniqueConstraint("grant_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    export_id: Mapped[str] = mapped_column(String(32))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    release: Mapped[int] = mapped_column(Integer)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id"))
    requested_by: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    release_sha256: Mapped[str] = mapped_column(String(64), default="")
    frames: Mapped[int] = mapped_column(Integer, default=0)
    amplitude: Mapped[float] = mapped_column(Float)
    stored: Mapped[bool] = mapped_column(Boolean, default=False)


def create_tables(engine: Engine) -> None:
    """Create the fingerprint tables where they are missing (the vault's own tables exist)."""
    Base.metadata.create_all(engine, tables=[PolicyRow.__table__, ExportRow.__table__])  # type: ignore[list-item]
