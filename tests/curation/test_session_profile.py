"""A session whose profile is malformed: flagged, never silently dropped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curation import curate
from curation.config import CurateConfig
from curation.errors import CurationError
from demofab.cli import main
from recorder.contract import STATE_FILE

from .conftest import write_foreign_bag


def _episodes(release: Path) -> list[dict]:
    return json.loads((release / "episodes.json").read_text())["episodes"]


def _broken(session: Path, out: Path, profile: object) -> Path:
    """A copy of ``session`` whose state file holds ``profile`` as its profile."""
    copy = out / session.name
    shutil.copytree(session, copy)
    state = yaml.safe_load((copy / STATE_FILE).read_text())
    state["profile"] = profile
    (copy / STATE_FILE).write_text(yaml.safe_dump(state))
    return copy


def test_malformed_session_profile_flags_every_episode_with_the_file_and_the_error(
        tmp_path: Path, clean_session: Path) -> None:
    session = _broken(clean_session, tmp_path, {"name": "humanoid", "format_version": 99})
    eps = _episodes(curate([session], tmp_path / "rel", "r").release)
    assert len(eps) == 2
    for e in eps:
        assert e["flag_names"] == ["profile_invalid"]
        (why,) = [r["detail"] for r in e["flag_reasons"] if r["flag"] == "profile_invalid"]
        assert str(session / STATE_FILE) in why and "format_version 99" in why
        assert "inferred" in why


def test_without_a_usable_profile_the_rates_are_inferred_from_the_data(
        tmp_path: Path, clean_session: Path) -> None:
    session = _broken(clean_session, tmp_path, {"name": "humanoid",
                                                 "topics": [{"topic": "/joint_states"}]})
    (e, _) = _episodes(curate([session], tmp_path / "rel", "r").release)
    js = e["quality_streams"]["/joint_states"]
    assert js["rate_source"] == "inferred" and js["nominal_rate_hz"] == pytest.approx(500, rel=0.01)
    cam = e["quality_streams"]["/camera/head/image_raw/compressed"]
    assert cam["rate_source"] == "inferred" and cam["nominal_rate_hz"] == pytest.approx(30, rel=0.01)


def test_unreadable_state_file_is_a_profile_flag_too(tmp_path: Path, clean_session: Path) -> None:
    copy = tmp_path / clean_session.name
    shutil.copytree(clean_session, copy)
    (copy / STATE_FILE).write_text("profile: [unclosed\n")
    eps = _episodes(curate([copy], tmp_path / "rel", "r").release)
    assert eps and all(e["flag_names"] == ["profile_invalid"] for e in eps)
    assert all("not valid YAML" in e["flag_reasons"][0]["detail"] for e in eps)


def test_release_show_and_the_report_name_the_bad_profile(
        tmp_path: Path, clean_session: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = _broken(clean_session, tmp_path, {"name": "humanoid", "format_version": 99})
    assert main(["curate", str(session), "--out", str(tmp_path / "rel"), "--name", "r"]) == 0
    capsys.readouterr()
    assert main(["release", "show", str(tmp_path / "rel" / "r")]) == 0
    shown = capsys.readouterr().out
    assert "profile_invalid (episodes 0, 1):" in shown and "format_version 99" in shown
    assert main(["curate-report", str(tmp_path / "rel" / "r"), "--out",
                 str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "profile_invalid" in html and "format_version 99" in html


def test_a_bad_profile_given_with_profile_is_an_error(tmp_path: Path) -> None:
    bag = write_foreign_bag(tmp_path / "bag", pattern=[(2.0, True)])
    bad = tmp_path / "bad.yaml"
    bad.write_text("format_version: 99\nname: bad\n")
    with pytest.raises(CurationError, match="bad.yaml"):
        curate([bag], tmp_path / "rel", "r", config=CurateConfig(profile=str(bad)))
    p = subprocess.run([sys.executable, "-m", "demofab.cli", "curate", str(bag), "--out",
                        str(tmp_path / "rel"), "--name", "r", "--profile", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "format_version 99" in p.stderr
    assert not (tmp_path / "rel" / "r" / "v1").exists()
