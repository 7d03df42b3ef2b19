"""Identities, roles, labs and API tokens.

Roles (:class:`Role`): a **provider** acts for a provider company; a **reviewer** is
appointed by a provider for one of its datasets; a **curator** imports a provider's
releases; a **lab member** belongs to a lab and requests access for it; an **auditor**
reads the audit log (of one provider, or of all); an **admin** runs the vault.

API tokens (``dfv1_<token id>_<secret>``, 256 bits of secret) carry scopes
(:data:`SCOPES`) and an expiry. Only the token's SHA-256 is stored (a high-entropy random
secret needs no slow hash); a presented token is looked up by its public id and its hash
compared in constant time (``hmac.compare_digest``). The token itself is shown once, in
the :class:`NewToken` that :meth:`Identities.create_token` returns.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from .catalog import Catalog, Dataset, Provider, check_name, dataset_row
from .db import (
    Base,
    CatalogError,
    Conflict,
    EventHook,
    ExpiredToken,
    Forbidden,
    NotFound,
    RevokedToken,
    UnknownToken,
    UtcDateTime,
    make_event,
)

__all__ = [
    "MAX_TOKEN_LIFETIME", "RESERVED_NAMES", "SCOPES", "TOKEN_PREFIX", "Identities", "Identity",
    "LabInfo", "NewToken", "Role", "RoleGrant", "TokenInfo", "hash_token",
]

TOKEN_PREFIX = "dfv1"

SCOPES: frozenset[str] = frozenset({
    "catalog:read",   # list and describe datasets
    "catalog:write",  # create datasets, import releases (providers, curators)
    "requests",       # submit, amend and withdraw access requests (lab members)
    "reviews",        # review requests, revoke grants (reviewers, providers)
    "grants",         # read one's grants
    "pull",           # read granted data
    "audit",          # read the audit log and checkpoints (auditors, providers)
    "jobs",           # submit and run clean-room jobs, read their mock logs (lab members)
    "admin",          # identities, roles and tokens
})
"""The scopes a token may carry."""

MAX_TOKEN_LIFETIME = timedelta(days=366)
"""The longest a token may live (every token expires)."""

RESERVED_NAMES = frozenset({"local", "anonymous"})
"""Actors of events that no identity made: the local operator, a failed login."""


class Role(StrEnum):
    """The roles an identity may hold."""

    PROVIDER = "provider"
    REVIEWER = "reviewer"
    CURATOR = "curator"
    LAB_MEMBER = "lab_member"
    AUDITOR = "auditor"
    ADMIN = "admin"


# what each role is held for: a provider, a dataset, a lab, optionally a provider, nothing
_ROLE_SCOPE = {Role.PROVIDER: "provider", Role.CURATOR: "provider", Role.REVIEWER: "dataset",
               Role.LAB_MEMBER: "lab", Role.AUDITOR: "provider?", Role.ADMIN: ""}


# -- tables ----------------------------------------------------------------------------------

class Lab(Base):
    """A lab (a customer team that requests access)."""

    __tablename__ = "labs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityRow(Base):
    """A person or a service account."""

    __tablename__ = "identities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    roles: Mapped[list[RoleRow]] = relationship(back_populates="identity")


class RoleRow(Base):
    """One role of an identity, held for a provider, a dataset, a lab or the whole vault."""

    __tablename__ = "roles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    role: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"), nullable=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("labs.id"), nullable=True)
    granted_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    identity: Mapped[IdentityRow] = relationship(back_populates="roles")
    provider: Mapped[Provider | None] = relationship()
    dataset: Mapped[Dataset | None] = relationship()
    lab: Mapped[Lab | None] = relationship()


class TokenRow(Base):
    """An API token: its public id, the SHA-256 of the token, scopes and expiry."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    name: Mapped[str] = mapped_column(String(200), default="")
    token_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    identity: Mapped[IdentityRow] = relationship()


# -- views -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoleGrant:
    """A role and what it is held for (at most one of provider, dataset, lab)."""

    role: Role
    provider: str | None = None
    dataset: str | None = None
    lab: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who is acting: the identity's roles when it authenticated, and the scopes of the
    token it authenticated with (every scope for a local identity, ``token_id`` None)."""

    name: str
    roles: frozenset[RoleGrant]
    scopes: frozenset[str]
    token_id: str | None = None

    def has_scope(self, scope: str) -> bool:
        """Whether the identity's token carries ``scope``."""
        return scope in self.scopes

    def has_role(self, role: Role | str, *, provider: str | None = None,
                 dataset: str | None = None, lab: str | None = None) -> bool:
        """Whether the identity holds ``role`` for that provider, dataset or lab."""
        return RoleGrant(Role(role), provider, dataset, lab) in self.roles

    @property
    def labs(self) -> frozenset[str]:
        """The labs the identity is a member of."""
        return frozenset(r.lab for r in self.roles if r.role is Role.LAB_MEMBER and r.lab)

    @property
    def is_admin(self) -> bool:
        """Whether the identity is a vault admin."""
        return any(r.role is Role.ADMIN for r in self.roles)


