"""Review before viewing: access requests, their review, and the grants they lead to.

A lab member requests access to a release, or to a subset of its episodes or streams, with
a purpose. The request moves through explicit states (:data:`TRANSITIONS`); any other
change is refused with a :class:`TransitionError` naming the state and what it allows::

    submitted ──start_review──> under_review ──approve (enough approvals)──> approved ──revoke──> revoked
        │                          │  │                                     (grant made)
        │                          │  └──reject (reason)──> rejected
        │                          └──request_changes (reason)──> changes_requested ──resubmit──> submitted
        └── withdraw (also from under_review and changes_requested) ──> withdrawn

Rules: the dataset's provider sets how many distinct reviewers must approve (1 or 2);
only reviewers appointed for the dataset review, never the requester and never a member
of the requesting lab; rejecting and requesting changes need a reason; approving takes two
calls (:meth:`Review.prepare_approval` gives a one-time code, :meth:`Review.confirm_approval`
records the approval with it), so no single stray call approves; a resubmitted request
starts a new round, without the approvals of the last. When enough approvals are in, the
request is approved and a :class:`GrantInfo` made: scoped to the release, episodes and
streams requested, expiring, revocable, and checked afresh on every
:meth:`Grants.check`.

Roles decide who may act (re-read from the database at each call, so a role taken away
counts at once); the scopes of the token the :class:`~vault.identities.Identity` came
with decide what it may be used for: ``requests`` for the lab's actions, ``reviews`` for
the reviewers' and for revoking, ``catalog:write`` for the review rules.

Every change calls ``on_event`` with an event dict (:func:`vault.db.make_event`) inside its
transaction, so the audit log records each one or the change does not happen.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, contains_eager, mapped_column, relationship

from .catalog import Catalog, Dataset, Release, dataset_row, release_row
from .db import (
    Base,
    ConfirmationError,
    EventHook,
    Forbidden,
    NotFound,
    ReviewError,
    TransitionError,
    UtcDateTime,
    make_event,
)
from .identities import (
    Identity,
    IdentityRow,
    Lab,
    Role,
    RoleGrant,
    RoleRow,
    identity_row,
    lab_row,
    roles_of,
)

__all__ = [
    "CONFIRMATION_LIFETIME", "MAX_GRANT_DURATION", "MAX_TEXT", "TRANSITIONS", "UNCHANGED", "Action",
    "DecisionInfo", "GrantInfo", "Grants", "RequestState", "RequestView", "Review", "Unchanged",
]

CONFIRMATION_LIFETIME = timedelta(minutes=10)
"""How long a prepared approval's code stays valid."""

MAX_GRANT_DURATION = timedelta(days=366)
"""The longest a grant may last."""

MAX_TEXT = 10_000
"""The longest purpose or reason, in characters."""


class Unchanged(Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED
"""An argument of :meth:`Review.resubmit` that keeps what the request had."""


class RequestState(StrEnum):
    """The states of an access request."""

    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"


class Action(StrEnum):
    """What may be done to a request."""

    START_REVIEW = "start_review"
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    RESUBMIT = "resubmit"
    REVOKE = "revoke"


S, A = RequestState, Action
TRANSITIONS: dict[RequestState, dict[Action, RequestState]] = {
    S.SUBMITTED: {A.START_REVIEW: S.UNDER_REVIEW, A.WITHDRAW: S.WITHDRAWN},
    # APPROVE leaves the request under review until enough distinct reviewers approved
    S.UNDER_REVIEW: {A.APPROVE: S.APPROVED, A.REQUEST_CHANGES: S.CHANGES_REQUESTED,
                     A.REJECT: S.REJECTED, A.WITHDRAW: S.WITHDRAWN},
    S.CHANGES_REQUESTED: {A.RESUBMIT: S.SUBMITTED, A.WITHDRAW: S.WITHDRAWN},
    S.APPROVED: {A.REVOKE: S.REVOKED},
    S.REJECTED: {},
    S.WITHDRAWN: {},
    S.REVOKED: {},
}
"""The state machine: for each state, the actions it allows and the state they lead to."""
del S, A


# -- tables ----------------------------------------------------------------------------------

class AccessRequestRow(Base):
    """A lab's request for access to a release (or a part of it)."""

    __tablename__ = "access_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    purpose: Mapped[str] = mapped_column(Text)
    episodes: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    streams: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    duration_s: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(24))
    round: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    dataset: Mapped[Dataset] = relationship()
    release: Mapped[Release] = relationship()
    lab: Mapped[Lab] = relationship()
    requester: Mapped[IdentityRow] = relationship()


