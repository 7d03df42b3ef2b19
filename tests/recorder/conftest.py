"""Fixtures: real sessions recorded from the synthetic rig, and the messages sent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recorder.control import Plan, Recorder
from recorder.profile import Profile, load_profile
from recorder.session import Session
from recorder.sources import RawMessage
from recorder.sources.synthetic import RigOptions, SyntheticRig

T0 = 1_750_000_000_000_000_000


@dataclass
class Tap:
    """Wraps a source and keeps what it yielded."""

    source: SyntheticRig
    sent: list[RawMessage] = field(default_factory=list)
    clock: str = "sim"

    def messages(self) -> Iterator[RawMessage]:
        for m in self.source.messages():
            self.sent.append(m)
            yield m

    def close(self) -> None:
        self.source.close()


@pytest.fixture(scope="session")
def humanoid() -> Profile:
    return load_profile("humanoid")


def record(out: Path, profile: Profile, *, episodes: int = 2, seconds: float = 1.0,
           reset: float = 0.0, rig: RigOptions | None = None, **plan: object) -> tuple[Session, Tap, list]:
    from recorder.urdf import urdf_from_profile

    session = Session(out, profile, robot_description=(
        "robot_description.urdf", "application/xml", urdf_from_profile(profile)))
    tap = Tap(SyntheticRig(profile, rig or RigOptions(seed=3, start_ns=T0)))
    rec = Recorder(session, tap, Plan(episodes=episodes, episode_seconds=seconds,
                                      reset_seconds=reset, **plan))  # type: ignore[arg-type]
    finished = rec.run(handle_signals=False)
    return session, tap, finished


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory, humanoid: Profile):
    out = tmp_path_factory.mktemp("rec") / "session"
    return record(out, humanoid, episodes=2, seconds=1.0, reset=0.5, task="stack cups",
                  operator="op7")
