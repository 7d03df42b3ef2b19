"""The audit log: appends, proofs a client can check, checkpoints, and offline
verification that names the first bad entry when an entry was edited, dropped or
reordered, or the log rolled back."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault.audit import AuditLog, Entry, cosign_checkpoint, latest_checkpoint, log_path, show, verify
from vault.errors import FormatError, LogTamperError, VaultError
from vault.merkle import leaf_hash, verify_consistency, verify_inclusion
from vault.note import COSIGNATURE_V1, Checkpoint, Signer, cosign, generate_signer, open_note

ORIGIN = "vault.example/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return generate_signer(ORIGIN)


@pytest.fixture(scope="module")
def provider() -> Signer:
    return generate_signer("provider.example/acme", COSIGNATURE_V1)


def clock() -> int:
    return 1_796_300_000_123_456_789


def make_log(root: Path, signer: Signer, n: int, *, every: int | None = 10) -> AuditLog:
    log = AuditLog.create(root, signer, checkpoint_every=every, clock=clock)
    for i in range(n):
        log.append(f"lab:acme/user{i % 3}", ("login", "request", "pull")[i % 3],
                   dataset=("kitchen", "garage")[i % 2], details={"i": i})
    return log


def sql(root: Path, statement: str, *params: object) -> None:
    db = sqlite3.connect(log_path(root))
    db.execute(statement, params)
    db.commit()
    db.close()


def test_entries_read_back_as_written(tmp_path: Path, signer: Signer) -> None:
    log = AuditLog.create(tmp_path, signer, clock=clock)
    e0 = log.append("lab:acme/alice", "login")
    e1 = log.append("lab:acme/alice", "pull", dataset="kitchen",
                    details={"release": "v3", "bytes": [0, 1 << 20], "episodes": ["ep_1"]})
    assert (e0.index, e1.index) == (0, 1)
    assert e1.prev == e0.leaf_hash and e0.prev == bytes(32)
    assert e1.time == "2026-12-03T12:13:20.123456Z"
    assert log.entry(1) == e1 == Entry.from_body(e1.body)
    assert [e.action for e in log.entries()] == ["login", "pull"]
    assert e1.body.startswith(b'{"index":1,"prev":"')
    assert log.size == 2
    log.close()


def test_bad_entries_are_refused(tmp_path: Path, signer: Signer) -> None:
    log = AuditLog.create(tmp_path, signer)
    with pytest.raises(VaultError, match="lower-case name"):
        log.append("x", "Pull Data")
    with pytest.raises(VaultError, match="non-empty string"):
        log.append("", "pull")
    with pytest.raises(VaultError, match="JSON"):
        log.append("x", "pull", details={"when": object()})
    assert log.size == 0


def test_show_lists_every_access_to_one_dataset(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 9).close()
    kitchen = show(tmp_path, "kitchen")
    assert [e.index for e in kitchen] == [0, 2, 4, 6, 8]
    assert all(e.dataset == "kitchen" for e in kitchen)
    assert show(tmp_path, "attic") == []


def test_a_client_checks_inclusion_and_consistency_against_signed_checkpoints(
        tmp_path: Path, signer: Signer) -> None:
    log = make_log(tmp_path, signer, 25, every=None)
    old_note = log.checkpoint()
    for i in range(12):
        log.append("lab:acme/bob", "pull", dataset="kitchen", details={"i": i})
    new_note = log.checkpoint()
    assert log.checkpoint() == new_note  # nothing new: the same checkpoint
    old = Checkpoint.parse(open_note(old_note, [signer.verifier()])[0])
    new = Checkpoint.parse(open_note(new_note, [signer.verifier()])[0])
    assert (old.size, new.size, new.origin) == (25, 37, ORIGIN)
    entry = log.entry(30)
    verify_inclusion(leaf_hash(entry.body), 30, new.size, log.inclusion_proof(30), new.root_hash)
    verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                       log.consistency_proof(old.size))
    assert log.head() == new
    log.close()


def test_checkpoints_are_signed_every_n_entries(tmp_path: Path, signer: Signer) -> None:
    log = make_log(tmp_path, signer, 35, every=10)
    note = log.latest_checkpoint()
    assert note is not None and Checkpoint.parse(note).size == 30
    log.close()
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert (report.size, report.checkpoints, report.unsigned) == (35, 3, 5)


def test_a_log_is_opened_only_with_its_own_key(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 1).close()
    with pytest.raises(VaultError, match="is not this log's key"):
        AuditLog(tmp_path, signer=generate_signer(ORIGIN))
    with AuditLog(tmp_path) as log:  # without a key: appends, no checkpoints
        log.append("x", "pull")
        with pytest.raises(VaultError, match="without its signing key"):
            log.checkpoint()
    with pytest.raises(VaultError, match="exists already"):
        AuditLog.create(tmp_path, signer)
    with pytest.raises(VaultError, match="no audit log"):
        AuditLog(tmp_path / "elsewhere")


def test_an_intact_log_verifies_with_a_kept_cosigned_checkpoint(
        tmp_path: Path, signer: Signer, provider: Signer) -> None:
    log = make_log(tmp_path, signer, 40)
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(cosign(log.checkpoint(), provider))
    log.append("lab:acme/bob", "pull", dataset="kitchen")
    log.close()
    report = verify(tmp_path, kept, keys=[provider.verifier().vkey()])
    assert report.ok, report.problem
    assert report.kept is not None and report.kept.size == 40
    assert report.cosigners == ("provider.example/acme",)
    assert "intact: 41 entries" in report.summary()


def test_an_edited_entry_is_named(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 30).close()
    sql(tmp_path, "UPDATE entries SET body = replace(body, 'pull', 'view') WHERE idx = 17")
    report = verify(tmp_path)
    assert not report.ok and report.first_bad == 17
    assert "entry 17 was edited" in (report.problem or "")


def test_an_edited_entry_whose_stored_hash_was_rewritten_too_is_named(
        tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 30).close()
    db = sqlite3.connect(log_path(tmp_path))
    (body,) = db.execute("SELECT body FROM entries WHERE idx = 12").fetchone()
    forged = bytes(body).replace(b'"i":12', b'"i":99')
    db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = 12", (forged, leaf_hash(forged)))
    db.commit()
    db.close()
    report = verify(tmp_path)
    assert report.first_bad == 12
    assert "entry 12 was edited: entry 13 records hash" in (report.problem or "")


def test_a_dropped_entry_is_named(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 30).close()
    sql(tmp_path, "DELETE FROM entries WHERE idx = 8")
    report = verify(tmp_path)
    assert report.first_bad == 8
    assert "entry 8 is missing (dropped)" in (report.problem or "")


def test_a_dropped_entry_hidden_by_renumbering_is_named(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 30).close()
    sql(tmp_path, "DELETE FROM entries WHERE idx = 8")
    sql(tmp_path, "UPDATE entries SET idx = idx - 1 WHERE idx > 8")
    report = verify(tmp_path)
    assert report.first_bad == 8
    assert "the log holds entry 9 in its place" in (report.problem or "")


def test_reordered_entries_are_named(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 30).close()
    sql(tmp_path, "UPDATE entries SET idx = -1 WHERE idx = 21")
    sql(tmp_path, "UPDATE entries SET idx = 21 WHERE idx = 22")
    sql(tmp_path, "UPDATE entries SET idx = 22 WHERE idx = -1")
    report = verify(tmp_path)
    assert report.first_bad == 21
    assert "entry 21 is not where it belongs: the log holds entry 22" in (report.problem or "")


def test_a_log_rewritten_from_an_entry_on_is_caught_by_its_checkpoints(
        tmp_path: Path, signer: Signer) -> None:
    """Whoever holds the disk but not the signing key rewrites entry 23 and every later
    one consistently (index, chain, stored hashes): only the signatures catch it."""
    make_log(tmp_path, signer, 30, every=10).close()
    db = sqlite3.connect(log_path(tmp_path))
    rows = db.execute("SELECT idx, body FROM entries WHERE idx >= 22 ORDER BY idx").fetchall()
    prev = leaf_hash(bytes(rows[0][1]))
    for idx, body in rows[1:]:
        entry = Entry.from_body(bytes(body))
        rest = bytes(body)[bytes(body).index(b'"time"'):]
        if idx == 23:
            rest = rest.replace(b'"pull"', b'"view"')
        forged = b'{"index":%d,"prev":"%s",' % (idx, prev.hex().encode()) + rest
        assert entry.index == idx
        db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = ?",
                   (forged, leaf_hash(forged), idx))
        prev = leaf_hash(forged)
    db.commit()
    db.close()
    report = verify(tmp_path)
    assert not report.ok and report.first_bad == 20
    assert ("entries 20..29 are not what the checkpoint of 30 entries signed"
            in (report.problem or ""))


def test_a_rolled_back_log_is_caught_by_its_own_checkpoints(tmp_path: Path,
                                                            signer: Signer) -> None:
    make_log(tmp_path, signer, 30, every=10).close()
    sql(tmp_path, "DELETE FROM entries WHERE idx >= 25")
    report = verify(tmp_path)
    assert report.first_bad == 25
    assert "a checkpoint was signed for 30 entries and the log holds 25" in (report.problem or "")


def test_a_log_restored_from_an_old_copy_is_caught_by_the_kept_checkpoint(
        tmp_path: Path, signer: Signer, provider: Signer) -> None:
    root = tmp_path / "vault"
    log = make_log(root, signer, 20, every=None)
    log.close()
    backup = tmp_path / "backup"
    shutil.copytree(root, backup)
    log = AuditLog(root, signer=signer)
    for i in range(5):
        log.append("lab:acme/eve", "pull", dataset="kitchen", details={"secret": i})
    kept = cosign(log.checkpoint(), provider)
    log.close()
    shutil.rmtree(root)
    shutil.copytree(backup, root)  # the five pulls are gone, and so are their checkpoints
    assert verify(root).ok  # from the inside, an old copy looks fine...
    report = verify(root, kept, keys=[provider.verifier().vkey()])
    assert not report.ok and report.first_bad == 20  # ...but not to the provider
    assert "the kept checkpoint has 25 entries and the log holds 20 (rolled back)" in (
        report.problem or "")


def test_a_replaced_log_key_is_caught_by_the_kept_checkpoint(
        tmp_path: Path, signer: Signer, provider: Signer) -> None:
    root = tmp_path / "vault"
    log = make_log(root, signer, 12)
    kept = cosign(log.checkpoint(), provider)
    log.close()
    # rebuild the whole log under a new key, with one entry changed
    other = generate_signer(ORIGIN)
    shutil.rmtree(root)
    forged = AuditLog.create(root, other, checkpoint_every=10, clock=clock)
    for i in range(12):
        forged.append(f"lab:acme/user{i % 3}", ("login", "request", "pull")[i % 3],
                      dataset=("kitchen", "garage")[i % 2], details={"i": i if i != 5 else 6})
    forged.checkpoint()
    forged.close()
    assert verify(root).ok
    report = verify(root, kept)
    assert not report.ok and "the kept checkpoint" in (report.problem or "")
    report = verify(root, keys=[signer.verifier().vkey()])  # the provider trusts the old key
    assert not report.ok and "signed by none of the known keys" in (report.problem or "")


def test_a_kept_checkpoint_must_carry_the_cosignatures_asked_for(
        tmp_path: Path, signer: Signer, provider: Signer) -> None:
    log = make_log(tmp_path, signer, 5)
    note = log.checkpoint()
    log.close()
    report = verify(tmp_path, note, keys=[provider.verifier().vkey()])
    assert not report.ok and "no cosignature by provider.example/acme" in (report.problem or "")
    forged = cosign(note, provider).replace("\n5\n", "\n4\n")
    report = verify(tmp_path, forged, keys=[provider.verifier().vkey()])
    assert not report.ok and "does not verify" in (report.problem or "")


def test_a_forged_checkpoint_in_the_log_is_reported(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 10, every=None).close()
    fake = Checkpoint(ORIGIN, 10, bytes(32)).sign(signer)
    sql(tmp_path, "INSERT INTO checkpoints VALUES (10, ?)", fake)
    report = verify(tmp_path)
    assert not report.ok and report.first_bad == 0
    sql(tmp_path, "UPDATE checkpoints SET note = ? WHERE size = 10",
        Checkpoint(ORIGIN, 10, bytes(32)).sign(generate_signer(ORIGIN)))
    report = verify(tmp_path)
    assert not report.ok and report.first_bad is None
    assert "signed by none of the known keys" in (report.problem or "")


def test_a_log_of_an_unknown_format_is_refused(tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 1).close()
    sql(tmp_path, "UPDATE meta SET value = '2' WHERE key = 'format'")
    with pytest.raises(FormatError, match="format '2'"):
        verify(tmp_path)


def test_appends_from_several_threads_and_handles_form_one_chain(tmp_path: Path,
                                                                signer: Signer) -> None:
    log = AuditLog.create(tmp_path, signer, checkpoint_every=25)
    other = AuditLog(tmp_path, signer=signer, checkpoint_every=25)

    def work(handle: AuditLog, who: str) -> None:
        for i in range(40):
            handle.append(who, "pull", dataset="kitchen", details={"i": i})

    threads = [threading.Thread(target=work, args=(h, f"lab:{n}"))
               for n, h in enumerate([log, log, other, other])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    other.close()
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert report.size == 160


def test_a_batch_becomes_one_entry_per_event_with_its_checkpoints(tmp_path: Path,
                                                                  signer: Signer) -> None:
    log = AuditLog.create(tmp_path, signer, checkpoint_every=10, clock=clock)
    log.append("lab:acme/alice", "login")
    size = log.append_many({"actor": "job:42", "action": "job.event", "dataset": "kitchen",
                            "details": {"step": i}} for i in range(24))
    assert size == 25 == log.size
    assert [e.details["step"] for e in log.entries(1, 4)] == [0, 1, 2]
    with pytest.raises(VaultError, match="lower-case name"):
        log.append_many([{"actor": "x", "action": "ok"}, {"actor": "x", "action": "BAD"}])
    assert log.size == 25  # all or nothing
    log.close()
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert (report.checkpoints, report.unsigned) == (2, 5)


def test_a_provider_cosigns_only_checkpoints_that_extend_what_it_kept(
        tmp_path: Path, signer: Signer, provider: Signer) -> None:
    log = make_log(tmp_path, signer, 20)
    first = cosign_checkpoint(tmp_path, provider)
    assert Checkpoint.parse(first).size == 20
    for i in range(10):
        log.append("lab:acme/bob", "pull", dataset="kitchen", details={"i": i})
    second = cosign_checkpoint(tmp_path, provider, previous=first)
    assert Checkpoint.parse(second).size == 30 == Checkpoint.parse(latest_checkpoint(tmp_path) or "").size
    # a checkpoint of a forked log (same key, other entries) is not cosigned
    fork = Checkpoint(ORIGIN, 30, bytes(32)).sign(signer)
    with pytest.raises(LogTamperError, match="not cosigned: entries 20..29 .* it forked"):
        cosign_checkpoint(tmp_path, provider, checkpoint=fork, previous=second)
    # a "previous" the provider never cosigned is not trusted
    with pytest.raises(LogTamperError, match="no cosignature by provider.example/acme"):
        cosign_checkpoint(tmp_path, provider, previous=log.checkpoint())
    with pytest.raises(VaultError, match="not a cosigner key"):
        cosign_checkpoint(tmp_path, signer)
    log.close()


def test_a_log_whose_tables_were_dropped_or_overwritten_is_refused_clearly(
        tmp_path: Path, signer: Signer) -> None:
    make_log(tmp_path, signer, 3).close()
    sql(tmp_path, "DROP TABLE entries")
    with pytest.raises(FormatError, match="cannot be read as an audit log: no such table"):
        verify(tmp_path)
    log_path(tmp_path).write_bytes(b"garbage" * 1000)
    with pytest.raises(FormatError, match="is not an audit log"):
        verify(tmp_path)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(3, 40), st.sampled_from(["edit", "drop", "swap", "truncate"]), st.data())
def test_any_single_tampering_is_pinned_to_its_entry(
        tmp_path_factory: pytest.TempPathFactory, signer: Signer, n: int, kind: str,
        data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("log")
    make_log(root, signer, n, every=None).close()
    kept = None
    if kind == "truncate":
        with AuditLog(root, signer=signer, checkpoint_every=None) as log:
            kept = log.checkpoint()
    at = data.draw(st.integers(0, n - 2), label="entry")
    if kind == "edit":
        sql(root, "UPDATE entries SET body = replace(body, '\"i\":', '\"j\":') WHERE idx = ?", at)
    elif kind == "drop":
        sql(root, "DELETE FROM entries WHERE idx = ?", at)
    elif kind == "swap":
        sql(root, "UPDATE entries SET idx = -1 WHERE idx = ?", at)
        sql(root, "UPDATE entries SET idx = ? WHERE idx = ?", at, at + 1)
        sql(root, "UPDATE entries SET idx = ? WHERE idx = -1", at + 1)
    else:
        sql(root, "DELETE FROM entries WHERE idx >= ?", at)
        sql(root, "DELETE FROM checkpoints")
    report = verify(root, kept)
    assert not report.ok
    assert report.first_bad == at, report.problem


def test_an_event_mapping_from_the_catalogs_hook_is_recorded_as_is(tmp_path: Path,
                                                                  signer: Signer) -> None:
    log = AuditLog.create(tmp_path, signer, clock=clock)
    on_event = log.record
    entry = on_event({"actor": "lab:acme/alice", "action": "request_submitted",
                      "dataset": "kitchen", "details": {"request": 7, "purpose": "grasping"}})
    assert (entry.index, entry.action, entry.details["request"]) == (0, "request_submitted", 7)
    with pytest.raises(VaultError, match=r"not \['when'\]"):
        on_event({"actor": "x", "action": "login", "when": 3})
    with pytest.raises(VaultError, match="non-empty string"):
        on_event({"action": "login"})
    assert log.size == 1
    log.close()
