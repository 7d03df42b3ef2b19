"""The simulated rig as a recorder source: ``demofab record --source sim --task pick_place``.

:class:`SimSource` is a ``recorder.sources.Source`` with the ``sim`` clock. For each
episode it draws the randomization from the episode's seed, lets the simulated operator
(``sim.expert.run_expert``) do the task in physics only, then re-executes the attempt with
rendering and yields its messages (``sim.episode.render_episode``), so a sim episode is
recorded by the same recorder, session and writer as a real rig's.

It drives episode control itself: the recorder gives it the controller
(``bind(controller)``) before the first message, and the source puts
``recorder.control.Command``\\ s on ``controller.commands`` at the right message times:
``start`` before an episode's first message, ``mark`` (subtask) at each of the operator's
marks, a note with the reason of a failure, and ``stop`` with the outcome once the robot
has held its last pose for ``STOP_AFTER_S``. The robot goes on publishing for a moment
after the stop (those messages fall between episodes, as a real rig's do), which is also
what lets the recorder apply the stop. Without ``bind`` the source only yields messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from recorder.contract import SIM_METADATA
from recorder.profile import Profile
from recorder.sources import RawMessage, register_source

from .episode import (
    HOLD_S,
    JPEG_QUALITY,
    NS,
    SIM_EPOCH_NS,
    SIM_OPERATOR,
    STEP_NS,
    STOP_AFTER_S,
    attach_model_licence,
    failure_note,
    provenance_record,
    render_episode,
    with_sim_topics,
)
from .errors import SimError
from .randomize import RandomizationConfig, draw, load
from .scenes import Layout
from .trace import Trace

#: time between the end of one episode's stream and the start of the next
GAP_S = 1.0

#: runs one attempt: (task, layout, seed, action noise in rad) -> Trace, physics only
Runner = Callable[[str, Layout, int, float], Trace]


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a run started with ``seed`` (a 32-bit number
    mixed from both, so runs with nearby seeds share no episodes)."""
    if seed < 0 or index < 0:
        raise SimError(f"seed {seed} and episode index {index} must be >= 0")
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def expert_runner(task: str, layout: Layout, seed: int, action_noise_rad: float = 0.0) -> Trace:
    """The simulated operator (``sim.expert.run_expert``) doing ``task`` in ``layout``, its
    commands with the draw's action noise."""
    from .expert import run_expert  # IK and mink: imported when the first attempt runs

    return run_expert(task, layout, seed, action_noise_rad=action_noise_rad)