@dataclass(frozen=True)
class LabInfo:
    """A lab."""

    name: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never the token itself)."""

    token_id: str
    identity: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is shown this once and stored nowhere."""

    token: str
    info: TokenInfo

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"NewToken(token='{TOKEN_PREFIX}_{self.info.token_id}_…', info={self.info!r})"


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- identities ------------------------------------------------------------------------------

class Identities:
    """Identities, roles, labs and tokens of a vault's catalog. ``on_event`` receives one
    event dict per change (and per authentication, successful or not)."""

    def __init__(self, catalog: Catalog, *, on_event: EventHook | None = None) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self._on_event = on_event

    def _emit(self, event: dict[str, object]) -> None:
        if self._on_event is not None:
            self._on_event(event)

    # -- labs and identities -------------------------------------------------------------------
    def create_lab(self, name: str, *, display_name: str = "", by: str = "local") -> LabInfo:
        """A new lab (:class:`Conflict` when the name is taken)."""
        check_name("lab", name)
        with self.db.write() as s:
            if s.scalars(select(Lab).where(Lab.name == name)).first():
                raise Conflict(f"lab {name!r} already exists")
            lab = Lab(name=name, display_name=display_name, created_at=self.db.clock())
            s.add(lab)
            s.flush()
            self._emit(make_event(by, "lab_created", None, lab=name))
        return LabInfo(lab.name, lab.display_name, lab.created_at)

    def labs(self) -> list[LabInfo]:
        """Every lab, by name."""
        with self.db.read() as s:
            return [LabInfo(x.name, x.display_name, x.created_at)
                    for x in s.scalars(select(Lab).order_by(Lab.name))]

    def create_identity(self, name: str, *, display_name: str = "", by: str = "local") -> Identity:
        """A new identity with no role (:class:`Conflict` when the name is taken)."""
        check_name("identity", name)
        if name in RESERVED_NAMES:
            raise CatalogError(f"identity name {name!r} is reserved: the audit log names "
                               f"{sorted(RESERVED_NAMES)} as actors that are no identity")
        with self.db.write() as s:
            if s.scalars(select(IdentityRow).where(IdentityRow.name == name)).first():
                raise Conflict(f"identity {name!r} already exists")
            s.add(IdentityRow(name=name, display_name=display_name, created_at=self.db.clock()))
            s.flush()
            self._emit(make_event(by, "identity_created", None, identity=name))
        return self.get(name)

    def get(self, name: str) -> Identity:
        """An identity as the vault's local operator acts for it (every scope)."""
        with self.db.read() as s:
            row = identity_row(s, name)
            return Identity(row.name, roles_of(s, row.id), SCOPES)

    def identities(self) -> list[Identity]:
        """Every identity with its roles, by name (scopes: every scope)."""
        with self.db.read() as s:
            return [Identity(r.name, roles_of(s, r.id), SCOPES)
                    for r in s.scalars(select(IdentityRow).order_by(IdentityRow.name))]

    # -- roles ---------------------------------------------------------------------------------
    def assign(self, identity: str, role: Role | str, *, provider: str | None = None,
               dataset: str | None = None, lab: str | None = None, by: str = "local") -> Identity:
        """Give ``identity`` a role, held for what the role needs: a provider (provider,
        curator, optionally auditor), a dataset (reviewer), a lab (lab member), nothing
        (admin). Assigning a role it holds already changes nothing."""
        grant = _role_grant(role, provider, dataset, lab)
        with self.db.write() as s:
            self._assign(s, identity, grant, by)
        return self.get(identity)

    def _assign(self, s: Session, identity: str, grant: RoleGrant, by: str) -> None:
        row = identity_row(s, identity)
        if grant in roles_of(s, row.id):
            return
        held = (None if grant.provider is None else provider_row(s, grant.provider),
                None if grant.dataset is None else dataset_row(s, grant.dataset),
                None if grant.lab is None else lab_row(s, grant.lab))
        s.add(RoleRow(identity=row, role=grant.role.value, provider=held[0], dataset=held[1],
                      lab=held[2], granted_by=by, created_at=self.db.clock()))
        s.flush()
        self._emit(make_event(by, "role_assigned", grant.dataset, identity=identity,
                              role=grant.role.value, provider=grant.provider, lab=grant.lab))

    def unassign(self, identity: str, role: Role | str, *, provider: str | None = None,
                 dataset: str | None = None, lab: str | None = None, by: str = "local") -> Identity:
        """Take a role away (:class:`NotFound` when the identity does not hold it); takes
        effect on the identity's next request."""
        grant = _role_grant(role, provider, dataset, lab)
        with self.db.write() as s:
            row = identity_row(s, identity)
            for rr in list(row.roles):
                if _grant_of(rr) == grant:
                    s.delete(rr)
                    s.flush()
                    self._emit(make_event(by, "role_removed", grant.dataset, identity=identity,
                                          role=grant.role.value, provider=grant.provider,
                                          lab=grant.lab))
                    break
            else:
                raise NotFound(f"identity {identity!r} does not hold {_describe_grant(grant)}")
        return self.get(identity)

    def appoint_reviewer(self, by: Identity, reviewer: str, dataset: str) -> Identity:
        """A provider (or an admin) appoints ``reviewer`` for one of its datasets."""
        with self.db.write() as s:
            provider = dataset_row(s, dataset).provider.name
            roles = roles_of(s, identity_row(s, by.name).id)
            if RoleGrant(Role.PROVIDER, provider=provider) not in roles and not any(
                    r.role is Role.ADMIN for r in roles):
                raise Forbidden(f"{by.name!r} may not appoint reviewers for dataset {dataset!r}: "
                                f"only a provider of {provider!r} or an admin may")
            self._assign(s, reviewer, RoleGrant(Role.REVIEWER, dataset=dataset), by.name)
        return self.get(reviewer)

    # -- tokens --------------------------------------------------------------------------------
    def create_token(self, identity: str, scopes: Iterable[str], *,
                     expires_in: timedelta = timedelta(days=30), name: str = "",
                     by: str = "local") -> NewToken:
        """A new API token for ``identity``; the token is in the result only, once."""
        wanted = tuple(sorted(set(scopes)))
        unknown = [x for x in wanted if x not in SCOPES]
        if unknown or not wanted:
            raise CatalogError(f"token scopes {list(unknown) or 'none'} are not valid; a token "
                               f"needs one or more of {sorted(SCOPES)}")
        if not timedelta(0) < expires_in <= MAX_TOKEN_LIFETIME:
            raise CatalogError(f"token lifetime {expires_in} must be positive and at most "
                               f"{MAX_TOKEN_LIFETIME.days} days (tokens always expire)")
        public = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}_{public}_{secrets.token_urlsafe(32)}"
        now = self.db.clock()
        with self.db.write() as s:
            row = identity_row(s, identity)
            t = TokenRow(token_id=public, identity=row, name=name, token_sha256=hash_token(token),
                         scopes=list(wanted), created_at=now, expires_at=now + expires_in)
            s.add(t)
            s.flush()
            info = _token_info(t)
            self._emit(make_event(by, "token_created", None, identity=identity, token_id=public,
                                  scopes=list(wanted), expires_at=info.expires_at.isoformat()))
        return NewToken(token, info)

    def list_tokens(self, identity: str | None = None) -> list[TokenInfo]:
        """Tokens (of one identity, or all), newest first; never the tokens themselves."""
        with self.db.read() as s:
            q = select(TokenRow).order_by(TokenRow.created_at.desc(), TokenRow.id.desc())
            if identity is not None:
                q = q.where(TokenRow.identity_id == identity_row(s, identity).id)
            return [_token_info(t) for t in s.scalars(q)]

    def revoke_token(self, token_id: str, *, by: str = "local") -> TokenInfo:
        """Revoke a token by its id, for good; effective on its next use. Revoking a revoked
        token changes nothing."""
        with self.db.write() as s:
            t = s.scalars(select(TokenRow).where(TokenRow.token_id == token_id)
                          .with_for_update()).first()
            if t is None:
                raise NotFound(f"no token {token_id!r}")
            if t.revoked_at is None:
                t.revoked_at = self.db.clock()
                t.revoked_by = by
                s.flush()
                self._emit(make_event(by, "token_revoked", None, identity=t.identity.name,
                                      token_id=token_id))
            return _token_info(t)

    def authenticate(self, token: str) -> Identity:
        """The identity a token stands for, with the token's scopes; :class:`UnknownToken`,
        :class:`ExpiredToken` or :class:`RevokedToken` otherwise."""
        parts = token.split("_", 2) if isinstance(token, str) else []
        public = parts[1] if len(parts) == 3 and parts[0] == TOKEN_PREFIX else None
        presented = hash_token(token) if isinstance(token, str) else ""
        with self.db.read() as s:
            t = None if public is None else s.scalars(
                select(TokenRow).where(TokenRow.token_id == public)).first()
            # the stored hash is compared in constant time even when nothing matched
            stored = t.token_sha256 if t is not None else "0" * 64
            matches = hmac.compare_digest(stored.encode(), presented.encode())
            if t is None or not matches:
                self._failed(public, "unknown")
                raise UnknownToken("the token is not one this vault issued")
            if t.revoked_at is not None:
                self._failed(public, "revoked")
                raise RevokedToken(f"token {public} was revoked at {t.revoked_at.isoformat()}")
            if self.db.clock() >= t.expires_at:
                self._failed(public, "expired")
                raise ExpiredToken(f"token {public} expired at {t.expires_at.isoformat()}")
            who = Identity(t.identity.name, roles_of(s, t.identity_id), frozenset(t.scopes), public)
        self._emit(make_event(who.name, "login", None, token_id=public))
        return who

    def _failed(self, token_id: str | None, reason: str) -> None:
        self._emit(make_event("anonymous", "login_failed", None, token_id=token_id, reason=reason))