class DecisionRow(Base):
    """A reviewer's decision in one round of a request: approve, reject or changes."""

    __tablename__ = "review_decisions"
    __table_args__ = (UniqueConstraint("request_id", "round", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    round: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reviewer: Mapped[IdentityRow] = relationship()


class ConfirmationRow(Base):
    """A prepared approval: the hash of its one-time code, for one reviewer and round."""

    __tablename__ = "approval_confirmations"
    __table_args__ = (UniqueConstraint("request_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    round: Mapped[int] = mapped_column(Integer)
    code_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class GrantRow(Base):
    """Access granted to a lab by an approved request (one grant per request)."""

    __tablename__ = "grants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id"), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id"))
    episodes: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    streams: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoke_reason: Mapped[str] = mapped_column(Text, default="")
    dataset: Mapped[Dataset] = relationship()
    release: Mapped[Release] = relationship()
    lab: Mapped[Lab] = relationship()


# -- views -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecisionInfo:
    """A recorded decision."""

    reviewer: str
    round: int
    decision: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class GrantInfo:
    """A grant: which lab may read which release, episodes (``None``: all) and streams
    (``None``: all), until when; revoked or not."""

    id: int
    request_id: int
    dataset: str
    release: int
    lab: str
    episodes: tuple[int, ...] | None
    streams: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str

    def covers(self, episode: int | None, stream: str | None) -> bool:
        """Whether the grant's scope holds the episode and stream (``None``: all of them)."""
        ok_ep = self.episodes is None or (episode is not None and episode in self.episodes)
        ok_st = self.streams is None or (stream is not None and stream in self.streams)
        return ok_ep and ok_st

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"id": self.id, "request_id": self.request_id, "dataset": self.dataset,
                "release": self.release, "lab": self.lab,
                "episodes": None if self.episodes is None else list(self.episodes),
                "streams": None if self.streams is None else list(self.streams),
                "created_at": self.created_at.isoformat(), "expires_at": self.expires_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "revoked_by": self.revoked_by, "revoke_reason": self.revoke_reason}


@dataclass(frozen=True)
class RequestView:
    """An access request as the lab and its reviewers see it."""

    id: int
    dataset: str
    release: int
    lab: str
    requester: str
    purpose: str
    episodes: tuple[int, ...] | None
    streams: tuple[str, ...] | None
    duration: timedelta
    state: RequestState
    round: int
    required_approvals: int
    approvals: tuple[str, ...]
    decisions: tuple[DecisionInfo, ...]
    reason: str
    grant_id: int | None
    created_at: datetime
    updated_at: datetime


# -- the workflow ----------------------------------------------------------------------------

class Review:
    """The review workflow over a catalog; ``on_event`` receives every change's event."""

    def __init__(self, catalog: Catalog, on_event: EventHook) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self._on_event = on_event
        self.grants = Grants(self)

    # -- the lab's side ------------------------------------------------------------------------
    def submit(self, by: Identity, dataset: str, release: int, *, purpose: str,
               lab: str | None = None, episodes: Iterable[int] | None = None,
               streams: Iterable[str] | None = None,
               duration: timedelta = timedelta(days=30)) -> RequestView:
        """A lab member requests access for ``lab`` (default: the member's only lab) to a
        release version, or to some of its ``episodes`` (indices) or ``streams``, for
        ``duration`` from approval."""
        with self.db.write() as s:
            _need_scope(by, "requests", "request access")
            actor = identity_row(s, by.name)
            labs = sorted(g.lab for g in roles_of(s, actor.id)
                          if g.role is Role.LAB_MEMBER and g.lab)
            if lab is None:
                if len(labs) != 1:
                    raise ReviewError(f"{by.name!r} is a member of {labs or 'no lab'}; name the "
                                      "lab the request is for")
                lab = labs[0]
            if lab not in labs:
                raise Forbidden(f"{by.name!r} is not a member of lab {lab!r} and may not "
                                "request access for it")
            rel = release_row(s, dataset, release)
            now = self.db.clock()
            req = AccessRequestRow(dataset=rel.dataset, release=rel, lab=lab_row(s, lab),
                                   requester=actor, state=RequestState.SUBMITTED.value, round=1,
                                   created_at=now, updated_at=now)
            _set_scope(req, rel, purpose, episodes, streams, duration)
            s.add(req)
            s.flush()
            self._emit(by, "request_submitted", req, **_scope_details(req))
            return _view(s, req)

    def withdraw(self, request_id: int, by: Identity) -> RequestView:
        """The lab withdraws its request (a member of the requesting lab)."""
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            new = _transition(req, Action.WITHDRAW)
            self._lab_member(s, req, by, "withdraw")
            return self._move(s, req, new, by, "request_withdrawn")

    def resubmit(self, request_id: int, by: Identity, *, purpose: str | None = None,
                 episodes: Iterable[int] | None | Unchanged = UNCHANGED,
                 streams: Iterable[str] | None | Unchanged = UNCHANGED,
                 duration: timedelta | None = None) -> RequestView:
        """The lab answers a changes-requested decision: the request, changed as given
        (unchanged where an argument is left out; ``None`` episodes or streams ask for all),
        goes back to ``submitted`` in a new round, without the approvals of the last."""
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            new = _transition(req, Action.RESUBMIT)
            self._lab_member(s, req, by, "resubmit")
            _set_scope(req, req.release, req.purpose if purpose is None else purpose,
                       req.episodes if episodes is UNCHANGED else episodes,
                       req.streams if streams is UNCHANGED else streams,
                       timedelta(seconds=req.duration_s) if duration is None else duration)
            req.round += 1
            s.execute(delete(ConfirmationRow).where(
                ConfirmationRow.request_id == req.id))
            return self._move(s, req, new, by, "request_resubmitted", round=req.round,
                              **_scope_details(req))

    # -- the reviewers' side -------------------------------------------------------------------
    def start_review(self, request_id: int, by: Identity) -> RequestView:
        """A reviewer takes up a submitted request."""
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            new = _transition(req, Action.START_REVIEW)
            self._reviewer(s, req, by)
            return self._move(s, req, new, by, "review_started", round=req.round)

    def request_changes(self, request_id: int, by: Identity, reason: str) -> RequestView:
        """A reviewer sends the request back to the lab, saying what to change."""
        return self._decide(request_id, by, Action.REQUEST_CHANGES, reason, "changes_requested")

    def reject(self, request_id: int, by: Identity, reason: str) -> RequestView:
        """A reviewer rejects the request, saying why (final)."""
        return self._decide(request_id, by, Action.REJECT, reason, "request_rejected")

    def prepare_approval(self, request_id: int, by: Identity) -> str:
        """The first step of an approval: a one-time code, valid for
        :data:`CONFIRMATION_LIFETIME` and for this round of the request only, that
        :meth:`confirm_approval` needs. Preparing again replaces the code."""
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            _transition(req, Action.APPROVE)
            reviewer = self._reviewer(s, req, by)
            if _decision(s, req, reviewer) is not None:
                raise ReviewError(f"request {req.id}: {by.name!r} already decided in round "
                                  f"{req.round}")
            code = secrets.token_hex(4).upper()
            code = f"{code[:4]}-{code[4:]}"
            expires = self.db.clock() + CONFIRMATION_LIFETIME
            row = s.scalars(select(ConfirmationRow).where(
                ConfirmationRow.request_id == req.id,
                ConfirmationRow.reviewer_id == reviewer.id)).first()
            if row is None:
                row = ConfirmationRow(request_id=req.id, reviewer_id=reviewer.id)
                s.add(row)
            row.round, row.code_sha256, row.expires_at = req.round, _code_hash(code), expires
            s.flush()
            self._emit(by, "approval_prepared", req, round=req.round,
                       expires_at=expires.isoformat())
            return code

    def confirm_approval(self, request_id: int, by: Identity, code: str) -> RequestView:
        """The second step: records the reviewer's approval if ``code`` is the one
        :meth:`prepare_approval` gave this reviewer for this round (a wrong code cancels
        the prepared approval). With enough distinct approvals the request is approved and
        its grant made."""
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            new = _transition(req, Action.APPROVE)
            reviewer = self._reviewer(s, req, by)
            pending = s.scalars(select(ConfirmationRow).where(
                ConfirmationRow.request_id == req.id,
                ConfirmationRow.reviewer_id == reviewer.id)).first()
            if pending is None:
                raise ConfirmationError(f"request {req.id}: {by.name!r} has no prepared approval; "
                                        "call prepare_approval first")
            problem = ""
            if pending.round != req.round:
                problem = (f"the code was prepared for round {pending.round}; the request has "
                           f"changed since (round {req.round})")
            elif self.db.clock() >= pending.expires_at:
                problem = f"the code expired at {pending.expires_at.isoformat()}"
            elif not hmac.compare_digest(pending.code_sha256.encode(),
                                         _code_hash(code).encode()):
                problem = "the code is wrong"
            s.delete(pending)
            s.flush()
            if not problem:
                return self._approve(s, req, reviewer, new, by)
            # the cancelled confirmation commits (one try per code); then the error
            self._emit(by, "approval_confirmation_failed", req, reason=problem)
        raise ConfirmationError(f"request {req.id}: {problem}; prepare the approval again")

    def _approve(self, s: Session, req: AccessRequestRow, reviewer: IdentityRow,
                 new: RequestState, by: Identity) -> RequestView:
        if _decision(s, req, reviewer) is not None:
            raise ReviewError(f"request {req.id}: {by.name!r} already decided in round "
                              f"{req.round}")
        s.add(DecisionRow(request_id=req.id, reviewer=reviewer, round=req.round,
                          decision="approve", created_at=self.db.clock()))
        s.flush()
        approvals = _approvals(s, req)
        required = req.dataset.required_approvals
        if len(approvals) < required:
            self._emit(by, "approval_recorded", req, round=req.round,
                       approvals=list(approvals), required=required)
            return _view(s, req)
        now = self.db.clock()
        grant = GrantRow(request_id=req.id, dataset=req.dataset, release=req.release,
                         lab=req.lab, episodes=req.episodes, streams=req.streams,
                         created_at=now, expires_at=now + timedelta(seconds=req.duration_s))
        s.add(grant)
        view = self._move(s, req, new, by, "request_approved", round=req.round,
                          approvals=list(approvals), required=required)
        self._emit(by, "grant_created", req, grant=grant.id,
                   expires_at=grant.expires_at.isoformat(), **_scope_details(req))
        return view

    def revoke(self, request_id: int, by: Identity, reason: str) -> RequestView:
        """Revoke an approved request and its grant, for good (a provider of the dataset,
        one of its reviewers, or an admin); effective on the grant's next check."""
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            new = _transition(req, Action.REVOKE)
            _need_reason(req, Action.REVOKE, reason)
            _need_scope(by, "reviews", "revoke access")
            actor = identity_row(s, by.name)
            roles = roles_of(s, actor.id)
            ds = req.dataset
            if not (RoleGrant(Role.PROVIDER, provider=ds.provider.name) in roles
                    or RoleGrant(Role.REVIEWER, dataset=ds.name) in roles
                    or any(r.role is Role.ADMIN for r in roles)):
                raise Forbidden(f"{by.name!r} may not revoke access to dataset {ds.name!r}: only "
                                "its provider, its reviewers or an admin may")
            grant = s.scalars(select(GrantRow).where(GrantRow.request_id == req.id)).one()
            grant.revoked_at, grant.revoked_by, grant.revoke_reason = (self.db.clock(), by.name,
                                                                        reason.strip())
            req.reason = reason.strip()
            view = self._move(s, req, new, by, "request_revoked", reason=reason.strip())
            self._emit(by, "grant_revoked", req, grant=grant.id, reason=reason.strip())
            return view

    # -- the provider's side -------------------------------------------------------------------
    def set_required_approvals(self, dataset: str, n: int, by: Identity) -> int:
        """The provider of ``dataset`` (or an admin) sets how many distinct reviewers must
        approve its requests (1 or 2); counted at each approval from then on."""
        if n not in (1, 2):
            raise ReviewError(f"dataset {dataset!r}: required approvals must be 1 or 2, not {n!r}")
        with self.db.write() as s:
            ds = dataset_row(s, dataset, lock=True)
            _need_scope(by, "catalog:write", "set a dataset's review rules")
            roles = roles_of(s, identity_row(s, by.name).id)
            if RoleGrant(Role.PROVIDER, provider=ds.provider.name) not in roles and not any(
                    r.role is Role.ADMIN for r in roles):
                raise Forbidden(f"{by.name!r} may not set the review rules of dataset {dataset!r}: "
                                f"only a provider of {ds.provider.name!r} or an admin may")
            old, ds.required_approvals = ds.required_approvals, n
            s.flush()
            self._on_event(make_event(by.name, "required_approvals_set", dataset, old=old, new=n))
            return n

    # -- reading -------------------------------------------------------------------------------
    def get(self, request_id: int) -> RequestView:
        """A request by id."""
        with self.db.read() as s:
            return _view(s, _request(s, request_id))

    def list_requests(self, *, dataset: str | None = None, lab: str | None = None,
                      state: RequestState | str | None = None) -> list[RequestView]:
        """Requests, oldest first, filtered by dataset, lab and state."""
        with self.db.read() as s:
            q = select(AccessRequestRow).order_by(AccessRequestRow.id)
            if dataset is not None:
                q = q.where(AccessRequestRow.dataset_id == dataset_row(s, dataset).id)
            if lab is not None:
                q = q.where(AccessRequestRow.lab_id == lab_row(s, lab).id)
            if state is not None:
                q = q.where(AccessRequestRow.state == _state(state).value)
            return [_view(s, r) for r in s.scalars(q)]

    def pending(self, reviewer: Identity) -> list[RequestView]:
        """What waits for this reviewer: submitted and under-review requests of the
        datasets it reviews that it may review and has not decided in their current round."""
        with self.db.read() as s:
            actor = identity_row(s, reviewer.name)
            roles = roles_of(s, actor.id)
            datasets = sorted(g.dataset for g in roles if g.role is Role.REVIEWER and g.dataset)
            own_labs = {g.lab for g in roles if g.role is Role.LAB_MEMBER}
            if not datasets:
                return []
            q = (select(AccessRequestRow).join(Dataset)
                 .where(Dataset.name.in_(datasets),
                        AccessRequestRow.state.in_([RequestState.SUBMITTED.value,
                                                    RequestState.UNDER_REVIEW.value]))
                 .order_by(AccessRequestRow.id))
            return [_view(s, r) for r in s.scalars(q)
                    if r.requester_id != actor.id and r.lab.name not in own_labs
                    and _decision(s, r, actor) is None]

    # -- internals -----------------------------------------------------------------------------
    def _decide(self, request_id: int, by: Identity, action: Action, reason: str,
                event: str) -> RequestView:
        with self.db.write() as s:
            req = _request(s, request_id, lock=True)
            new = _transition(req, action)
            reviewer = self._reviewer(s, req, by)
            _need_reason(req, action, reason)
            if _decision(s, req, reviewer) is not None:
                raise ReviewError(f"request {req.id}: {by.name!r} already decided in round "
                                  f"{req.round}")
            s.add(DecisionRow(request_id=req.id, reviewer=reviewer, round=req.round,
                              decision=action.value, reason=reason.strip(),
                              created_at=self.db.clock()))
            req.reason = reason.strip()
            s.execute(delete(ConfirmationRow).where(
                ConfirmationRow.request_id == req.id))
            return self._move(s, req, new, by, event, round=req.round, reason=reason.strip())

    def _move(self, s: Session, req: AccessRequestRow, new: RequestState, by: Identity,
              event: str, **details: Any) -> RequestView:
        old = req.state
        req.state = new.value
        req.updated_at = self.db.clock()
        s.flush()
        self._emit(by, event, req, **({"from": old, "to": new.value} | details))
        return _view(s, req)

    def _emit(self, by: Identity, action: str, req: AccessRequestRow, **details: Any) -> None:
        self._on_event(make_event(by.name, action, req.dataset.name,
                                  **({"request": req.id, "release": req.release.version,
                                      "lab": req.lab.name} | details)))

    def _reviewer(self, s: Session, req: AccessRequestRow, by: Identity) -> IdentityRow:
        _need_scope(by, "reviews", "review")
        actor = identity_row(s, by.name)
        roles = roles_of(s, actor.id)
        if RoleGrant(Role.REVIEWER, dataset=req.dataset.name) not in roles:
            raise Forbidden(f"request {req.id}: {by.name!r} is not a reviewer of dataset "
                            f"{req.dataset.name!r}")
        if actor.id == req.requester_id:
            raise Forbidden(f"request {req.id}: {by.name!r} made this request; nobody reviews "
                            "their own request")
        if RoleGrant(Role.LAB_MEMBER, lab=req.lab.name) in roles:
            raise Forbidden(f"request {req.id}: {by.name!r} is a member of the requesting lab "
                            f"{req.lab.name!r} and may not review its request")
        return actor

    def _lab_member(self, s: Session, req: AccessRequestRow, by: Identity, what: str) -> None:
        _need_scope(by, "requests", f"{what} a request")
        roles = roles_of(s, identity_row(s, by.name).id)
        if RoleGrant(Role.LAB_MEMBER, lab=req.lab.name) not in roles:
            raise Forbidden(f"request {req.id}: only a member of lab {req.lab.name!r} may {what} "
                            f"it; {by.name!r} is not")


class Grants:
    """The grants made by a :class:`Review`; every check reads the database afresh, so a
    revocation or an expiry takes effect on the next check."""

    def __init__(self, review: Review) -> None:
        self._review = review
        self.db = review.db

    def check(self, identity: Identity, dataset: str, release: int, episode: int | None = None,
              stream: str | None = None) -> GrantInfo:
        """The grant that lets ``identity`` (a member of the granted lab, now) read
        ``episode`` of ``stream`` of a release version; ``None`` for either asks for all
        of them. :class:`Forbidden`, saying why, when no live grant covers it."""
        where = (f"dataset {dataset!r} release {release}"
                 + (f" episode {episode}" if episode is not None else " (all episodes)")
                 + (f" stream {stream!r}" if stream is not None else " (all streams)"))
        now = self.db.clock()
        with self.db.read() as s:
            # the common case in one query: the live grants of the identity's labs now
            live = s.scalars(
                select(GrantRow)
                .join(GrantRow.dataset).join(GrantRow.release).join(GrantRow.lab)
                .join(RoleRow, (RoleRow.lab_id == Lab.id) & (RoleRow.role == Role.LAB_MEMBER.value))
                .join(IdentityRow, RoleRow.identity_id == IdentityRow.id)
                .where(Dataset.name == dataset, Release.version == release,
                       IdentityRow.name == identity.name, GrantRow.revoked_at.is_(None),
                       GrantRow.expires_at > now)
                .options(contains_eager(GrantRow.dataset), contains_eager(GrantRow.release),
                         contains_eager(GrantRow.lab))
                .order_by(GrantRow.id))
            for row in live.unique():
                info = _grant_info(row)
                if info.covers(episode, stream):
                    return info
            # refused: say why
            rel = release_row(s, dataset, release)
            roles = roles_of(s, identity_row(s, identity.name).id)
            labs = sorted(g.lab for g in roles if g.role is Role.LAB_MEMBER and g.lab)
            rows = list(s.scalars(select(GrantRow).join(Lab).where(
                GrantRow.release_id == rel.id, Lab.name.in_(labs)).order_by(GrantRow.id)))
            grants = [_grant_info(g) for g in rows]
        covering = [g for g in grants if g.covers(episode, stream)]
        for g in covering:
            if g.revoked_at is None and now < g.expires_at:
                return g
        if not labs:
            raise Forbidden(f"{identity.name!r} is a member of no lab and holds no grant for "
                            f"{where}")
        if not grants:
            raise Forbidden(f"no grant of lab(s) {labs} for {where}")
        if not covering:
            ids = ", ".join(str(g.id) for g in grants)
            raise Forbidden(f"the grants of lab(s) {labs} ({ids}) do not cover {where}")
        g = covering[-1]
        if g.revoked_at is not None:
            raise Forbidden(f"grant {g.id} for {where} was revoked at {g.revoked_at.isoformat()}: "
                            f"{g.revoke_reason}")
        raise Forbidden(f"grant {g.id} for {where} expired at {g.expires_at.isoformat()}")

    def get(self, grant_id: int) -> GrantInfo:
        """A grant by id."""
        with self.db.read() as s:
            g = s.get(GrantRow, grant_id)
            if g is None:
                raise NotFound(f"no grant {grant_id}")
            return _grant_info(g)

    def list(self, *, lab: str | None = None, dataset: str | None = None,
             live: bool = False) -> list[GrantInfo]:
        """Grants, oldest first; ``live``: only those neither revoked nor expired."""
        with self.db.read() as s:
            q = select(GrantRow).order_by(GrantRow.id)
            if lab is not None:
                q = q.where(GrantRow.lab_id == lab_row(s, lab).id)
            if dataset is not None:
                q = q.where(GrantRow.dataset_id == dataset_row(s, dataset).id)
            out = [_grant_info(g) for g in s.scalars(q)]
        now = self.db.clock()
        return [g for g in out if not live or (g.revoked_at is None and now < g.expires_at)]

    def revoke(self, grant_id: int, by: Identity, reason: str) -> GrantInfo:
        """Revoke a grant (and its request): :meth:`Review.revoke`."""
        self._review.revoke(self.get(grant_id).request_id, by, reason)
        return self.get(grant_id)


# -- helpers ---------------------------------------------------------------------------------

def _state(value: RequestState | str) -> RequestState:
    try:
        return RequestState(value)
    except ValueError:
        raise ReviewError(f"unknown request state {value!r}; states: "
                          f"{[x.value for x in RequestState]}") from None


def _transition(req: AccessRequestRow, action: Action) -> RequestState:
    state = RequestState(req.state)
    allowed = TRANSITIONS[state]
    if action not in allowed:
        what = ", ".join(a.value for a in allowed) or "nothing (it is final)"
        raise TransitionError(f"request {req.id} is {state.value}: {action.value} is not allowed "
                              f"(a {state.value} request allows {what})")
    return allowed[action]


def _need_scope(by: Identity, scope: str, what: str) -> None:
    """Roles say who may act; the token's scopes what it may be used for."""
    if scope not in by.scopes:
        raise Forbidden(f"{by.name!r}: token {by.token_id} does not carry the scope {scope!r} "
                        f"needed to {what}")


def _need_reason(req: AccessRequestRow, action: Action, reason: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise ReviewError(f"request {req.id}: {action.value} needs a reason (what the lab should "
                          "know)")
    if len(reason) > MAX_TEXT:
        raise ReviewError(f"request {req.id}: the reason is {len(reason)} characters; at most "
                          f"{MAX_TEXT}")


def _request(s: Session, request_id: int, *, lock: bool = False) -> AccessRequestRow:
    q = select(AccessRequestRow).where(AccessRequestRow.id == request_id)
    req = s.scalars(q.with_for_update() if lock else q).first()
    if req is None:
        raise NotFound(f"no access request {request_id}")
    return req


def _decision(s: Session, req: AccessRequestRow, reviewer: IdentityRow) -> DecisionRow | None:
    return s.scalars(select(DecisionRow).where(
        DecisionRow.request_id == req.id, DecisionRow.round == req.round,
        DecisionRow.reviewer_id == reviewer.id)).first()


def _approvals(s: Session, req: AccessRequestRow) -> tuple[str, ...]:
    rows = s.scalars(select(DecisionRow).where(
        DecisionRow.request_id == req.id, DecisionRow.round == req.round,
        DecisionRow.decision == "approve").order_by(DecisionRow.id))
    return tuple(dict.fromkeys(r.reviewer.name for r in rows))


def _code_hash(code: str) -> str:
    norm = code.strip().upper().replace("-", "") if isinstance(code, str) else ""
    return hashlib.sha256(norm.encode()).hexdigest()


def _set_scope(req: AccessRequestRow, rel: Release, purpose: str,
               episodes: Iterable[int] | None, streams: Iterable[str] | None,
               duration: timedelta) -> None:
    where = f"dataset {rel.dataset.name!r} release {rel.version}"
    if not isinstance(purpose, str) or not purpose.strip():
        raise ReviewError(f"a request for {where} needs a purpose (what the data is for)")
    if len(purpose) > MAX_TEXT:
        raise ReviewError(f"a request for {where}: the purpose is {len(purpose)} characters; at "
                          f"most {MAX_TEXT}")
    eps = None
    if episodes is not None:
        eps = sorted(set(episodes))
        bad = [e for e in eps if not isinstance(e, int) or isinstance(e, bool)
               or not 0 <= e < rel.episode_count]
        if bad or not eps:
            raise ReviewError(f"{where} has episodes 0..{rel.episode_count - 1}; requested "
                              f"{bad or 'none'}")
    sts = None
    if streams is not None:
        names = [st["name"] for st in rel.streams]
        sts = sorted(set(streams))
        bad_s = [x for x in sts if x not in names]
        if bad_s or not sts:
            raise ReviewError(f"{where} has no stream(s) {bad_s or 'at all requested'}; its "
                              f"streams: {names}")
    if not timedelta(0) < duration <= MAX_GRANT_DURATION:
        raise ReviewError(f"a request for {where}: duration {duration} must be positive and at "
                          f"most {MAX_GRANT_DURATION.days} days")
    req.purpose, req.episodes, req.streams = purpose.strip(), eps, sts
    req.duration_s = int(duration.total_seconds())


def _scope_details(req: AccessRequestRow) -> dict[str, Any]:
    return {"episodes": req.episodes, "streams": req.streams, "duration_s": req.duration_s,
            "purpose": req.purpose}


def _grant_info(g: GrantRow) -> GrantInfo:
    return GrantInfo(id=g.id, request_id=g.request_id, dataset=g.dataset.name,
                     release=g.release.version, lab=g.lab.name,
                     episodes=None if g.episodes is None else tuple(g.episodes),
                     streams=None if g.streams is None else tuple(g.streams),
                     created_at=g.created_at, expires_at=g.expires_at, revoked_at=g.revoked_at,
                     revoked_by=g.revoked_by, revoke_reason=g.revoke_reason)


def _view(s: Session, req: AccessRequestRow) -> RequestView:
    decisions = tuple(DecisionInfo(d.reviewer.name, d.round, d.decision, d.reason, d.created_at)
                      for d in s.scalars(select(DecisionRow).where(
                          DecisionRow.request_id == req.id).order_by(DecisionRow.id)))
    grant = s.scalars(select(GrantRow.id).where(GrantRow.request_id == req.id)).first()
    return RequestView(id=req.id, dataset=req.dataset.name, release=req.release.version,
                       lab=req.lab.name, requester=req.requester.name, purpose=req.purpose,
                       episodes=None if req.episodes is None else tuple(req.episodes),
                       streams=None if req.streams is None else tuple(req.streams),
                       duration=timedelta(seconds=req.duration_s),
                       state=RequestState(req.state), round=req.round,
                       required_approvals=req.dataset.required_approvals,
                       approvals=tuple(d.reviewer for d in decisions
                                       if d.round == req.round and d.decision == "approve"),
                       decisions=decisions, reason=req.reason, grant_id=grant,
                       created_at=req.created_at, updated_at=req.updated_at)
