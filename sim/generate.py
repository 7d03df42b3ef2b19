"""Generation at scale: the driver of ``demofab sim generate`` and ``demofab sim multiply``.

A run makes ``n`` kept episodes of one task. Attempt ``i`` has its own seed, drawn from the
run seed and ``i`` (:func:`attempt_seed`), and is a picklable job (:class:`AttemptJob`)
that a backend's worker runs in two phases:

1. physics only: the randomization draw gives the layout, then the simulated operator
   (``sim.expert.run_expert``) or a multiplied source demo (``sim.multiply
   .generate_attempt``) runs without cameras and returns a :class:`sim.trace.Trace`;
2. only for a success that will be kept, a :class:`RecordJob` re-executes the trace with
   the cameras (``sim.episode.episode_messages``: the attempt and the robot holding its
   pose up to the stop), so failed attempts cost no rendering.

The driver keeps the first ``n`` successes in attempt order, so what is kept does not
depend on the number of workers, the backend or the order in which attempts finish
(speculative attempts past the ``n``-th success are dropped). It writes the kept episodes
into the output session in that order, through ``recorder.session.Session``; every
attempt, kept or failed, has a line in the run's journal (``sim_journal.jsonl`` in the
session directory: index, seed, outcome, failed subtask, reason, the episode file it
became), and no failed attempt is ever written as an episode.

A run is resumable: the journal and the session state are written as the run goes, so a
crash, SIGKILL or Ctrl-C loses at most the attempts in flight. Running the same command
again checks that it is the same run (task, seed, randomization config, sources, cameras,
MuJoCo version), drops the episode that was being written, skips the attempts the journal
holds, and ends with the same episodes as an uninterrupted run.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from demofab.durable import atomic_write
from recorder.contract import (
    MCAP_SUFFIX,
    PART_SUFFIX,
    ROBOT_DESCRIPTION,
    STATE_FILE,
    SessionState,
    read_session_state,
    session_state_yaml,
)

from .backends import Backend, JobFailed, make_backend
from .errors import SimError

if TYPE_CHECKING:
    from recorder.session import Session
    from recorder.sources import RawMessage

    from .multiply import SourceDemo
    from .randomize import RandomizationConfig
    from .trace import Trace

#: the run's journal, in the output session directory: one JSON object per line
JOURNAL_FILE = "sim_journal.jsonl"
JOURNAL_VERSION = 1
#: the clock of generated episodes: attempt ``i`` starts at ``T0_NS + i * ATTEMPT_SLOT_NS``
#: (2026-01-01T00:00:00Z plus ten minutes per attempt), so its stamps depend on nothing else
T0_NS = 1_767_225_600 * 1_000_000_000
ATTEMPT_SLOT_NS = 600 * 1_000_000_000
#: the kinds of run
COMMANDS = ("generate", "multiply")
#: the operator id of multiplied episodes (the simulated operator's is
#: ``sim.episode.SIM_OPERATOR``)
MULTIPLY_OPERATOR = "sim-multiply"


def attempt_seed(run_seed: int, index: int) -> int:
    """The seed of attempt ``index`` of a run seeded ``run_seed``: 32 bits of numpy's
    ``SeedSequence([run_seed, index])`` (independent streams, reproducible anywhere; the
    same mix as ``sim.source.episode_seed``, so attempt ``i`` of ``sim generate --seed S``
    draws the scene of episode ``i`` of ``record --source sim --seed S``)."""
    if run_seed < 0 or index < 0:
        raise SimError(f"seeds and attempt indices are non-negative, not seed {run_seed} "
                       f"attempt {index}")
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1)[0])


def attempt_t0_ns(index: int) -> int:
    """The first stamp of attempt ``index``'s episode."""
    return T0_NS + index * ATTEMPT_SLOT_NS


# -- jobs and what comes back --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AttemptJob:
    """One attempt, everything a worker needs to run it (picklable): the task, the attempt
    index and seeds, the randomization config, the source episodes (multiply; empty for
    the simulated operator) and whether the recording has cameras."""

    task: str
    index: int
    run_seed: int
    seed: int
    config: RandomizationConfig
    sources: tuple[str, ...] = ()
    cameras: bool = True

    @property
    def t0_ns(self) -> int:
        return attempt_t0_ns(self.index)


