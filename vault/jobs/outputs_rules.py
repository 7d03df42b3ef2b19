"""Where an output set stands, read from its rows: which votes count (those on a file's
current content), each file's decision, who has voted on every file, whether the set may be
released (and the hash of what would be), who may see it, and the views built from it."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog import Dataset
from ..db import NotFound, ReviewError, TransitionError
from ..identities import Role, RoleGrant
from .outputs_tables import (
    REVIEW_STATES,
    FileState,
    FileView,
    OutputFileRow,
    OutputSetRow,
    OutputSetView,
    OutputState,
    OutputVoteRow,
    Vote,
    VoteInfo,
)

__all__ = ["decision_of", "file_row", "file_view", "findings_summary", "live_files", "releasable",
           "reviewers_done", "sees", "set_row", "set_view", "votes_of"]


def set_row(s: Session, output_id: int, *, lock: bool = False) -> OutputSetRow:
    q = select(OutputSetRow).where(OutputSetRow.id == output_id)
    row = s.scalars(q.with_for_update() if lock else q).first()
    if row is None:
        raise NotFound(f"no output set {output_id}")
    return row


def file_row(row: OutputSetRow, name: str) -> OutputFileRow:
    for f in row.files:
        if f.name == name:
            return f
    raise NotFound(f"output set {row.id} has no file {name!r}; its files: "
                   f"{[f.name for f in row.files]}")


def live_files(row: OutputSetRow) -> list[OutputFileRow]:
    return [f for f in row.files if not f.withdrawn and not f.gone]


def votes_of(s: Session, f: OutputFileRow) -> list[OutputVoteRow]:
    return list(s.scalars(select(OutputVoteRow).where(OutputVoteRow.file_id == f.id)
                          .order_by(OutputVoteRow.id)))


def reviewers_done(s: Session, row: OutputSetRow) -> tuple[str, ...]:
    live = live_files(row)
    per_file = [{v.reviewer.name for v in votes_of(s, f) if v.sha256 == f.sha256} for f in live]
    if not per_file:
        return ()
    return tuple(sorted(set.intersection(*per_file)))


def decision_of(f: OutputFileRow, current: list[OutputVoteRow], need: int) -> str:
    if f.withdrawn:
        return "withdrawn"
    if f.gate_verdict == "block":
        return "blocked"
    kinds = {v.vote for v in current}
    if Vote.REJECT.value in kinds:
        return "rejected"
    if Vote.CHANGES_REQUESTED.value in kinds:
        return "changes_requested"
    if sum(v.vote == Vote.APPROVE.value for v in current) >= need:
        return "approved"
    return "undecided"


def releasable(s: Session, row: OutputSetRow) -> str:
    """The hash of the live files' names and contents when every one may be released;
    otherwise :class:`ReviewError` or :class:`TransitionError` naming what stops it."""
    state = OutputState(row.state)
    if state is not OutputState.REVIEWED:
        raise TransitionError(f"output set {row.id} is {state.value}: only a reviewed set (every "
                              f"file voted on by {row.dataset.required_approvals} reviewer(s)) "
                              "can be released")
    live = live_files(row)
    if not live:
        raise ReviewError(f"output set {row.id} has no file to release")
    need = row.dataset.required_approvals
    for f in live:
        votes = votes_of(s, f)
        current = [v for v in votes if v.sha256 == f.sha256]
        decision = decision_of(f, current, need)
        if decision == "approved":
            continue
        if decision == "blocked":
            raise ReviewError(f"output set {row.id} file {f.name!r} was blocked by the output gate "
                              f"({findings_summary(f)}); a blocked file is never released")
        earlier = sorted({v.sha256[:16] for v in votes if v.sha256 != f.sha256})
        changed = (f"; it changed after review (votes were on content {', '.join(earlier)}..., "
                   f"it is now {f.sha256[:16]}...)" if earlier else "")
        approvals = sum(v.vote == Vote.APPROVE.value for v in current)
        raise ReviewError(f"output set {row.id} file {f.name!r} is not approved ({decision}: "
                          f"{approvals} of {need} approvals on its current content{changed}); "
                          "not released")
    digest = hashlib.sha256()
    for f in sorted(live, key=lambda x: x.name):
        digest.update(f"{f.name}\0{f.sha256}\n".encode())
    return digest.hexdigest()


def findings_summary(f: OutputFileRow) -> str:
    msgs = [str(x.get("message", x.get("kind", "?"))) for x in f.gate_findings[:3]]
    more = f" and {len(f.gate_findings) - 3} more" if len(f.gate_findings) > 3 else ""
    return "; ".join(msgs) + more if msgs else "no findings given"


def sees(row: OutputSetRow, roles: frozenset[RoleGrant]) -> bool:
    """Whether an identity holding ``roles`` may see the set: a member of its lab, an
    admin, or (once submitted) a reviewer or the provider of its dataset."""
    ds: Dataset = row.dataset
    if any(r.role is Role.ADMIN for r in roles) or RoleGrant(Role.LAB_MEMBER, lab=row.lab.name) in roles:
        return True
    if OutputState(row.state) is OutputState.PENDING:
        return False
    return (RoleGrant(Role.REVIEWER, dataset=ds.name) in roles
            or RoleGrant(Role.PROVIDER, provider=ds.provider.name) in roles)


def _file_state(row: OutputSetRow, f: OutputFileRow, voters: int) -> FileState:
    state = OutputState(row.state)
    if f.withdrawn or f.gone or state is OutputState.WITHDRAWN:
        return FileState.WITHDRAWN
    if state not in REVIEW_STATES:
        return FileState(state.value)
    need = row.dataset.required_approvals
    return (FileState.SUBMITTED if voters == 0 else FileState.PARTIALLY_REVIEWED
            if voters < need else FileState.REVIEWED)


def file_view(s: Session, row: OutputSetRow, f: OutputFileRow) -> FileView:
    votes = votes_of(s, f)
    current = [v for v in votes if v.sha256 == f.sha256]
    need = row.dataset.required_approvals
    return FileView(
        name=f.name, sha256=f.sha256, size=f.size, content=f.content, run_id=f.run_id,
        gate_verdict=f.gate_verdict, gate_findings=tuple(f.gate_findings),
        state=_file_state(row, f, len({v.reviewer_id for v in current})),
        decision=decision_of(f, current, need),
        approvals=tuple(v.reviewer.name for v in current if v.vote == Vote.APPROVE.value),
        votes=tuple(VoteInfo(v.reviewer.name, v.sha256, Vote(v.vote), v.comment, v.created_at)
                    for v in current),
        earlier_votes=len(votes) - len(current), withdrawn=f.withdrawn, gone=f.gone)


def set_view(s: Session, row: OutputSetRow) -> OutputSetView:
    return OutputSetView(
        id=row.id, job_id=row.job_id, run_id=row.run_id, dataset=row.dataset.name,
        release=row.release.version, lab=row.lab.name, submitter=row.submitter.name,
        state=OutputState(row.state), round=row.round,
        required_approvals=row.dataset.required_approvals,
        reviewers_done=reviewers_done(s, row), reason=row.reason,
        files=tuple(file_view(s, row, f) for f in row.files), created_at=row.created_at,
        updated_at=row.updated_at, released_at=row.released_at, released_by=row.released_by)
