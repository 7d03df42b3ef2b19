"""``demofab vault audit verify|show|cosign`` and ``demofab vault key new``: exit codes and
what they print."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from vault import cli
from vault.audit import AuditLog, log_path
from vault.keys import read_secret_file
from vault.note import Signer


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="demofab")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(["vault", *argv])
    return int(args.func(args))


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """A vault root with a 30-entry log, its key and a provider's cosigner key outside it."""
    root = tmp_path / "vault"
    root.mkdir()
    assert run("key", "new", "log", "--name", "vault.example/log", "--out",
               str(tmp_path / "log.key"), "--root", str(root)) == 0
    assert run("key", "new", "cosigner", "--name", "provider.example/acme", "--out",
               str(tmp_path / "cosigner.key")) == 0
    signer = Signer.from_skey(read_secret_file(tmp_path / "log.key"))
    log = AuditLog.create(root, signer, checkpoint_every=10)
    for i in range(30):
        log.append(f"lab:acme/u{i % 2}", "pull", dataset=("kitchen", "garage")[i % 2],
                   details={"i": i})
    (tmp_path / "latest.checkpoint").write_text(log.checkpoint())
    log.close()
    return root


def test_verify_exits_0_on_an_intact_log_with_a_kept_cosigned_checkpoint(
        vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "kept.checkpoint"
    assert run("audit", "cosign", "--root", str(vault), "--key-file",
               str(tmp_path / "cosigner.key"), "--out", str(kept)) == 0
    out = capsys.readouterr().out
    assert "checked and cosigned the checkpoint of 30 entries as provider.example/acme" in out
    vkey = out.strip().split("your verifier key: ")[1]
    assert run("audit", "verify", "--root", str(vault)) == 0
    assert "audit log intact: 30 entries" in capsys.readouterr().out
    assert run("audit", "verify", "--root", str(vault), "--checkpoint", str(kept),
               "--key", vkey, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["kept_size"] == 30
    assert report["cosigners"] == ["provider.example/acme"]


def test_cosign_refuses_a_log_that_does_not_extend_the_kept_checkpoint(
        vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "kept.checkpoint"
    cosign = ["audit", "cosign", "--root", str(vault), "--key-file",
              str(tmp_path / "cosigner.key"), "--out", str(kept)]
    assert run(*cosign) == 0
    before = kept.read_text()
    db = sqlite3.connect(log_path(vault))  # the operator rolls the log back to 20 entries
    db.execute("DELETE FROM entries WHERE idx >= 20")
    db.execute("DELETE FROM checkpoints WHERE size > 20")
    db.commit()
    db.close()
    assert run(*cosign) == 1
    assert "not cosigned: entry 20 is missing" in capsys.readouterr().err
    assert kept.read_text() == before  # the provider keeps what it had


def test_verify_exits_1_naming_the_first_bad_entry(
        vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(log_path(vault))
    db.execute("DELETE FROM entries WHERE idx = 13")
    db.commit()
    db.close()
    assert run("audit", "verify", "--root", str(vault)) == 1
    assert "entry 13 is missing (dropped)" in capsys.readouterr().err
    assert run("audit", "verify", "--root", str(vault), "--json") == 1
    assert json.loads(capsys.readouterr().out)["first_bad"] == 13


def test_verify_exits_1_when_the_log_was_rolled_back_past_a_kept_checkpoint(
        vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(log_path(vault))
    db.execute("DELETE FROM entries WHERE idx >= 20")
    db.execute("DELETE FROM checkpoints WHERE size > 20")
    db.commit()
    db.close()
    assert run("audit", "verify", "--root", str(vault)) == 0  # consistent with itself
    capsys.readouterr()
    assert run("audit", "verify", "--root", str(vault), "--checkpoint",
               str(tmp_path / "latest.checkpoint")) == 1
    assert "entry 20 is missing" in capsys.readouterr().err


def test_checkpoint_prints_the_newest_signed_checkpoint_for_the_provider_to_cosign(
        vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("audit", "checkpoint", "--root", str(vault)) == 0
    out = capsys.readouterr().out
    assert out == (tmp_path / "latest.checkpoint").read_text()
    assert out.startswith("vault.example/log\n30\n")


def test_verify_exits_2_when_there_is_no_log(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run("audit", "verify", "--root", str(tmp_path)) == 2
    assert "no audit log at" in capsys.readouterr().err


def test_show_lists_the_accesses_to_one_dataset(vault: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run("audit", "show", "--root", str(vault), "--dataset", "garage", "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == list(range(1, 30, 2))
    assert rows[0]["actor"] == "lab:acme/u1" and rows[0]["details"] == {"i": 1}
    assert run("audit", "show", "--root", str(vault), "--dataset", "kitchen") == 0
    out = capsys.readouterr()
    assert "15 entries for dataset kitchen" in out.err
    assert out.out.splitlines()[0].split()[:4][0] == "0"


def test_key_new_refuses_the_vault_root_and_an_existing_file(
        vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("key", "new", "provider", "--out", str(vault / "p.key"), "--root",
               str(vault)) == 2
    assert "inside the vault root" in capsys.readouterr().err
    assert run("key", "new", "provider", "--out", str(tmp_path / "p.key")) == 0
    assert run("key", "new", "provider", "--out", str(tmp_path / "p.key")) == 2
    assert "exists already" in capsys.readouterr().err
    assert run("key", "new", "log", "--out", str(tmp_path / "l.key")) == 2


def test_without_the_vault_extra_demofab_still_starts_and_a_vault_command_says_why_not(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    # a meta-path finder that hides cryptography, as on an install without the extra
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'cryptography':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from demofab.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    root = Path(__file__).resolve().parents[2]

    def demofab(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                              text=True, cwd=root, timeout=120)

    helped = demofab("--help")
    assert helped.returncode == 0 and "vault" in helped.stdout
    refused = demofab("vault", "audit", "verify", "--root", str(tmp_path))
    assert refused.returncode == 2
    assert "pip install 'demofab[vault]'" in refused.stderr