# -- rows (shared with review) ---------------------------------------------------------------

def identity_row(s: Session, name: str) -> IdentityRow:
    """The identity named ``name`` (:class:`NotFound` otherwise)."""
    row = s.scalars(select(IdentityRow).where(IdentityRow.name == name)).first()
    if row is None:
        raise NotFound(f"no identity {name!r}")
    return row


def lab_row(s: Session, name: str) -> Lab:
    """The lab named ``name`` (:class:`NotFound` otherwise)."""
    row = s.scalars(select(Lab).where(Lab.name == name)).first()
    if row is None:
        raise NotFound(f"no lab {name!r}")
    return row


def provider_row(s: Session, name: str) -> Provider:
    """The provider named ``name`` (:class:`NotFound` otherwise)."""
    row = s.scalars(select(Provider).where(Provider.name == name)).first()
    if row is None:
        raise NotFound(f"no provider {name!r}")
    return row


def roles_of(s: Session, identity_id: int) -> frozenset[RoleGrant]:
    """The roles an identity holds now."""
    return frozenset(_grant_of(r) for r in s.scalars(
        select(RoleRow).where(RoleRow.identity_id == identity_id).options(
            joinedload(RoleRow.provider), joinedload(RoleRow.dataset), joinedload(RoleRow.lab))))


