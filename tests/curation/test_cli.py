"""The command line: curate, curate-report, release list|show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from demofab.cli import main


def _demofab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demofab.cli", *args], capture_output=True,
                          text=True)


def test_curate_json_then_show_json(tmp_path: Path, clean_session: Path, capsys) -> None:
    assert main(["curate", str(clean_session), "--out", str(tmp_path), "--name", "cups",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 1 and out["episodes"] == 2
    assert main(["release", "show", str(tmp_path / "cups"), "--json"]) == 0
    show = json.loads(capsys.readouterr().out)
    cams = [s for s in show["streams"] if s["type"] == "sensor_msgs/msg/CompressedImage"]
    assert len(cams) == 3 and cams[0]["arrays"]["data.values"].endswith("/data/values")
    assert main(["release", "list", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["version"] == 1


def test_missing_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    p = _demofab("curate", str(tmp_path / "nope"), "--out", str(tmp_path), "--name", "x")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"demofab curate: error: input {tmp_path / 'nope'} "
                                             "does not exist"]


def test_report_shows_flags_reasons_and_thumbnails(tmp_path: Path, lossy_session: Path,
                                                   capsys) -> None:
    out = tmp_path / "report.html"
    assert main(["curate-report", str(lossy_session), "--out", str(out)]) == 0
    html = out.read_text()
    assert "dropped_frames" in html and "frames dropped" in html
    assert html.count("data:image/jpeg;base64,/9j/") >= 3
    assert "<svg" in html


def test_release_sample_draws_aligned_windows_and_frames(tmp_path: Path, clean_session: Path,
                                                         capsys) -> None:
    assert main(["curate", str(clean_session), "--out", str(tmp_path), "--name", "cups"]) == 0
    capsys.readouterr()
    assert main(["release", "sample", str(tmp_path / "cups"), "-n", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] > 0 and len(out["drawn"]) == 4
    for row in out["drawn"]:
        assert row["joint_states/position"] == [43]
        assert row["joint_commands/position"] == [16, 43]
        assert row["camera.head.image_raw.compressed/data"] == [1, 480, 640, 3]