@dataclass(frozen=True, slots=True)
class RecordJob:
    """Re-execute a kept attempt with rendering. ``trace`` is the attempt's physics result;
    None (a resumed run, whose traces were not kept) runs the attempt's physics again."""

    attempt: AttemptJob
    trace: Trace | None = None


@dataclass(slots=True)
class AttemptResult:
    """The physics phase of an attempt: its outcome and, for a success, the trace."""

    index: int
    seed: int
    success: bool
    failed_subtask: str
    reason: str
    steps: int
    seconds: float
    trace: Trace | None = None


@dataclass(slots=True)
class RecordResult:
    """A kept attempt, rendered: the trace and the episode's messages in log-time order
    (what ``sim.episode.write_episode(messages=)`` writes)."""

    index: int
    trace: Trace
    messages: list[RawMessage]
    seconds: float


# -- the worker --------------------------------------------------------------------------

class Worker:
    """Runs jobs in a backend's worker (a pool process or a Ray actor) and keeps, between
    attempts, what is costly to make again: the loaded source demos of a multiply run."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, tuple[str, ...]], list[SourceDemo]] = {}

    def warm(self) -> None:
        """Import what attempts and recordings need (MuJoCo, the scene, the operator, the
        episode writer) and build one scene, once, before the first job: the first scene
        of a process costs seconds (the robot's meshes), the next ones a tenth of that."""
        from . import episode, expert, randomize  # noqa: F401
        from .scenes import Scene
        from .tasks import TASKS

        Scene(next(iter(TASKS.values())).default_layout()).close()

    def run(self, job: AttemptJob | RecordJob) -> AttemptResult | RecordResult:
        """Run one job: an attempt (physics only) or the recording of a kept one."""
        if isinstance(job, RecordJob):
            return self.record(job)
        if isinstance(job, AttemptJob):
            return self.attempt(job)
        raise SimError(f"a sim worker runs AttemptJob or RecordJob, not {type(job).__name__}")

    def sources(self, job: AttemptJob) -> list[SourceDemo]:
        """The job's source demos, loaded once per worker."""
        from .multiply import load_source

        key = (job.task, job.sources)
        if key not in self._sources:
            self._sources[key] = [load_source(Path(p), job.task) for p in job.sources]
        return self._sources[key]

    def physics(self, job: AttemptJob) -> Trace:
        """The attempt without cameras: draw the scene, then the operator (with the draw's
        action noise) or a multiplied source demo performs the task in physics."""
        from .randomize import draw

        d = draw(job.task, job.seed, job.config)
        if job.sources:
            from .multiply import generate_attempt

            return generate_attempt(self.sources(job), job.task, d.layout, job.seed)
        from .expert import run_expert

        return run_expert(job.task, d.layout, job.seed, action_noise_rad=d.action_noise_rad)

    def attempt(self, job: AttemptJob) -> AttemptResult:
        """Phase one: physics only. An attempt that raises ``SimError`` (a scene that does
        not compile, a target out of reach) is a failed attempt with that reason."""
        t = time.perf_counter()
        try:
            trace = self.physics(job)
        except SimError as exc:
            return AttemptResult(job.index, job.seed, False, "", f"error: {exc}", 0,
                                 time.perf_counter() - t)
        return AttemptResult(job.index, job.seed, bool(trace.success), trace.failed_subtask,
                             trace.reason, trace.steps, time.perf_counter() - t,
                             trace if trace.success else None)

    def record(self, job: RecordJob) -> RecordResult:
        """Phase two: re-execute a successful trace with rendering; the episode's messages."""
        from .episode import episode_messages, sim_profile
        from .randomize import draw

        a = job.attempt
        t = time.perf_counter()
        trace = job.trace if job.trace is not None else self.physics(a)
        if not trace.success:
            raise SimError(f"attempt {a.index} (task {a.task}, seed {a.seed}) succeeded before "
                           f"and failed when run again ({trace.failed_subtask}: "
                           f"{trace.reason}): the simulation is not deterministic here")
        messages = list(episode_messages(trace, draw(a.task, a.seed, a.config),
                                         cameras=a.cameras, t0_ns=a.t0_ns,
                                         profile=sim_profile(cameras=a.cameras)))
        return RecordResult(a.index, trace, messages, time.perf_counter() - t)


# -- what a run is -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunSpec:
    """A run: ``n`` kept episodes of ``task`` from ``seed``; ``sources`` (MCAP episodes)
    makes it a multiply run; ``config`` the randomization (None: the defaults);
    ``max_attempts`` ends the run after that many attempts even with fewer than ``n``
    kept (like ``n``, a stopping rule: it changes how far a run goes, not its episodes)."""

    task: str
    n: int
    seed: int = 0
    config: RandomizationConfig | None = None
    sources: tuple[str, ...] = ()
    cameras: bool = True
    max_attempts: int | None = None

    @property
    def command(self) -> str:
        return "multiply" if self.sources else "generate"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def expand_sources(paths: list[str] | tuple[str, ...]) -> list[Path]:
    """Source episodes: MCAP files as given, and the ``.mcap`` episodes of directories
    (sessions, bags), sorted, leaving out those whose episode record says ``failure`` (an
    operator's failed attempt is no demonstration to multiply). Raises ``SimError`` for a
    path that does not exist or a directory without episodes to use."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise SimError(f"source {p} does not exist")
        if p.is_dir():
            found = sorted(p.glob(f"*{MCAP_SUFFIX}"))
            if not found:
                raise SimError(f"source {p} is a directory with no {MCAP_SUFFIX} episodes")
            good = [f for f in found if _outcome(f) != "failure"]
            if not good:
                raise SimError(f"source {p}: all {len(found)} episodes are failures; "
                               "multiply needs successful demonstrations")
            out.extend(good)
        else:
            out.append(p)
    if not out:
        raise SimError("multiply needs at least one --source episode")
    return out


def _outcome(path: Path) -> str:
    """The outcome in an episode file's episode record ("" when it has none or cannot be
    read: ``load_source`` then says what is wrong with it)."""
    from mcap.reader import make_reader

    from recorder.contract import EPISODE_METADATA

    try:
        with open(path, "rb") as fh:
            for md in make_reader(fh).iter_metadata():
                if md.name == EPISODE_METADATA:
                    return str(md.metadata.get("outcome", ""))
    except Exception:  # noqa: BLE001 - any damage: the source loader reports it, named
        return ""
    return ""


def run_identity(spec: RunSpec, config: RandomizationConfig,
                 sources: list[Path]) -> dict[str, Any]:
    """What decides a run's episodes besides ``n``: a rerun into the same directory must
    match it to continue."""
    import mujoco

    cfg: Any = config.as_dict()
    return {
        "format_version": JOURNAL_VERSION,
        "command": spec.command,
        "task": spec.task,
        "seed": spec.seed,
        "cameras": spec.cameras,
        "config": _jsonable(cfg),
        "sources": [{"path": str(p), "sha256": _sha256(p)} for p in sources],
        "mujoco": mujoco.__version__,
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "sources":
            a = [s.get("sha256") for s in a or []]
            b = [s.get("sha256") for s in b or []]
        if a != b:
            diffs.append(f"{key} {_short(a)} -> {_short(b)}")
    return diffs


def _short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


# -- the journal -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """An attempt as the journal holds it."""

    index: int
    seed: int
    success: bool
    failed_subtask: str
    reason: str
    steps: int
    seconds: float


@dataclass(slots=True)
class JournalState:
    """What a journal says: the run, the attempts, and the episode each kept attempt became."""

    run: dict[str, Any] | None = None
    attempts: dict[int, AttemptRecord] = field(default_factory=dict)
    episodes: dict[int, str] = field(default_factory=dict)


class Journal:
    """``sim_journal.jsonl``: the run's identity on the first line, then one line per
    finished attempt (``outcome`` success or failure, with ``failed_subtask`` and
    ``reason``) and one per written episode (``index``, ``episode``). Each line is flushed
    and synced before the run goes on, so a crash loses at most the line being written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def read(self) -> JournalState:
        """The journal's records. A torn last line (a crash while it was written) is cut
        off the file, so that the next record starts on a line of its own."""
        state = JournalState()
        if not self.path.exists():
            return state
        data = self.path.read_bytes()
        *lines, tail = data.split(b"\n")
        if tail:
            with open(self.path, "r+b") as fh:
                fh.truncate(len(data) - len(tail))
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                self._apply(state, json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise SimError(f"{self.path}:{number}: not a journal record ({exc})") from None
        return state

    @staticmethod
    def _apply(state: JournalState, rec: dict[str, Any]) -> None:
        if "run" in rec:
            state.run = rec["run"]
        elif "episode" in rec:
            state.episodes[int(rec["index"])] = str(rec["episode"])
        elif "outcome" in rec:
            state.attempts[int(rec["index"])] = AttemptRecord(
                int(rec["index"]), int(rec["seed"]), rec["outcome"] == "success",
                str(rec.get("failed_subtask", "")), str(rec.get("reason", "")),
                int(rec.get("steps", 0)), float(rec.get("seconds", 0.0)))
        elif "error" not in rec:
            raise KeyError("run, outcome, episode or error")

    def append(self, record: dict[str, Any]) -> None:
        """Add one record, synced to disk."""
        if self._fh is None:
            self._fh = open(self.path, "ab")  # noqa: SIM115 - held for the run, closed in close()
        self._fh.write(json.dumps(record, sort_keys=True).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _attempt_line(r: AttemptRecord) -> dict[str, Any]:
    return {"index": r.index, "seed": r.seed, "outcome": "success" if r.success else "failure",
            "failed_subtask": r.failed_subtask, "reason": r.reason, "steps": r.steps,
            "seconds": round(r.seconds, 4)}


# -- the summary -------------------------------------------------------------------------

@dataclass(slots=True)
class Summary:
    """What a run did (``--json``). ``attempted``, ``kept``, ``success_rate``,
    ``failures_by_reason`` and ``render_saved_fraction`` cover the whole run, resumed parts
    included; ``wall_s`` and ``demos_per_core_hour`` (episodes written per worker-hour of
    wall time) this invocation."""

    command: str
    task: str
    out: str
    journal: str
    n: int
    max_attempts: int | None
    attempted: int
    kept: int
    successes: int
    success_rate: float
    demos_per_core_hour: float
    failures_by_reason: dict[str, int]
    failures_by_subtask: dict[str, int]
    workers: int
    backend: str
    cameras: bool
    wall_s: float
    startup_s: float
    render_saved_fraction: float
    attempted_steps: int
    recorded_steps: int
    resumed_episodes: int
    attempted_this_run: int
    kept_this_run: int
    physics_s: float
    record_s: float
    episodes: list[str]
    #: half-written episodes of an interrupted earlier run that this one dropped
    dropped_partial: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able data (``--json``)."""
        return dataclasses.asdict(self)


_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")


def reason_key(failed_subtask: str, reason: str) -> str:
    """The key of a failure in ``failures_by_reason``: subtask and reason with numbers
    taken out, so that ``cube 3.1 cm from the bin`` and ``cube 4.0 cm ...`` count together."""
    text = _NUMBER.sub("#", reason).strip() or "no reason given"
    return f"{failed_subtask}: {text}" if failed_subtask else text


# -- the driver --------------------------------------------------------------------------

def _drop_interrupted(out: Path, state: SessionState) -> int:
    """Remove what a killed run left half-written: the open episode's ``.part`` and its
    entry in the session state, and any other ``.part`` (this directory is the run's
    own). Returns how many episodes were dropped."""
    dropped = 0
    parts = sorted(out.glob(f"*{MCAP_SUFFIX}{PART_SUFFIX}"))
    for p in parts:
        p.unlink()
        dropped += 1
    damaged = tuple(e for e in state.damaged if (out / e.file).exists())
    if state.open_episode is not None or len(damaged) != len(state.damaged):
        fixed = dataclasses.replace(state, open_episode=None, damaged=damaged)
        atomic_write(out / STATE_FILE, session_state_yaml(fixed))
    return dropped


class Driver:
    """One run into one output session: dispatches attempts and recordings to a backend,
    keeps the first ``n`` successes in attempt order, writes them, journals everything."""

    def __init__(self, spec: RunSpec, out: Path | str, *, progress: bool = False) -> None:
        from .randomize import load
        from .tasks import get_task

        if spec.n < 0:
            raise SimError(f"--n must be 0 or more, not {spec.n}")
        if spec.max_attempts is not None and spec.max_attempts < 1:
            raise SimError(f"--max-attempts must be at least 1, not {spec.max_attempts}")
        if spec.seed < 0:
            raise SimError(f"--seed must be 0 or more, not {spec.seed}")
        get_task(spec.task)
        self.spec = spec
        self.out = Path(out)
        self.progress = progress
        self.config = spec.config if spec.config is not None else load(None)
        paths = expand_sources(spec.sources) if spec.sources else []
        if paths:
            from .multiply import load_source

            for p in paths:  # a bad source is an error now, named, not in every worker
                load_source(p, spec.task)
        self.sources = tuple(str(p.resolve()) for p in paths)
        self.identity = run_identity(spec, self.config, [Path(s) for s in self.sources])
        self.journal = Journal(self.out / JOURNAL_FILE)
        self.outcomes: dict[int, AttemptRecord] = {}
        self.traces: dict[int, Trace] = {}
        self.records: dict[int, RecordResult] = {}
        self.kept: list[int] = []        # decided: the first successes of the complete prefix
        self.written: list[str] = []     # episode files, in kept order
        self.successes = 0
        self._success_indices: list[int] = []
        self._prefix = 0                 # first attempt index without an outcome
        self._next = 0                   # next attempt index to consider dispatching
        self._in_flight: dict[int, AttemptJob | RecordJob] = {}
        self._attempted_now = 0
        self._kept_now = 0
        self._physics_s = 0.0
        self._record_s = 0.0
        self.resumed = 0
        self.dropped = 0
        self.session: Session | None = None
        self.backend: Backend | None = None

    # -- set-up ------------------------------------------------------------------------
    def open(self) -> None:
        """Check ``out`` (new, or holding this same run), drop what a killed run left
        half-written, and read back what the journal and the session hold."""
        from recorder.session import Session
        from recorder.urdf import urdf_from_profile

        from .episode import sim_profile

        out = self.out
        if out.exists() and not out.is_dir():
            raise SimError(f"--out {out} is a file; it must be a directory for the session")
        past = self.journal.read()
        state = read_session_state(out) if out.is_dir() else None
        if past.run is None:
            if state is not None or (out.is_dir() and any(out.iterdir())):
                raise SimError(f"--out {out} is not empty and holds no {JOURNAL_FILE}: it was "
                               "not made by demofab sim; give a new directory")
            out.mkdir(parents=True, exist_ok=True)
            self.journal.append({"run": self.identity})
        else:
            diffs = _differences(past.run, self.identity)
            if diffs:
                raise SimError(f"--out {out} holds another run ({'; '.join(diffs)}); rerun "
                               "the same command to continue it, or give a new directory")
        if state is not None:
            self.dropped = _drop_interrupted(out, state)
        profile = sim_profile(cameras=self.spec.cameras)  # no silent camera topics
        self.session = Session(out, profile, robot_description=(
            ROBOT_DESCRIPTION, "application/xml", urdf_from_profile(profile)))
        for rec in past.attempts.values():
            self._add_outcome(rec)
        done = [e.file for e in self.session.episodes]
        if len(done) > len(self.kept):
            raise SimError(f"{out}: the session holds {len(done)} episodes but "
                           f"{self.journal.path} accounts for {len(self.kept)}; the journal "
                           "does not belong to these episodes")
        self.written = done
        self.resumed = len(done)

    def _add_outcome(self, rec: AttemptRecord) -> None:
        self.outcomes[rec.index] = rec
        if rec.success:
            self.successes += 1
            bisect.insort(self._success_indices, rec.index)
        n, m = self.spec.n, self.spec.max_attempts
        while self._prefix in self.outcomes and len(self.kept) < n and \
                (m is None or self._prefix < m):
            if self.outcomes[self._prefix].success:
                self.kept.append(self._prefix)
            self._prefix += 1
        if len(self.kept) >= n:  # traces of successes past the kept ones are not needed
            for i in [i for i in self.traces if i not in self.kept]:
                del self.traces[i]

    def job(self, index: int) -> AttemptJob:
        """Attempt ``index`` of this run."""
        s = self.spec
        return AttemptJob(s.task, index, s.seed, attempt_seed(s.seed, index), self.config,
                          self.sources, s.cameras)

    # -- the loop ----------------------------------------------------------------------
    def run(self, backend: Backend, *, started: float | None = None) -> Summary:
        """Generate on ``backend`` until ``n`` episodes are written; the summary.
        ``started`` (a ``time.perf_counter()``) counts the set-up before this call into
        ``wall_s`` and ``startup_s``."""
        if self.session is None:
            self.open()
        self.backend = backend
        t0 = time.perf_counter() if started is None else started
        startup = time.perf_counter() - t0
        try:
            with self._bar() as tick:
                while len(self.written) < self.spec.n:
                    self._dispatch()     # first, so that no worker waits while we write
                    self._write_ready()
                    if len(self.written) >= self.spec.n:
                        break
                    if not self._in_flight:
                        if self._exhausted():
                            break
                        raise SimError("generation stalled: nothing in flight and "
                                       f"{self.spec.n - len(self.written)} episodes to go")
                    for key, result in self._be().wait(timeout=0.5):
                        self._handle(key, result)
                    tick(time.perf_counter() - t0)
                tick(time.perf_counter() - t0)
        finally:
            self.journal.close()
        return self._summary(time.perf_counter() - t0, startup)

    def _be(self) -> Backend:
        if self.backend is None:
            raise SimError("the driver has no backend: call run(backend)")
        return self.backend

    def _exhausted(self) -> bool:
        """Whether ``max_attempts`` attempts are done (and with them every kept one)."""
        m = self.spec.max_attempts
        return m is not None and self._prefix >= m

    def _dispatch(self) -> None:
        n = self.spec.n
        while self._be().idle() > 0:
            todo = [i for i in self.kept[len(self.written):]
                    if ("r", i) not in self._keys() and i not in self.records]
            if todo:
                i = todo[0]
                job: AttemptJob | RecordJob = RecordJob(self.job(i), self.traces.pop(i, None))
                self._submit(2 * i + 1, job)
                continue
            while self._next in self.outcomes or 2 * self._next in self._in_flight:
                self._next += 1
            if self.spec.max_attempts is not None and self._next >= self.spec.max_attempts:
                return
            # attempt j can be kept only while fewer than n successes are known below it
            # (on a resumed run, attempts lost in flight leave holes below known successes)
            if bisect.bisect_left(self._success_indices, self._next) >= n:
                return
            self._submit(2 * self._next, self.job(self._next))
            self._next += 1

    def _keys(self) -> set[tuple[str, int]]:
        return {("r" if k % 2 else "a", k // 2) for k in self._in_flight}

    def _submit(self, key: int, job: AttemptJob | RecordJob) -> None:
        self._in_flight[key] = job
        self._be().submit(key, job)

    def _handle(self, key: int, result: Any) -> None:
        job = self._in_flight.pop(key)
        attempt = job.attempt if isinstance(job, RecordJob) else job
        if isinstance(result, JobFailed):
            what = "recording" if isinstance(job, RecordJob) else "attempt"
            self.journal.append({"index": attempt.index, "seed": attempt.seed,
                                 "error": result.error})
            first = result.error.strip().splitlines()[0] if result.error.strip() else "?"
            raise SimError(f"{what} {attempt.index} of task {attempt.task} (seed "
                           f"{attempt.seed}) failed: {first} (traceback in "
                           f"{self.journal.path})")
        if isinstance(result, AttemptResult):
            rec = AttemptRecord(result.index, result.seed, result.success,
                                result.failed_subtask, result.reason, result.steps,
                                result.seconds)
            self.journal.append(_attempt_line(rec))
            self._attempted_now += 1
            self._physics_s += result.seconds
            if result.success and result.trace is not None:
                self.traces[result.index] = result.trace
            self._add_outcome(rec)
        elif isinstance(result, RecordResult):
            self._record_s += result.seconds
            self.records[result.index] = result
        else:
            raise SimError(f"a worker returned {type(result).__name__} for attempt "
                           f"{attempt.index}")

    def _write_ready(self) -> None:
        from .episode import SIM_OPERATOR, write_episode
        from .randomize import draw

        session = self.session
        operator = MULTIPLY_OPERATOR if self.spec.sources else SIM_OPERATOR
        assert session is not None
        while len(self.written) < len(self.kept):
            i = self.kept[len(self.written)]
            rec = self.records.pop(i, None)
            if rec is None:
                return
            job = self.job(i)
            trace = rec.trace
            trace.provenance = {**trace.provenance, "generation": {
                "command": self.spec.command, "run_seed": self.spec.seed, "attempt": i,
                "attempt_seed": job.seed}}
            info = write_episode(session, trace, draw(job.task, job.seed, job.config),
                                 cameras=job.cameras, t0_ns=job.t0_ns, operator=operator,
                                 messages=rec.messages)
            self.written.append(info.file)
            self._kept_now += 1
            self.journal.append({"index": i, "episode": info.file})

    # -- progress and summary ------------------------------------------------------------
    @contextlib.contextmanager
    def _bar(self) -> Iterator[Any]:
        if not self.progress:
            yield lambda elapsed: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn(f"{self.spec.command} {self.spec.task}"), BarColumn(),
                       TextColumn("kept {task.completed}/{task.total}"),
                       TextColumn("attempted {task.fields[attempted]}"),
                       TextColumn("success {task.fields[rate]}"),
                       TextColumn("{task.fields[per_hour]} demos/h"), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=False)
        task_id = bar.add_task("", total=self.spec.n, completed=len(self.written),
                               attempted=0, rate="-", per_hour="-")

        def tick(elapsed: float) -> None:
            att = len(self.outcomes)
            rate = f"{self.successes / att:.0%}" if att else "-"
            per_hour = f"{self._kept_now / elapsed * 3600:.0f}" if elapsed > 0 else "-"
            bar.update(task_id, completed=len(self.written), attempted=att, rate=rate,
                       per_hour=per_hour)

        with bar:
            yield tick

    def _summary(self, wall: float, startup: float) -> Summary:
        recs = list(self.outcomes.values())
        fails = [r for r in recs if not r.success]
        steps_all = sum(r.steps for r in recs)
        kept_steps = sum(self.outcomes[i].steps for i in self.kept[:len(self.written)])
        workers = self._be().workers
        core_h = wall * workers / 3600
        return Summary(
            command=self.spec.command, task=self.spec.task, out=str(self.out),
            journal=str(self.journal.path), n=self.spec.n,
            max_attempts=self.spec.max_attempts, attempted=len(recs),
            kept=len(self.written), successes=self.successes,
            success_rate=round(self.successes / len(recs), 4) if recs else 0.0,
            demos_per_core_hour=round(self._kept_now / core_h, 1) if core_h > 0 else 0.0,
            failures_by_reason=dict(Counter(reason_key(r.failed_subtask, r.reason)
                                            for r in fails).most_common()),
            failures_by_subtask=dict(Counter(r.failed_subtask or "-" for r in fails)
                                     .most_common()),
            workers=workers, backend=self._be().name, cameras=self.spec.cameras,
            wall_s=round(wall, 3), startup_s=round(startup, 3),
            render_saved_fraction=round(1 - kept_steps / steps_all, 4) if steps_all else 0.0,
            attempted_steps=steps_all, recorded_steps=kept_steps,
            resumed_episodes=self.resumed, attempted_this_run=self._attempted_now,
            kept_this_run=self._kept_now, physics_s=round(self._physics_s, 3),
            record_s=round(self._record_s, 3), episodes=list(self.written),
            dropped_partial=self.dropped)


def generate(spec: RunSpec, out: Path | str, *, backend: str = "local", workers: int = 1,
             address: str | None = None, progress: bool = False) -> Summary:
    """Run ``spec`` into the session directory ``out`` on ``backend`` with ``workers``
    workers (continuing the run that ``out`` holds, if any); the summary."""
    started = time.perf_counter()
    driver = Driver(spec, out, progress=progress)
    driver.open()  # bad input fails here, before any worker starts
    b = make_backend(backend, workers, address=address)
    try:
        return driver.run(b, started=started)
    finally:
        b.close()


__all__ = [
    "ATTEMPT_SLOT_NS", "COMMANDS", "JOURNAL_FILE", "JOURNAL_VERSION", "MULTIPLY_OPERATOR",
    "T0_NS", "AttemptJob",
    "AttemptRecord", "AttemptResult", "Driver", "Journal", "JournalState", "RecordJob",
    "RecordResult", "RunSpec", "Summary", "Worker", "attempt_seed", "attempt_t0_ns",
    "expand_sources", "generate", "reason_key", "run_identity",
]