def _grant_of(r: RoleRow) -> RoleGrant:
    return RoleGrant(Role(r.role), r.provider.name if r.provider else None,
                     r.dataset.name if r.dataset else None, r.lab.name if r.lab else None)


def _describe_grant(g: RoleGrant) -> str:
    held = g.provider or g.dataset or g.lab
    kind = "provider" if g.provider else "dataset" if g.dataset else "lab" if g.lab else ""
    return f"role {g.role.value}" + (f" for {kind} {held!r}" if held else "")


def _role_grant(role: Role | str, provider: str | None, dataset: str | None,
                lab: str | None) -> RoleGrant:
    try:
        r = Role(role)
    except ValueError:
        raise CatalogError(f"unknown role {role!r}; roles: {[x.value for x in Role]}") from None
    given = {k for k, v in (("provider", provider), ("dataset", dataset), ("lab", lab))
             if v is not None}
    need = _ROLE_SCOPE[r]
    ok = (given == {need} if need in ("provider", "dataset", "lab")
          else given <= {"provider"} if need == "provider?" else not given)
    if not ok:
        what = {"provider": "a provider", "dataset": "a dataset", "lab": "a lab",
                "provider?": "a provider or nothing (all providers)", "": "nothing"}[need]
        raise CatalogError(f"role {r.value} is held for {what}; got {sorted(given) or 'nothing'}")
    return RoleGrant(r, provider, dataset, lab)


def _token_info(t: TokenRow) -> TokenInfo:
    return TokenInfo(token_id=t.token_id, identity=t.identity.name, name=t.name,
                     scopes=tuple(t.scopes), created_at=t.created_at, expires_at=t.expires_at,
                     revoked_at=t.revoked_at, revoked_by=t.revoked_by)
