"""Output review: what a clean-room job wrote on real data leaves the vault only after the
output gate and the provider's reviewers let it, file by file, with the Airlock rules.

Each real-data run of a job hands its files (its declared outputs and its logs) to
:meth:`Outputs.register_outputs`: each file is hashed, checked by the gate
(:mod:`vault.gate`, against an index of exactly the inputs the job read) and stored
encrypted under the dataset's data key (object ``output-job<J>-run<R>/<name>``). The
files of a job form an **output set**, which moves through the Airlock states::

    pending ──submit (lab)──> submitted ──votes──> partially_reviewed ──votes──> reviewed
       │                        │  (reviewers vote per file; the state counts the reviewers
       │                        │   who voted on every file's current content)
       │                        ├──return (reviewer, reason)──> returned ──submit (lab)──> submitted
       │                        ├──reject (reviewer, reason)──> rejected
       │                        └──release (reviewer, two steps, every file approved)──> released
       └── withdraw (lab; also from the review states and returned) ──> withdrawn

Rules: only reviewers appointed for the dataset vote, never the job's submitter and never a
member of the submitting lab; a ``reject`` or ``changes_requested`` vote needs a comment;
a vote is for one content of a file (its sha256), so a re-run that changes a file resets
that file's reviews (votes on unchanged files stay); the number of distinct approvals a
file needs is the dataset's ``required_approvals`` (the vault's review settings); a file
the gate blocked cannot be approved, so a set holding one cannot be released (the lab
withdraws that file or re-runs the job, or the reviewers reject); release takes two calls
(:meth:`Outputs.prepare_release` gives a one-time code for the exact contents approved,
:meth:`Outputs.confirm_release` releases with it) by a reviewer who is not an author, and
re-reads every stored file first: a file whose stored content is not the reviewed content
stops the release, named. Only released files can be downloaded, and only by members of
the job's lab. Every action (registration, submission, each vote, return, reject, release,
each view, download and refused download) is an audit entry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..catalog import release_row
from ..crypto import ObjectRef
from ..db import (
    ConfirmationError,
    Forbidden,
    NotFound,
    ReviewError,
    TransitionError,
    make_event,
)
from ..errors import TamperError, VaultError
from ..identities import Identity, IdentityRow, Role, RoleGrant, identity_row, lab_row, roles_of
from ..keys import load_data_key
from ..review import CONFIRMATION_LIFETIME, MAX_TEXT
from ..service import Vault, check_path
from .outputs_gate import FinishedRun, GateFn, GateResult, gate_with_index
from .outputs_rules import (
    file_row,
    file_view,
    findings_summary,
    live_files,
    releasable,
    reviewers_done,
    sees,
    set_row,
    set_view,
)
from .outputs_tables import (
    FINAL_STATES,
    REVIEW_STATES,
    FileView,
    OutputFileRow,
    OutputSetRow,
    OutputSetView,
    OutputState,
    OutputVoteRow,
    ReleaseConfirmationRow,
    Vote,
)

__all__ = ["FinishedRun", "GateFn", "GateResult", "Outputs", "gate_with_index"]

_READ = 1 << 20


class Outputs:
    """Output review over an open :class:`~vault.service.Vault` (its catalog, store, keys
    and audit log). ``gate``: the output gate (default :func:`gate_with_index` with its
    cache under ``ROOT/gate-cache``)."""

    def __init__(self, vault: Vault, *, gate: GateFn | None = None) -> None:
        self.vault = vault
        self.db = vault.catalog.db
        self.gate = gate or gate_with_index(vault.root / "gate-cache")

    # -- registration (the jobs module) ------------------------------------------------------
    def register_outputs(self, run: FinishedRun) -> OutputSetView:
        """Take in the files of a finished real-data run: hash, gate, store encrypted, and
        add them to the job's open output set (a new set when it has none, or when its
        last one is released, rejected or withdrawn). A file whose content changed loses
        the votes on its old content; a file the run no longer wrote is marked gone."""
        where = f"job {run.job_id} run {run.run_id}"
        if not run.files:
            raise ReviewError(f"{where}: no output files to register")
        for name, path in sorted(run.files.items()):
            try:
                check_path(name)
            except VaultError as exc:
                raise ReviewError(f"{where}: output name {name!r} is not valid: {exc}") from exc
            if not Path(path).is_file() or Path(path).is_symlink():
                raise VaultError(f"{where}: output {name!r}: {path} is not a regular file")
        results = self.gate(run, run.files)
        missing = sorted(set(run.files) - set(results))
        if missing:
            raise VaultError(f"{where}: the gate gave no verdict on {missing}")
        key = self._key(run.dataset, "vault", f"store the outputs of {where}")
        version = _object_version(run.job_id, run.run_id)
        hashed: dict[str, tuple[str, int]] = {}
        for name, path in sorted(run.files.items()):
            # hashed as it is encrypted (one read), then held to what the gate checked
            h = hashlib.sha256()
            info = self.vault.store.put(ObjectRef(run.dataset, version, name), key,
                                        _hashing(Path(path), h, f"{where} output {name!r}"),
                                        replace=True)
            checked = results[name].sha256
            if checked is not None and checked != h.hexdigest():
                raise VaultError(f"{where}: output {name!r} changed while it was checked (the gate "
                                 f"read sha256 {checked}, the vault stored {h.hexdigest()}); "
                                 "nothing of this run is registered")
            hashed[name] = (h.hexdigest(), info.size)
        with self.db.write() as s:
            rel = release_row(s, run.dataset, run.release)
            lab = lab_row(s, run.lab)
            submitter = identity_row(s, run.submitter)
            row = s.scalars(select(OutputSetRow).where(
                OutputSetRow.job_id == run.job_id,
                OutputSetRow.state.notin_([x.value for x in FINAL_STATES]))
                .order_by(OutputSetRow.id.desc()).with_for_update()).first()
            now = self.db.clock()
            if row is None:
                row = OutputSetRow(job_id=run.job_id, run_id=run.run_id, dataset=rel.dataset,
                                   release=rel, lab=lab, submitter=submitter,
                                   state=OutputState.PENDING.value, round=1, created_at=now,
                                   updated_at=now)
                s.add(row)
                s.flush()
            elif (row.dataset_id, row.release_id, row.lab_id) != (rel.dataset_id, rel.id, lab.id):
                raise ReviewError(f"{where}: output set {row.id} of job {run.job_id} is for "
                                  f"{row.dataset.name!r} release {row.release.version} of lab "
                                  f"{row.lab.name!r}, not for this run's data and lab")
            row.run_id, row.updated_at = run.run_id, now
            by_name = {f.name: f for f in row.files}
            changed, added = [], []
            for name, (sha, size) in hashed.items():
                res = results[name]
                f = by_name.get(name)
                if f is None:
                    f = OutputFileRow(name=name, sha256=sha, size=size, content=1,
                                      run_id=run.run_id, updated_at=now)
                    row.files.append(f)
                    added.append(name)
                elif f.sha256 != sha:
                    changed.append({"name": name, "old_sha256": f.sha256, "sha256": sha})
                    f.sha256, f.size, f.content, f.run_id = sha, size, f.content + 1, run.run_id
                    f.withdrawn = False
                f.gate_verdict, f.gate_findings = res.verdict, [dict(x) for x in res.findings]
                f.gone, f.updated_at = False, now
            gone = sorted(n for n in by_name if n not in hashed and not by_name[n].gone)
            for name in gone:
                by_name[name].gone = True
            s.execute(delete(ReleaseConfirmationRow).where(ReleaseConfirmationRow.set_id == row.id))
            self._settle(s, row)
            self._emit("vault", "outputs_registered", row, run=run.run_id, submitter=run.submitter,
                       added=added,
                       changed=changed, gone=gone, files=[
                           {"name": n, "sha256": h, "size": z, "gate": results[n].verdict}
                           for n, (h, z) in hashed.items()])
            for c in changed:
                self._emit("vault", "output_reviews_reset", row, file=c["name"],
                           old_sha256=c["old_sha256"], sha256=c["sha256"])
            return set_view(s, row)

    # -- the lab's side ------------------------------------------------------------------------
    def submit(self, output_id: int, by: Identity) -> OutputSetView:
        """The lab sends its outputs to the reviewers (a pending set, or a returned one
        after changes: a new round; votes on unchanged files stay)."""
        with self.db.write() as s:
            row = set_row(s, output_id, lock=True)
            self._lab_member(s, row, by, "requests", "submit")
            state = OutputState(row.state)
            if state not in (OutputState.PENDING, OutputState.RETURNED):
                raise TransitionError(f"output set {row.id} is {state.value}: only a pending or "
                                      "returned set can be submitted")
            if not live_files(row):
                raise ReviewError(f"output set {row.id} has no file left to review (all "
                                  "withdrawn or gone)")
            if state is OutputState.RETURNED:
                row.round += 1
            row.state = OutputState.SUBMITTED.value
            self._settle(s, row)
            self._emit(by.name, "outputs_submitted", row, round=row.round,
                       files=[{"name": f.name, "sha256": f.sha256} for f in live_files(row)])
            return set_view(s, row)

    def withdraw(self, output_id: int, by: Identity, *, file: str | None = None) -> OutputSetView:
        """The lab withdraws the whole set (final), or one ``file`` of a pending or
        returned set (it will not be reviewed or released)."""
        with self.db.write() as s:
            row = set_row(s, output_id, lock=True)
            self._lab_member(s, row, by, "requests", "withdraw")
            state = OutputState(row.state)
            if state in FINAL_STATES:
                raise TransitionError(f"output set {row.id} is {state.value} (final); nothing "
                                      "to withdraw")
            if file is None:
                row.state = OutputState.WITHDRAWN.value
                self._touch(s, row)
                self._emit(by.name, "outputs_withdrawn", row, round=row.round)
                return set_view(s, row)
            if state not in (OutputState.PENDING, OutputState.RETURNED):
                raise TransitionError(f"output set {row.id} is {state.value}: a file can be "
                                      "withdrawn from a pending or returned set only")
            f = file_row(row, file)
            f.withdrawn = True
            self._touch(s, row)
            self._emit(by.name, "output_file_withdrawn", row, file=f.name, sha256=f.sha256)
            return set_view(s, row)

    # -- the reviewers' side -------------------------------------------------------------------
    def vote(self, output_id: int, file: str, by: Identity, vote: Vote | str,
             comment: str = "") -> OutputSetView:
        """A reviewer's vote on the current content of one file: ``approve``,
        ``changes_requested`` or ``reject`` (the last two need a comment). Voting again on
        the same content replaces one's vote."""
        try:
            v = Vote(vote)
        except ValueError:
            raise ReviewError(f"vote {vote!r} is not one of {[x.value for x in Vote]}") from None
        text = comment.strip() if isinstance(comment, str) else ""
        with self.db.write() as s:
            row = set_row(s, output_id, lock=True)
            reviewer = self._reviewer(s, row, by, "vote on")
            _need_review_state(row, "vote on")
            f = file_row(row, file)
            if f.withdrawn or f.gone:
                raise ReviewError(f"output set {row.id} file {f.name!r} is "
                                  f"{'withdrawn' if f.withdrawn else 'gone'}; nothing to vote on")
            if v is not Vote.APPROVE and not text:
                raise ReviewError(f"output set {row.id} file {f.name!r}: a {v.value} vote needs a "
                                  "comment (what the lab should change, or why not)")
            if len(text) > MAX_TEXT:
                raise ReviewError(f"output set {row.id} file {f.name!r}: the comment is {len(text)} "
                                  f"characters; at most {MAX_TEXT}")
            if v is Vote.APPROVE and f.gate_verdict == "block":
                raise Forbidden(f"output set {row.id} file {f.name!r} was blocked by the output "
                                f"gate ({findings_summary(f)}); it cannot be approved: vote "
                                "changes_requested or reject, or return the set")
            existing = s.scalars(select(OutputVoteRow).where(
                OutputVoteRow.file_id == f.id, OutputVoteRow.sha256 == f.sha256,
                OutputVoteRow.reviewer_id == reviewer.id)).first()
            old = existing.vote if existing else None
            if existing is None:
                existing = OutputVoteRow(file_id=f.id, reviewer=reviewer, sha256=f.sha256)
                s.add(existing)
            existing.vote, existing.comment, existing.created_at = v.value, text, self.db.clock()
            s.execute(delete(ReleaseConfirmationRow).where(ReleaseConfirmationRow.set_id == row.id))
            s.flush()
            self._settle(s, row)
            self._emit(by.name, "output_vote", row, file=f.name, sha256=f.sha256, vote=v.value,
                       previous=old, comment=text, state=row.state)
            return set_view(s, row)

    def return_to_lab(self, output_id: int, by: Identity, reason: str) -> OutputSetView:
        """A reviewer sends the set back to the lab, saying what to change."""
        return self._decide(output_id, by, reason, OutputState.RETURNED, "outputs_returned")

    def reject(self, output_id: int, by: Identity, reason: str) -> OutputSetView:
        """A reviewer rejects the set, saying why (final: nothing of it leaves)."""
        return self._decide(output_id, by, reason, OutputState.REJECTED, "outputs_rejected")

    def prepare_release(self, output_id: int, by: Identity) -> str:
        """The first step of a release: every live file approved by enough distinct
        reviewers on its current content, none blocked. Returns a one-time code, valid for
        :data:`~vault.review.CONFIRMATION_LIFETIME` and for exactly these contents."""
        with self.db.write() as s:
            row = set_row(s, output_id, lock=True)
            reviewer = self._reviewer(s, row, by, "release")
            contents = releasable(s, row)
            code = secrets.token_hex(4).upper()
            code = f"{code[:4]}-{code[4:]}"
            expires = self.db.clock() + CONFIRMATION_LIFETIME
            s.execute(delete(ReleaseConfirmationRow).where(
                ReleaseConfirmationRow.set_id == row.id,
                ReleaseConfirmationRow.reviewer_id == reviewer.id))
            s.add(ReleaseConfirmationRow(set_id=row.id, reviewer_id=reviewer.id,
                                         code_sha256=_code_hash(code), contents_sha256=contents,
                                         expires_at=expires))
            s.flush()
            self._emit(by.name, "output_release_prepared", row, expires_at=expires.isoformat(),
                       contents_sha256=contents)
            return code

    def confirm_release(self, output_id: int, by: Identity, code: str) -> OutputSetView:
        """The second step: with the code :meth:`prepare_release` gave this reviewer, and
        the contents unchanged since, every file is read back from the store and checked
        against the content that was reviewed; then the set is released. A wrong or stale
        code cancels the prepared release; a stored file that is not what was reviewed
        stops the release, naming the file."""
        error: Exception | None = None
        with self.db.write() as s:
            row = set_row(s, output_id, lock=True)
            reviewer = self._reviewer(s, row, by, "release")
            pending = s.scalars(select(ReleaseConfirmationRow).where(
                ReleaseConfirmationRow.set_id == row.id,
                ReleaseConfirmationRow.reviewer_id == reviewer.id)).first()
            if pending is None:
                raise ConfirmationError(f"output set {row.id}: {by.name!r} has no prepared "
                                        "release; call prepare_release first")
            s.delete(pending)  # one try per code, whatever happens next
            s.flush()
            try:
                contents = releasable(s, row)
                if self.db.clock() >= pending.expires_at:
                    raise ConfirmationError(f"output set {row.id}: the code expired at "
                                            f"{pending.expires_at.isoformat()}; prepare the "
                                            "release again")
                if not hmac.compare_digest(pending.code_sha256.encode(),
                                           _code_hash(code).encode()):
                    raise ConfirmationError(f"output set {row.id}: the code is wrong; prepare the "
                                            "release again")
                if pending.contents_sha256 != contents:
                    raise ConfirmationError(f"output set {row.id}: the files changed since the "
                                            "release was prepared; prepare the release again")
                self._verify_stored(row, by.name)
            except (ReviewError, TransitionError, TamperError) as exc:
                error = exc
                self._emit(by.name, "output_release_refused", row, reason=str(exc)[:1000])
            else:
                row.state = OutputState.RELEASED.value
                row.released_at, row.released_by = self.db.clock(), by.name
                self._touch(s, row)
                self._emit(by.name, "outputs_released", row, round=row.round,
                           contents_sha256=contents, files=[
                               {"name": f.name, "sha256": f.sha256, "size": f.size}
                               for f in live_files(row)])
                return set_view(s, row)
        # the cancelled confirmation and the refusal's audit entry are committed; then the error
        assert error is not None
        raise error

    def read_for_review(self, output_id: int, file: str, by: Identity) -> bytes:
        """A reviewer reads a file's current content to review it (audited)."""
        with self.db.read() as s:
            row = set_row(s, output_id)
            self._reviewer(s, row, by, "read the outputs of")
            if OutputState(row.state) is OutputState.PENDING:
                raise Forbidden(f"output set {row.id} is pending: the lab has not submitted it")
            f = file_row(row, file)
            ref, sha, dataset = self._ref(row, f), f.sha256, row.dataset.name
            event = make_event(by.name, "output_viewed", dataset, output_set=row.id,
                               job=row.job_id, file=f.name, sha256=sha)
        self.vault.audit.record(event)
        return self._read_verified(dataset, ref, sha, by.name, f"review {file}")

    # -- downloads (the lab, after release) ----------------------------------------------------
    def download(self, output_id: int, file: str, by: Identity) -> tuple[FileView, bytes]:
        """A released file's exact bytes, for a member of the job's lab (checked against
        the released sha256). Refusals are audited (``output_download_refused``)."""
        view, chunks = self.open_download(output_id, file, by)
        return view, b"".join(chunks)

    def open_download(self, output_id: int, file: str, by: Identity,
                      ) -> tuple[FileView, Iterator[bytes]]:
        """:meth:`download` as the file's view and an iterator of its plaintext pieces
        (each chunk authenticated as it is decrypted; the whole checked against the
        released sha256 at the end)."""
        try:
            with self.db.read() as s:
                row = set_row(s, output_id)
                self._lab_member(s, row, by, "pull", "download")
                f = file_row(row, file)
                if OutputState(row.state) is not OutputState.RELEASED:
                    raise Forbidden(f"output set {row.id} is {row.state}: only released outputs "
                                    f"can be downloaded ({f.name!r} is not released)")
                if f.withdrawn or f.gone:
                    raise Forbidden(f"output set {row.id} file {f.name!r} was "
                                    f"{'withdrawn' if f.withdrawn else 'gone'} when the set was "
                                    "released; it was not released")
                view = file_view(s, row, f)
                ref, dataset = self._ref(row, f), row.dataset.name
                event = make_event(by.name, "output_download", dataset, output_set=row.id,
                                   job=row.job_id, file=f.name, sha256=f.sha256, size=f.size,
                                   token_id=by.token_id)
        except (Forbidden, NotFound) as exc:
            self._refused(output_id, file, by, str(exc))
            raise
        self.vault.audit.record(event)
        key = self._key(dataset, by.name, f"download output {file} of set {output_id}")
        return view, _verified_chunks(self.vault.store.open(ref, key), view.sha256, str(ref))

    # -- reading -------------------------------------------------------------------------------
    def get(self, output_id: int, by: Identity | None = None) -> OutputSetView:
        """An output set (``by``: refused unless that identity may see it)."""
        with self.db.read() as s:
            row = set_row(s, output_id)
            if by is not None and not sees(row, roles_of(s, identity_row(s, by.name).id)):
                raise Forbidden(f"{by.name!r} may not see output set {row.id}")
            return set_view(s, row)

    def list(self, by: Identity, *, job_id: int | None = None,
             state: OutputState | str | None = None, waiting: bool = False) -> list[OutputSetView]:
        """The output sets ``by`` may see (its labs', and those of the datasets it reviews
        or provides, once submitted), oldest first. ``waiting``: only those under review
        that ``by`` may review and has not yet voted on every file of."""
        with self.db.read() as s:
            q = select(OutputSetRow).order_by(OutputSetRow.id)
            if job_id is not None:
                q = q.where(OutputSetRow.job_id == job_id)
            if state is not None:
                try:
                    q = q.where(OutputSetRow.state == OutputState(state).value)
                except ValueError:
                    raise ReviewError(f"unknown output state {state!r}; states: "
                                      f"{[x.value for x in OutputState]}") from None
            actor = identity_row(s, by.name)
            roles = roles_of(s, actor.id)
            views = [set_view(s, r) for r in s.scalars(q) if sees(r, roles)]
        if waiting:
            mine = {g.dataset for g in roles if g.role is Role.REVIEWER}
            labs = {g.lab for g in roles if g.role is Role.LAB_MEMBER}
            views = [v for v in views if v.state in REVIEW_STATES and v.dataset in mine
                     and v.lab not in labs and v.submitter != by.name
                     and by.name not in v.reviewers_done]
        return views

    # -- internals -----------------------------------------------------------------------------
    def _decide(self, output_id: int, by: Identity, reason: str, new: OutputState,
                event: str) -> OutputSetView:
        with self.db.write() as s:
            row = set_row(s, output_id, lock=True)
            self._reviewer(s, row, by, "decide on")
            verb = "return" if new is OutputState.RETURNED else "reject"
            _need_review_state(row, verb)
            if not isinstance(reason, str) or not reason.strip():
                raise ReviewError(f"output set {row.id}: to {verb} it needs a reason (what the lab "
                                  "should know)")
            if len(reason) > MAX_TEXT:
                raise ReviewError(f"output set {row.id}: the reason is {len(reason)} characters; at "
                                  f"most {MAX_TEXT}")
            old = row.state
            row.state, row.reason = new.value, reason.strip()
            s.execute(delete(ReleaseConfirmationRow).where(ReleaseConfirmationRow.set_id == row.id))
            self._touch(s, row)
            self._emit(by.name, event, row, round=row.round, reason=row.reason,
                       **{"from": old, "to": new.value})
            return set_view(s, row)

    def _settle(self, s: Session, row: OutputSetRow) -> None:
        """The review state from the votes: how many reviewers voted on every live file."""
        if OutputState(row.state) in REVIEW_STATES:
            done = reviewers_done(s, row)
            need = row.dataset.required_approvals
            row.state = (OutputState.SUBMITTED if not done else OutputState.PARTIALLY_REVIEWED
                         if len(done) < need else OutputState.REVIEWED).value
        self._touch(s, row)

    def _touch(self, s: Session, row: OutputSetRow) -> None:
        row.updated_at = self.db.clock()
        s.flush()

    def _verify_stored(self, row: OutputSetRow, actor: str) -> None:
        """Every live file's stored content read back and checked against the reviewed
        content; :class:`TamperError` naming the first file that is not."""
        for f in live_files(row):
            try:
                self._read_verified(row.dataset.name, self._ref(row, f), f.sha256, actor,
                                    f"check output {f.name} before release")
            except VaultError as exc:
                raise TamperError(f"output set {row.id} file {f.name!r}: the stored file is not the "
                                  f"content that was reviewed (sha256 {f.sha256[:16]}...): {exc}; "
                                  "not released") from exc

    def _read_verified(self, dataset: str, ref: ObjectRef, sha256: str, actor: str,
                       purpose: str) -> bytes:
        key = self._key(dataset, actor, purpose)
        return b"".join(_verified_chunks(self.vault.store.open(ref, key), sha256, str(ref)))

    def _ref(self, row: OutputSetRow, f: OutputFileRow) -> ObjectRef:
        return ObjectRef(row.dataset.name, _object_version(row.job_id, f.run_id), f.name)

    def _key(self, dataset: str, actor: str, purpose: str) -> bytes:
        v = self.vault
        return load_data_key(v.root, v.provider, dataset, audit=v.audit, actor=actor,
                             purpose=purpose)

    def _emit(self, actor: str, action: str, row: OutputSetRow, **details: Any) -> None:
        self.vault.audit.record(make_event(actor, action, row.dataset.name, **(
            {"output_set": row.id, "job": row.job_id, "lab": row.lab.name,
             "release": row.release.version} | details)))

    def _refused(self, output_id: int, file: str, by: Identity, reason: str) -> None:
        dataset = None
        with self.db.read() as s:
            row = s.get(OutputSetRow, output_id)
            if row is not None:
                dataset = row.dataset.name
        self.vault.audit.record(make_event(by.name, "output_download_refused", dataset,
                                           output_set=output_id, file=str(file)[:1024],
                                           reason=reason[:500], token_id=by.token_id))

    def _reviewer(self, s: Session, row: OutputSetRow, by: Identity, what: str) -> IdentityRow:
        _need_scope(by, "reviews", f"{what} outputs")
        actor = identity_row(s, by.name)
        roles = roles_of(s, actor.id)
        if RoleGrant(Role.REVIEWER, dataset=row.dataset.name) not in roles:
            raise Forbidden(f"output set {row.id}: {by.name!r} is not a reviewer of dataset "
                            f"{row.dataset.name!r} and may not {what} its outputs")
        if actor.id == row.submitter_id:
            raise Forbidden(f"output set {row.id}: {by.name!r} submitted job {row.job_id}; authors "
                            f"never {what} their own outputs")
        if RoleGrant(Role.LAB_MEMBER, lab=row.lab.name) in roles:
            raise Forbidden(f"output set {row.id}: {by.name!r} is a member of the job's lab "
                            f"{row.lab.name!r}; authors never {what} their own outputs")
        return actor

    def _lab_member(self, s: Session, row: OutputSetRow, by: Identity, scope: str,
                    what: str) -> None:
        _need_scope(by, scope, f"{what} outputs")
        roles = roles_of(s, identity_row(s, by.name).id)
        if RoleGrant(Role.LAB_MEMBER, lab=row.lab.name) not in roles:
            raise Forbidden(f"output set {row.id}: only a member of lab {row.lab.name!r} may "
                            f"{what} its outputs; {by.name!r} is not")