class SimSource:
    """Simulated teleoperation episodes of one task, as recorder messages."""

    clock = "sim"

    def __init__(self, profile: Profile, *, task: str = "pick_place",
                 episodes: int | None = None,
                 seed: int = 0, cameras: bool = True,
                 config: RandomizationConfig | str | Path | None = None,
                 operator: str = SIM_OPERATOR, start_ns: int | None = None,
                 image_size: tuple[int, int] | None = None, jpeg_quality: int = JPEG_QUALITY,
                 runner: Runner | None = None) -> None:
        if episodes is not None and episodes < 1:
            raise SimError(f"--episodes {episodes}: the sim source records at least one")
        #: the recording profile with the sim topics added (the recorder adopts it)
        self.profile = with_sim_topics(profile)
        self.task = task or "pick_place"  # `demofab record` without --task
        self.episodes, self.seed = episodes, seed
        self.cameras, self.operator = cameras, operator
        self.config = config if isinstance(config, RandomizationConfig) else load(config)
        self.t0 = SIM_EPOCH_NS if start_ns is None else start_ns
        self.image_size, self.jpeg_quality = image_size, jpeg_quality
        self.runner: Runner = runner or expert_runner
        self.controller: Any = None
        #: the episodes streamed so far: (seed, success, reason of a failure)
        self.attempts: list[tuple[int, bool, str]] = []
        self._closed = False

    def bind(self, controller: Any) -> None:
        """Take over episode control of ``controller`` (a ``recorder.control.Controller``):
        the source starts, marks and stops the episodes, so the plan's autostart is off;
        without ``episodes`` of its own the source records the plan's episode count."""
        self.controller = controller
        plan = getattr(controller, "plan", None)
        if plan is None:
            return
        if self.episodes is None:
            self.episodes = plan.episodes
        if plan.autostart:
            controller.plan = replace(plan, autostart=False)

    def messages(self) -> Iterator[RawMessage]:
        """The episodes' messages, one episode after another, in log-time order (without
        an episode count: until closed)."""
        t0 = self.t0
        for index in itertools.count():
            if self.episodes is not None and index >= self.episodes:
                return
            if self.is_closed():
                return
            seed = episode_seed(self.seed, index)
            d = draw(self.task, seed, self.config)
            trace = self.runner(self.task, d.layout, seed, d.action_noise_rad)
            if trace.layout != d.layout:
                raise SimError(f"the attempt of task {self.task!r}, seed {seed} ran in "
                               "another layout than its draw")
            self.attempts.append((seed, trace.success, trace.reason))
            end = t0 + trace.steps * STEP_NS
            stop_at = end + round(STOP_AFTER_S * NS)
            marks = sorted(trace.marks, key=lambda m: m.step)
            k, opened, stopped, last = 0, False, False, t0
            self._command("start", task=self.task, operator=self.operator)
            for msg in render_episode(trace, d, cameras=self.cameras, profile=self.profile,
                                      t0_ns=t0, image_size=self.image_size,
                                      jpeg_quality=self.jpeg_quality, hold_s=HOLD_S):
                if self.is_closed():
                    return
                while k < len(marks) and t0 + marks[k].step * STEP_NS <= msg.log_time:
                    self._command("mark", outcome=marks[k].kind, label=marks[k].label)
                    k += 1
                if not stopped and msg.log_time >= stop_at:
                    self._finish(trace, d, marks[k:], t0)
                    k, stopped = len(marks), True
                yield msg
                last = msg.log_time
                if not opened:
                    opened = True
                    self._opened(msg.log_time)
            if not stopped:  # a hold too short to reach the stop: stop at the last message
                self._finish(trace, d, marks[k:], t0)
            t0 = max(last, stop_at) + round(GAP_S * NS)

    def _command(self, name: str, **kw: Any) -> None:
        if self.controller is None:
            return
        from recorder.control import Command

        self.controller.commands.put(Command(name, **kw))

    def _opened(self, at_ns: int) -> None:
        """After the start was applied: the model's licence goes into the episode."""
        session = getattr(self.controller, "session", None)
        if session is not None and session.writer is not None:
            attach_model_licence(session, at_ns)

    def _finish(self, trace: Trace, d: Any, marks: list[Any], t0: int) -> None:
        for m in marks:
            self._command("mark", outcome=m.kind, label=m.label)
        if not trace.success:
            self._command("mark", outcome="note", label=failure_note(trace))
        metadata = {SIM_METADATA: provenance_record(trace, d)}
        outcome = "success" if trace.success else "failure"
        self._command("stop", outcome=outcome, metadata=metadata)

    def is_closed(self) -> bool:
        """Whether ``close`` was called (the stream then ends at the next message)."""
        return self._closed

    def close(self) -> None:
        """End the stream (the recorder calls it when it stops)."""
        self._closed = True


_OPTIONS = ("task", "episodes", "seed", "cameras", "config", "operator", "start_ns",
            "image_size", "jpeg_quality", "runner")


def _factory(profile: Profile, **options: Any) -> SimSource:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise SimError(f"the sim source has no option {', '.join(unknown)}; options: "
                       f"{', '.join(_OPTIONS)}")
    return SimSource(profile, **options)


def register() -> None:
    """Register the sim source as ``demofab record --source sim`` (the ``demofab.sources``
    entry point)."""
    register_source("sim", _factory)


__all__ = ["GAP_S", "Runner", "SimSource", "episode_seed",
           "expert_runner", "register"]
