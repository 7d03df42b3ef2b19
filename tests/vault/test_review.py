"""Review before viewing: the request state machine, the review rules, two-step approval,
grants, and reviewers approving at the same moment on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.vault.pgserver import Clock, database_url, postgres_server, release_dir  # noqa: F401
from vault.catalog import Catalog
from vault.db import CatalogError, ConfirmationError, Forbidden, NotFound, ReviewError, TransitionError
from vault.identities import Identities, Identity, Role
from vault.review import TRANSITIONS, Action, RequestState, RequestView, Review

HEAD = "camera.head.image_raw.compressed"
S = RequestState


@dataclass
class World:
    clock: Clock
    catalog: Catalog
    ids: Identities
    review: Review
    events: list[dict[str, Any]]
    streams: tuple[str, ...]

    def __getitem__(self, name: str) -> Identity:
        return self.ids.get(name)


def make_world(url: str, release: Path) -> World:
    """acme's dataset ``pick`` (one approval needed) with a release; reviewers rev1, rev2 and
    revlab (also a member of lab-a); lab-a members alice and carol; lab-b member bob."""
    clock = Clock()
    catalog = Catalog(url, clock=clock)
    events: list[dict[str, Any]] = []
    ids = Identities(catalog)
    catalog.create_provider("acme")
    catalog.create_dataset("acme", "pick", required_approvals=1)
    info = catalog.import_release("pick", release)
    for lab in ("lab-a", "lab-b"):
        ids.create_lab(lab)
    for name in ("prov", "rev1", "rev2", "revlab", "alice", "carol", "bob"):
        ids.create_identity(name)
    ids.assign("prov", Role.PROVIDER, provider="acme")
    for name in ("rev1", "rev2", "revlab"):
        ids.appoint_reviewer(ids.get("prov"), name, "pick")
    for name, lab in (("alice", "lab-a"), ("carol", "lab-a"), ("revlab", "lab-a"), ("bob", "lab-b")):
        ids.assign(name, Role.LAB_MEMBER, lab=lab)
    return World(clock, catalog, ids, Review(catalog, events.append), events, info.stream_names)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, release_dir: Path) -> Iterator[World]:  # noqa: F811
    """One SQLite world for the tests that make requests of their own and change no rule."""
    w = make_world(str(tmp_path_factory.mktemp("vault")), release_dir)
    yield w
    w.catalog.close()


@pytest.fixture
def world(tmp_path: Path, release_dir: Path) -> Iterator[World]:  # noqa: F811
    """A world of its own (SQLite), for tests that change the rules or the clock."""
    w = make_world(str(tmp_path / "vault"), release_dir)
    yield w
    w.catalog.close()


@pytest.fixture
def any_world(database_url: str, release_dir: Path) -> Iterator[World]:  # noqa: F811
    """A world of its own on each backend."""
    w = make_world(database_url, release_dir)
    yield w
    w.catalog.close()


def submit(w: World, who: str = "alice", **scope: Any) -> RequestView:
    return w.review.submit(w[who], "pick", 1, purpose="train a grasp policy", **scope)


def approve(w: World, request_id: int, reviewer: str) -> RequestView:
    code = w.review.prepare_approval(request_id, w[reviewer])
    return w.review.confirm_approval(request_id, w[reviewer], code)


def request_in(w: World, state: RequestState) -> int:
    """A new request brought into ``state`` the way users get there."""
    r = submit(w)
    if state is S.SUBMITTED:
        return r.id
    if state is S.WITHDRAWN:
        w.review.withdraw(r.id, w["alice"])
        return r.id
    w.review.start_review(r.id, w["rev1"])
    if state is S.CHANGES_REQUESTED:
        w.review.request_changes(r.id, w["rev1"], "leave out the head camera")
    elif state is S.REJECTED:
        w.review.reject(r.id, w["rev1"], "the purpose is not covered by the contract")
    elif state in (S.APPROVED, S.REVOKED):
        approve(w, r.id, "rev1")
        if state is S.REVOKED:
            w.review.revoke(r.id, w["prov"], "the contract ended")
    assert w.review.get(r.id).state is state
    return r.id


def act(w: World, request_id: int, action: Action) -> RequestView:
    """Do ``action`` as the one who may (a reviewer who has not decided yet, the lab, the
    provider)."""
    review, rev = w.review, w["rev2"]
    if action is Action.START_REVIEW:
        return review.start_review(request_id, rev)
    if action is Action.APPROVE:
        return approve(w, request_id, "rev2")
    if action is Action.REQUEST_CHANGES:
        return review.request_changes(request_id, rev, "say which episodes")
    if action is Action.REJECT:
        return review.reject(request_id, rev, "not for this purpose")
    if action is Action.WITHDRAW:
        return review.withdraw(request_id, w["alice"])
    if action is Action.RESUBMIT:
        return review.resubmit(request_id, w["alice"], purpose="train a grasp policy, episodes 0-1")
    return review.revoke(request_id, w["prov"], "the lab broke the terms")


@pytest.mark.parametrize("action", list(Action), ids=str)
@pytest.mark.parametrize("state", list(RequestState), ids=str)
def test_every_transition_is_allowed_or_refused_as_the_state_machine_says(
        shared: World, state: RequestState, action: Action) -> None:
    rid = request_in(shared, state)
    before = len(shared.events)
    expected = TRANSITIONS[state].get(action)
    if expected is None:
        with pytest.raises(TransitionError, match=f"request {rid} is {state.value}: "
                                                  f"{action.value} is not allowed"):
            act(shared, rid, action)
        assert shared.review.get(rid).state is state
        assert len(shared.events) == before  # nothing happened, nothing recorded
    else:
        assert act(shared, rid, action).state is expected
        assert shared.review.get(rid).state is expected
        assert shared.events[-1]["dataset"] == "pick"


def test_final_states_allow_nothing_and_say_so(shared: World) -> None:
    rid = request_in(shared, S.REJECTED)
    with pytest.raises(TransitionError, match=r"allows nothing \(it is final\)"):
        shared.review.withdraw(rid, shared["alice"])


def test_nobody_reviews_their_own_request_nor_their_own_labs(shared: World) -> None:
    own = submit(shared, "revlab")
    with pytest.raises(Forbidden, match="'revlab' made this request; nobody reviews their own"):
        shared.review.start_review(own.id, shared["revlab"])
    theirs = submit(shared, "alice")
    with pytest.raises(Forbidden, match="'revlab' is a member of the requesting lab 'lab-a'"):
        shared.review.start_review(theirs.id, shared["revlab"])
    for who in ("bob", "alice", "prov"):
        with pytest.raises(Forbidden, match=f"'{who}' is not a reviewer of dataset 'pick'"):
            shared.review.start_review(theirs.id, shared[who])
    shared.review.start_review(theirs.id, shared["rev1"])
    with pytest.raises(Forbidden, match="member of the requesting lab"):
        shared.review.prepare_approval(theirs.id, shared["revlab"])
    # a reviewer of another lab may review revlab's request
    shared.review.start_review(own.id, shared["rev1"])
    assert approve(shared, own.id, "rev2").state is S.APPROVED


def test_reject_and_changes_requested_need_a_reason(shared: World) -> None:
    rid = request_in(shared, S.UNDER_REVIEW)
    for reason in ("", "   "):
        with pytest.raises(ReviewError, match=f"request {rid}: reject needs a reason"):
            shared.review.reject(rid, shared["rev1"], reason)
        with pytest.raises(ReviewError, match=f"request {rid}: request_changes needs a reason"):
            shared.review.request_changes(rid, shared["rev1"], reason)
    assert shared.review.get(rid).state is S.UNDER_REVIEW
    view = shared.review.request_changes(rid, shared["rev1"], "  name the episodes  ")
    assert view.reason == "name the episodes"
    assert [(d.reviewer, d.decision, d.reason) for d in view.decisions] == [
        ("rev1", "request_changes", "name the episodes")]


def test_approval_takes_two_deliberate_steps(world: World) -> None:
    rid = request_in(world, S.SUBMITTED)
    with pytest.raises(TransitionError, match="submitted: approve is not allowed"):
        world.review.prepare_approval(rid, world["rev1"])
    world.review.start_review(rid, world["rev1"])
    with pytest.raises(ConfirmationError, match="'rev1' has no prepared approval"):
        world.review.confirm_approval(rid, world["rev1"], "0000-0000")
    code = world.review.prepare_approval(rid, world["rev1"])
    view = world.review.get(rid)
    assert view.state is S.UNDER_REVIEW and view.grant_id is None and view.approvals == ()
    with pytest.raises(ConfirmationError, match="the code is wrong; prepare the approval again"):
        world.review.confirm_approval(rid, world["rev1"], "0000-0000")
    # a wrong code cancels the prepared approval: the right one no longer works
    with pytest.raises(ConfirmationError, match="has no prepared approval"):
        world.review.confirm_approval(rid, world["rev1"], code)
    code = world.review.prepare_approval(rid, world["rev1"])
    world.clock.advance(timedelta(minutes=10))
    with pytest.raises(ConfirmationError, match="the code expired at"):
        world.review.confirm_approval(rid, world["rev1"], code)
    with pytest.raises(ConfirmationError, match="no prepared approval"):  # another's code
        world.review.confirm_approval(rid, world["rev2"], world.review.prepare_approval(
            rid, world["rev1"]))
    code = world.review.prepare_approval(rid, world["rev2"])
    view = world.review.confirm_approval(rid, world["rev2"], code.lower())
    assert view.state is S.APPROVED and view.approvals == ("rev2",) and view.grant_id is not None
    actions = [e["action"] for e in world.events]
    assert actions.count("approval_confirmation_failed") == 2
    assert actions[-2:] == ["request_approved", "grant_created"]


def test_two_distinct_reviewers_must_approve_when_the_provider_says_two(world: World) -> None:
    assert world.review.set_required_approvals("pick", 2, world["prov"]) == 2
    rid = request_in(world, S.UNDER_REVIEW)
    first = approve(world, rid, "rev1")
    assert first.state is S.UNDER_REVIEW and first.approvals == ("rev1",)
    assert first.grant_id is None and world.review.grants.list() == []
    assert world.events[-1]["action"] == "approval_recorded"
    assert world.events[-1]["details"]["approvals"] == ["rev1"]
    with pytest.raises(ReviewError, match="'rev1' already decided in round 1"):
        world.review.prepare_approval(rid, world["rev1"])
    assert [r.id for r in world.review.pending(world["rev1"])] == []
    assert [r.id for r in world.review.pending(world["rev2"])] == [rid]
    second = approve(world, rid, "rev2")
    assert second.state is S.APPROVED and second.approvals == ("rev1", "rev2")
    assert len(world.review.grants.list()) == 1


def test_only_the_provider_sets_the_number_of_approvals(world: World) -> None:
    with pytest.raises(Forbidden, match="'rev1' may not set the review rules of dataset 'pick'"):
        world.review.set_required_approvals("pick", 2, world["rev1"])
    with pytest.raises(ReviewError, match="required approvals must be 1 or 2, not 3"):
        world.review.set_required_approvals("pick", 3, world["prov"])
    assert world.catalog.describe_dataset("pick").required_approvals == 1


def test_a_changed_request_starts_a_new_round_without_the_old_approvals(any_world: World) -> None:
    world = any_world
    world.review.set_required_approvals("pick", 2, world["prov"])
    rid = request_in(world, S.UNDER_REVIEW)
    approve(world, rid, "rev1")
    stale = world.review.prepare_approval(rid, world["rev2"])
    world.review.request_changes(rid, world["rev2"], "leave out the head camera")
    without_head = [s for s in world.streams if s != HEAD]
    with pytest.raises(Forbidden, match="only a member of lab 'lab-a' may resubmit"):
        world.review.resubmit(rid, world["bob"], streams=without_head)
    view = world.review.resubmit(rid, world["carol"], streams=without_head)
    assert (view.state, view.round, view.approvals) == (S.SUBMITTED, 2, ())
    assert view.streams == tuple(sorted(without_head)) and view.purpose == "train a grasp policy"
    world.review.start_review(rid, world["rev1"])
    with pytest.raises(ConfirmationError, match="no prepared approval"):
        world.review.confirm_approval(rid, world["rev2"], stale)
    assert approve(world, rid, "rev1").state is S.UNDER_REVIEW  # round 2 needs both again
    done = approve(world, rid, "rev2")
    assert done.state is S.APPROVED and done.approvals == ("rev1", "rev2")
    grant = world.review.grants.get(done.grant_id or -1)
    assert grant.streams == tuple(sorted(without_head)) and grant.episodes is None
    assert [d.round for d in done.decisions] == [1, 1, 2, 2]


def test_a_grant_covers_its_episodes_and_streams_for_its_lab_only(any_world: World) -> None:
    world = any_world
    streams = [s for s in world.streams if s != HEAD]
    r = submit(world, episodes=[2, 0, 2], streams=streams, duration=timedelta(days=7))
    assert r.episodes == (0, 2)
    world.review.start_review(r.id, world["rev1"])
    done = approve(world, r.id, "rev1")
    g = world.review.grants.check(world["alice"], "pick", 1, 0, "joint_states")
    assert g.id == done.grant_id and g.lab == "lab-a" and g.episodes == (0, 2)
    assert g.expires_at == world.clock.now + timedelta(days=7)
    assert world.review.grants.check(world["carol"], "pick", 1, 2, "imu") == g  # the whole lab
    refused = [(("alice", 1, "joint_states"), "do not cover dataset 'pick' release 1 episode 1"),
               (("alice", 0, HEAD), f"do not cover .* stream '{HEAD}'"),
               (("alice", None, "imu"), r"do not cover .*\(all episodes\)"),
               (("alice", 0, None), r"do not cover .*\(all streams\)"),
               (("bob", 0, "imu"), r"no grant of lab\(s\) \['lab-b'\]"),
               (("prov", 0, "imu"), "'prov' is a member of no lab")]
    for (who, episode, stream), message in refused:
        with pytest.raises(Forbidden, match=message):
            world.review.grants.check(world[who], "pick", 1, episode, stream)
    with pytest.raises(NotFound, match="no release version 2"):
        world.review.grants.check(world["alice"], "pick", 2, 0, "imu")
    world.clock.advance(timedelta(days=7))
    with pytest.raises(Forbidden, match=f"grant {g.id} .* expired at"):
        world.review.grants.check(world["alice"], "pick", 1, 0, "joint_states")
    assert world.review.grants.list(live=True) == []
    assert world.review.get(r.id).state is S.APPROVED  # expiry is not a review decision


def test_a_revoked_grant_stops_at_the_next_check(any_world: World) -> None:
    world = any_world
    rid = request_in(world, S.APPROVED)
    grant = world.review.grants.check(world["alice"], "pick", 1)  # the whole release
    with pytest.raises(Forbidden, match="only its provider, its reviewers or an admin may"):
        world.review.revoke(rid, world["alice"], "I want out")
    with pytest.raises(ReviewError, match="revoke needs a reason"):
        world.review.grants.revoke(grant.id, world["prov"], "")
    revoked = world.review.grants.revoke(grant.id, world["rev2"], "terms broken")
    assert revoked.revoked_by == "rev2" and revoked.revoke_reason == "terms broken"
    with pytest.raises(Forbidden, match=f"grant {grant.id} .* was revoked at .*: terms broken"):
        world.review.grants.check(world["alice"], "pick", 1, 0, "imu")
    assert world.review.get(rid).state is S.REVOKED
    assert [e["action"] for e in world.events[-2:]] == ["request_revoked", "grant_revoked"]


def test_leaving_the_lab_ends_access_at_the_next_check(world: World) -> None:
    request_in(world, S.APPROVED)
    world.review.grants.check(world["carol"], "pick", 1, 0, "imu")
    carol = world["carol"]  # an identity authenticated before the change
    world.ids.unassign("carol", Role.LAB_MEMBER, lab="lab-a")
    with pytest.raises(Forbidden, match="'carol' is a member of no lab"):
        world.review.grants.check(carol, "pick", 1, 0, "imu")


def test_a_request_names_real_episodes_streams_a_purpose_and_its_lab(shared: World) -> None:
    alice = shared["alice"]
    bad: list[tuple[dict[str, Any], str]] = [
           ({"episodes": [0, 3]}, r"has episodes 0..2; requested \[3\]"),
           ({"episodes": []}, "requested none"),
           ({"streams": ["imu", "lidar"]}, r"has no stream\(s\) \['lidar'\]"),
           ({"duration": timedelta(days=400)}, "at most 366 days"),
           ({"purpose": "  "}, "needs a purpose"),
           ({"purpose": "x" * 10_001}, "the purpose is 10001 characters; at most 10000")]
    for kwargs, message in bad:
        args: dict[str, Any] = {"purpose": "train"} | kwargs
        with pytest.raises(ReviewError, match=message):
            shared.review.submit(alice, "pick", 1, **args)
    with pytest.raises(Forbidden, match="'alice' is not a member of lab 'lab-b'"):
        shared.review.submit(alice, "pick", 1, purpose="train", lab="lab-b")
    with pytest.raises(ReviewError, match=r"'prov' is a member of no lab"):
        shared.review.submit(shared["prov"], "pick", 1, purpose="train")
    with pytest.raises(NotFound, match="no release version 9"):
        shared.review.submit(alice, "pick", 9, purpose="train")


def test_every_change_is_an_event_for_the_audit_log(world: World) -> None:
    r = submit(world, streams=["imu"])
    world.review.start_review(r.id, world["rev1"])
    approve(world, r.id, "rev1")
    assert [(e["actor"], e["action"]) for e in world.events] == [
        ("alice", "request_submitted"), ("rev1", "review_started"), ("rev1", "approval_prepared"),
        ("rev1", "request_approved"), ("rev1", "grant_created")]
    assert all(e["dataset"] == "pick" and e["details"]["request"] == r.id for e in world.events)
    assert world.events[0]["details"] | {"purpose": ""} == {
        "request": r.id, "release": 1, "lab": "lab-a", "episodes": None, "streams": ["imu"],
        "duration_s": 30 * 86400, "purpose": ""}
    assert world.events[3]["details"]["from"] == "under_review"
    assert world.events[3]["details"]["to"] == "approved"
    json.dumps(world.events, allow_nan=False)  # the audit log takes JSON only


def test_the_events_of_every_kind_of_change_are_json(shared: World) -> None:
    for state in RequestState:
        request_in(shared, state)
    assert {e["action"] for e in shared.events} >= {
        "request_submitted", "review_started", "approval_prepared", "request_approved",
        "grant_created", "changes_requested", "request_rejected", "request_withdrawn",
        "request_revoked", "grant_revoked"}
    assert all(set(e) == {"actor", "action", "dataset", "details"} for e in shared.events)
    json.dumps(shared.events, allow_nan=False)


def test_a_change_the_audit_hook_cannot_record_does_not_happen(world: World) -> None:
    def refuse(event: dict[str, Any]) -> None:
        if event["action"] == "grant_created":
            raise OSError("audit log full")

    strict = Review(world.catalog, refuse)
    rid = request_in(world, S.UNDER_REVIEW)
    code = strict.prepare_approval(rid, world["rev1"])
    with pytest.raises(OSError, match="audit log full"):
        strict.confirm_approval(rid, world["rev1"], code)
    view = strict.get(rid)
    assert view.state is S.UNDER_REVIEW and view.approvals == () and view.grant_id is None
    assert strict.grants.list() == []


def test_a_reviewer_sees_what_waits_for_them(shared: World) -> None:
    r = submit(shared, "bob")
    assert r.id in [x.id for x in shared.review.pending(shared["revlab"])]  # lab-b's request
    own_lab = submit(shared, "carol")
    assert own_lab.id not in [x.id for x in shared.review.pending(shared["revlab"])]
    assert own_lab.id in [x.id for x in shared.review.pending(shared["rev1"])]
    assert shared.review.pending(shared["alice"]) == []
    assert [x.id for x in shared.review.list_requests(lab="lab-b", state="submitted")][-1] == r.id
    with pytest.raises(ReviewError, match="unknown request state 'pending'"):
        shared.review.list_requests(state="pending")


def _race(w: World, request_id: int, reviewers: tuple[str, ...]) -> dict[str, Any]:
    """Every reviewer confirms its prepared approval at the same moment."""
    who = {name: w[name] for name in reviewers}
    codes = {name: w.review.prepare_approval(request_id, who[name]) for name in reviewers}
    barrier = threading.Barrier(len(reviewers))
    results: dict[str, Any] = {}

    def confirm(name: str) -> None:
        barrier.wait()
        try:
            results[name] = w.review.confirm_approval(request_id, who[name], codes[name])
        except CatalogError as exc:
            results[name] = exc

    threads = [threading.Thread(target=confirm, args=(n,)) for n in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_reviewers_approving_at_once_make_exactly_one_grant(any_world: World) -> None:
    w = any_world
    for _ in range(3):  # one approval needed: one wins, the other finds it approved
        rid = request_in(w, S.UNDER_REVIEW)
        results = _race(w, rid, ("rev1", "rev2"))
        views = [r for r in results.values() if isinstance(r, RequestView)]
        errors = [r for r in results.values() if not isinstance(r, RequestView)]
        assert len(views) == 1 and views[0].state is S.APPROVED, results
        assert len(errors) == 1 and isinstance(errors[0], TransitionError), results
        assert len(w.review.grants.list()) == len(w.review.list_requests(state="approved"))
    w.review.set_required_approvals("pick", 2, w["prov"])
    for _ in range(3):  # two needed: both count, one grant
        rid = request_in(w, S.UNDER_REVIEW)
        results = _race(w, rid, ("rev1", "rev2"))
        assert all(isinstance(r, RequestView) for r in results.values()), results
        final = w.review.get(rid)
        assert final.state is S.APPROVED and sorted(final.approvals) == ["rev1", "rev2"]
        assert sum(1 for g in w.review.grants.list() if g.request_id == rid) == 1
    assert sum(e["action"] == "grant_created" for e in w.events) == 6


def test_a_token_acts_only_within_its_scopes(shared: World) -> None:
    lab_token = shared.ids.authenticate(shared.ids.create_token("rev1", ["requests"]).token)
    rid = request_in(shared, S.SUBMITTED)
    with pytest.raises(Forbidden, match=f"'rev1': token {lab_token.token_id} does not carry the "
                                        "scope 'reviews' needed to review"):
        shared.review.start_review(rid, lab_token)
    reader = shared.ids.authenticate(shared.ids.create_token("alice", ["catalog:read"]).token)
    with pytest.raises(Forbidden, match="scope 'requests' needed to request access"):
        shared.review.submit(reader, "pick", 1, purpose="train")
    with pytest.raises(Forbidden, match="scope 'requests' needed to withdraw a request"):
        shared.review.withdraw(rid, reader)
    reviewer = shared.ids.authenticate(shared.ids.create_token("rev1", ["reviews"]).token)
    assert shared.review.start_review(rid, reviewer).state is S.UNDER_REVIEW


def test_checks_running_while_a_grant_is_revoked_are_refused_from_then_on(any_world: World) -> None:
    w = any_world
    rid = request_in(w, S.APPROVED)
    alice = w["alice"]
    revoked, stop = threading.Event(), threading.Event()
    lock = threading.Lock()
    seen: dict[str, list[bool]] = {"before": [], "after": []}

    def pull() -> None:
        while not stop.is_set():
            after = revoked.is_set()  # read before the check starts
            try:
                w.review.grants.check(alice, "pick", 1, 0, "imu")
                ok = True
            except Forbidden:
                ok = False
            with lock:
                seen["after" if after else "before"].append(ok)

    def wait_for(key: str, n: int) -> None:
        while True:
            with lock:
                if len(seen[key]) >= n:
                    return
            stop.wait(0.005)

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for("before", 3)
        w.review.revoke(rid, w["prov"], "the lab broke the terms")
        revoked.set()
        wait_for("after", 6)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert all(seen["before"][:3])
    assert seen["after"] and not any(seen["after"])


def test_the_review_of_a_request_lands_in_the_verifiable_audit_log(tmp_path: Path,
                                                                   release_dir: Path) -> None:  # noqa: F811
    from vault.audit import AuditLog, show, verify
    from vault.note import generate_signer

    root = tmp_path / "vault"
    log = AuditLog.create(root, generate_signer("vault.example/log"), checkpoint_every=None)
    catalog = Catalog(root, on_event=log.record)
    ids = Identities(catalog, on_event=log.record)
    review = Review(catalog, log.record)
    catalog.create_provider("acme", by="admin")
    catalog.create_dataset("acme", "pick", required_approvals=1, by="admin")
    catalog.import_release("pick", release_dir, by="admin")
    ids.create_lab("lab-a")
    for name in ("prov", "rev", "alice"):
        ids.create_identity(name)
    ids.assign("prov", Role.PROVIDER, provider="acme")
    ids.appoint_reviewer(ids.get("prov"), "rev", "pick")
    ids.assign("alice", Role.LAB_MEMBER, lab="lab-a")
    alice = ids.authenticate(ids.create_token("alice", ["requests", "pull"]).token)
    rev = ids.get("rev")
    r = review.submit(alice, "pick", 1, purpose="train", streams=["imu"])
    review.start_review(r.id, rev)
    review.confirm_approval(r.id, rev, review.prepare_approval(r.id, rev))
    review.revoke(r.id, ids.get("prov"), "the contract ended")
    log.checkpoint()
    log.close()
    catalog.close()
    report = verify(root)
    assert report.ok, report.summary()
    actions = [e.action for e in show(root, "pick")]
    assert actions == ["dataset_created", "release_imported", "role_assigned", "request_submitted",
                       "review_started", "approval_prepared", "request_approved",
                       "grant_created", "request_revoked", "grant_revoked"]