# -- helpers ---------------------------------------------------------------------------------

def _object_version(job_id: int, run_id: int) -> str:
    return f"output-job{int(job_id)}-run{int(run_id)}"


def _hashing(path: Path, h: Any, where: str) -> Iterator[bytes]:
    """The pieces of the file at ``path``, each also fed to the hash ``h``."""
    try:
        with open(path, "rb") as fh:
            while piece := fh.read(_READ):
                h.update(piece)
                yield piece
    except OSError as exc:
        raise VaultError(f"{where}: cannot read {path}: {exc}") from exc


def _verified_chunks(reader: Any, sha256: str, what: str) -> Iterator[bytes]:
    h = hashlib.sha256()
    try:
        for piece in reader.iter_range(0, reader.size):
            h.update(piece)
            yield bytes(piece)
    finally:
        reader.close()
    if h.hexdigest() != sha256:
        raise TamperError(f"{what}: its content has sha256 {h.hexdigest()}, not the reviewed "
                          f"{sha256}")


def _need_scope(by: Identity, scope: str, what: str) -> None:
    if scope not in by.scopes:
        raise Forbidden(f"{by.name!r}: token {by.token_id} does not carry the scope {scope!r} "
                        f"needed to {what}")


def _need_review_state(row: OutputSetRow, what: str) -> None:
    state = OutputState(row.state)
    if state not in REVIEW_STATES:
        raise TransitionError(f"output set {row.id} is {state.value}: reviewers act on submitted "
                              f"sets only (submitted, partially_reviewed, reviewed), not {what}")


def _code_hash(code: str) -> str:
    norm = code.strip().upper().replace("-", "") if isinstance(code, str) else ""
    return hashlib.sha256(norm.encode()).hexdigest()
