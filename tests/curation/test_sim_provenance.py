"""A simulated episode's provenance record reaches the release's episode table and
``release show``; a recorded episode keeps the recording's provenance."""

from __future__ import annotations

import json
from pathlib import Path

from curation import curate
from curation.cli import provenance_line
from recorder.contract import SIM_METADATA
from recorder.profile import load_profile
from recorder.session import Session
from recorder.sources.synthetic import RigOptions, SyntheticRig

from .conftest import T0


def _session(out: Path) -> Path:
    profile = load_profile("humanoid")
    s = Session(out, profile)
    rig = SyntheticRig(profile, RigOptions(seed=5, start_ns=T0))
    for k, provenance in enumerate(({SIM_METADATA: {
            "task": "pick_place", "seed": "41", "draw": json.dumps({"cube": {"mass": 0.05}}),
            "sources": json.dumps([{"path": "/data/real/episode_0002.mcap",
                                    "sha256": "ab" * 32}])}}, None)):
        start = T0 + k * 2_000_000_000
        s.start_episode("pick_place", "sim-expert", at_ns=start)
        for m in rig.messages():
            if m.log_time >= start + 1_000_000_000:
                break
            if m.log_time > start:
                s.write(m.topic, m.data, m.log_time, m.publish_time)
        s.stop_episode("success", at_ns=start + 1_000_000_000, metadata=provenance)
    return out


def test_sim_provenance_is_in_the_episode_table(tmp_path: Path) -> None:
    rel = curate([_session(tmp_path / "sim")], tmp_path / "rel", "sim").release
    rows = json.loads((rel / "episodes.json").read_text())["episodes"]
    sim = [r for r in rows if r["provenance"]["kind"] == "sim"]
    real = [r for r in rows if r["provenance"]["kind"] == "recording"]
    assert len(sim) == 1 and len(real) == 1
    p = sim[0]["provenance"]
    assert p["sim"]["seed"] == 41 and p["sim"]["draw"] == {"cube": {"mass": 0.05}}
    assert p["source_sha256"]  # the sim episode file itself is still hashed
    assert provenance_line(p) == "sim seed 41 from episode_0002.mcap"
    assert provenance_line(real[0]["provenance"]).startswith("rec ")
