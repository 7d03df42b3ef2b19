"""Regenerate the conformance recordings and their expected ``inspect`` JSON.

    .venv/bin/python tests/conformance/generate.py

Run it only when a format changes on purpose; the tests compare against the committed
files, so a change in what the recorder writes or what inspect reports shows up there.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mcap.writer import Writer as McapWriter

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))

from recorder.control import Plan, Recorder  # noqa: E402
from recorder.inspect import inspect_path  # noqa: E402
from recorder.profile import load_profile  # noqa: E402
from recorder.session import Session  # noqa: E402
from recorder.sources.synthetic import RigOptions, SyntheticRig  # noqa: E402

T0 = 1_760_000_000_000_000_000


def normalise(report: dict) -> dict:
    """Paths relative to this folder, so the expectation does not depend on where it runs."""
    text = json.dumps(report).replace(str(HERE) + "/", "")
    return json.loads(text)


def session(path: Path) -> None:
    profile = load_profile(HERE / "small.yaml")
    s = Session(path, profile)
    rig = SyntheticRig(profile, RigOptions(seed=11, start_ns=T0, frame_pool=4))
    Recorder(s, rig, Plan(episodes=2, episode_seconds=0.3, task="reach",
                          operator="conformance")).run(handle_signals=False)


def foreign(path: Path) -> None:
    with open(path, "wb") as f:
        w = McapWriter(f)
        w.start(profile="", library="conformance")
        js = w.register_schema("Pose", "jsonschema", b'{"type": "object"}')
        pb = w.register_schema("acme.Pose", "protobuf", b"\x00")
        cj = w.register_channel("/pose_json", "json", js)
        cp = w.register_channel("/pose_pb", "protobuf", pb)
        for i in range(20):
            w.add_message(cj, T0 + i * 50_000_000, b'{"x": 1}', T0 + i * 50_000_000)
            w.add_message(cp, T0 + i * 50_000_000, b"\x08\x01", T0 + i * 50_000_000)
        w.finish()


def main() -> None:
    for p in HERE.iterdir():
        if p.name not in ("generate.py", "small.yaml", "README.md", "__pycache__"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    session(HERE / "session")
    foreign(HERE / "foreign_json_protobuf.mcap")
    ep = (HERE / "session" / "episode_0001.mcap").read_bytes()
    (HERE / "truncated.mcap").write_bytes(ep[: len(ep) * 2 // 3])
    for name in ("session", "foreign_json_protobuf.mcap"):
        report = normalise(inspect_path(HERE / name))
        (HERE / f"{name}.expected.json").write_text(json.dumps(report, indent=2) + "\n")
    from recorder.errors import CorruptFileError

    try:
        inspect_path(HERE / "truncated.mcap")
    except CorruptFileError as exc:
        (HERE / "truncated.mcap.expected.json").write_text(json.dumps(
            {"error": str(exc).replace(str(HERE) + "/", ""), "offset": exc.offset}) + "\n")


if __name__ == "__main__":
    main()
