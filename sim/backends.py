"""Generation backends: where attempts run. ``local`` is a pool of worker processes on this
machine; ``ray`` a set of Ray actors, on ``ray.init()`` locally or on an existing cluster.

Both run the same :class:`sim.generate.Worker` (the object that keeps loaded source demos
and warm imports between attempts) and hand each worker one job at a time, so results do
not depend on the backend: the driver (``sim.generate``) decides what is kept and writes
everything. A worker that dies (killed, out of memory, a crash in native code) is started
again and its job runs again, up to ``retries`` times; a job is deterministic, so a rerun
gives the same result.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Protocol

from .errors import SimError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

#: the backends by name (``--backend``)
BACKENDS = ("local", "ray")
#: what a worker sends once its imports are done
READY = "ready"
#: seconds a worker may take to start (imports, MuJoCo, the GL library)
START_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class JobFailed:
    """What came back instead of a result: the job raised (``error`` holds the exception's
    type, message and traceback) or its worker died more often than the backend retries."""

    error: str
    worker_died: bool = False


class Backend(Protocol):
    """Runs jobs (any picklable object that ``Worker.run`` accepts) on ``workers`` workers,
    at most one job per worker at a time."""

    name: str
    workers: int

    def idle(self) -> int:
        """How many workers have no job."""
        ...

    def submit(self, key: int, job: Any) -> None:
        """Start ``job`` on an idle worker; ``key`` comes back with its result."""
        ...

    def wait(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """Results of finished jobs as ``(key, result or JobFailed)``; blocks until one is
        ready or ``timeout`` seconds pass."""
        ...

    def close(self) -> None:
        """Stop the workers (jobs still running are dropped)."""
        ...


def make_backend(name: str, workers: int, *, address: str | None = None,
                 retries: int = 2) -> Backend:
    """The backend ``name`` (``local`` or ``ray``) with ``workers`` workers."""
    if workers < 1:
        raise SimError(f"--workers must be at least 1, not {workers}")
    if name == "local":
        if address:
            raise SimError("--address is for --backend ray; the local pool runs on this machine")
        return LocalBackend(workers, retries=retries)
    if name == "ray":
        return RayBackend(workers, address=address, retries=retries)
    raise SimError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")


# -- the local process pool --------------------------------------------------------------

def _worker_main(conn: Connection) -> None:
    """A pool process: run jobs from the pipe until it closes. Ctrl-C is the driver's
    (it stops the pool); the worker ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from .generate import Worker

    worker = Worker()
    try:
        worker.warm()
    except Exception as exc:  # noqa: BLE001 - the driver raises it
        conn.send(JobFailed(_describe(exc)))
        return
    conn.send(READY)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            out: Any = worker.run(job)
        except Exception as exc:  # noqa: BLE001 - sent back to the driver, which raises
            out = JobFailed(_describe(exc))
        conn.send(out)


def _describe(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}\n{tb}"


@dataclass(slots=True, eq=False)
class _Slot:
    process: BaseProcess
    conn: Connection
    key: int | None = None
    job: Any = None
    deaths: int = 0


class LocalBackend:
    """``workers`` processes started with ``forkserver`` (``spawn`` where there is none),
    each running a :class:`sim.generate.Worker` for the whole run, one job at a time
    through a pipe."""

    name = "local"

    def __init__(self, workers: int, *, retries: int = 2) -> None:
        self.workers = workers
        self.retries = retries
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
            else "spawn"
        self._ctx: Any = multiprocessing.get_context(method)
        self._slots: list[_Slot] = []
        try:
            for _ in range(workers):
                self._slots.append(self._start())
            for slot in self._slots:
                self._await_ready(slot)
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Slot:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child,), daemon=True,
                                 name="demofab-sim-worker")
        proc.start()
        child.close()
        return _Slot(proc, parent)

    def _await_ready(self, slot: _Slot) -> None:
        """Wait until the worker has done its imports, so that start-up is not counted
        as generation, and a worker that cannot start is an error now."""
        ready = wait([slot.conn, slot.process.sentinel], START_TIMEOUT_S)
        msg: Any = None
        if slot.conn in ready:
            try:
                msg = slot.conn.recv()
            except (EOFError, OSError):
                msg = None
        if msg == READY:
            return
        if isinstance(msg, JobFailed):
            raise SimError(f"a local worker failed to start: {msg.error.splitlines()[0]}")
        slot.process.join(timeout=1)
        raise SimError(f"a local worker did not start within {START_TIMEOUT_S:.0f} s"
                       if not ready else "a local worker died while starting (exit code "
                       f"{slot.process.exitcode})")

    def idle(self) -> int:
        return sum(1 for s in self._slots if s.key is None)

    def submit(self, key: int, job: Any) -> None:
        for slot in self._slots:
            if slot.key is None:
                slot.key, slot.job = key, job
                self._send(slot)
                return
        raise SimError("local pool: no idle worker for a new job")

    def _send(self, slot: _Slot) -> None:
        try:
            slot.conn.send(slot.job)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass  # the worker is gone: wait() sees its sentinel and restarts it

    def wait(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        busy = [s for s in self._slots if s.key is not None]
        if not busy:
            return []
        handles: dict[Any, _Slot] = {}
        for s in busy:
            handles[s.conn] = s
            handles[s.process.sentinel] = s
        ready = wait(list(handles), timeout)
        out: list[tuple[int, Any]] = []
        done: set[int] = set()
        for h in ready:
            slot = handles[h]
            if id(slot) in done or slot.key is None:
                continue
            done.add(id(slot))
            result = self._receive(slot)
            if result is not None:  # None: still running, or its worker died and it runs again
                out.append(result)
        return out

    def _receive(self, slot: _Slot) -> tuple[int, Any] | None:
        key = slot.key
        assert key is not None
        try:
            if slot.conn.poll():
                result = slot.conn.recv()
                slot.key, slot.job, slot.deaths = None, None, 0
                return key, result
        except (EOFError, OSError):
            pass
        if slot.process.is_alive():
            return None  # the sentinel fired for nothing: still running
        # the worker died with the job: start another and run the job again
        code = slot.process.exitcode
        slot.conn.close()
        slot.deaths += 1
        job = slot.job
        fresh = self._start()
        self._await_ready(fresh)
        i = self._slots.index(slot)
        self._slots[i] = fresh
        fresh.deaths = slot.deaths  # deaths on this job; a finished job sets them back to 0
        if slot.deaths > self.retries:
            fresh.deaths = 0
            return key, JobFailed(f"worker process died {slot.deaths} times running this job "
                                  f"(last exit code {code})", worker_died=True)
        fresh.key, fresh.job = key, job
        self._send(fresh)
        return None

    def close(self) -> None:
        for s in self._slots:
            try:
                s.conn.close()
            except OSError:
                pass
        for s in self._slots:
            if s.process.is_alive():
                s.process.terminate()
        for s in self._slots:
            s.process.join(timeout=5)
            if s.process.is_alive():
                s.process.kill()
                s.process.join(timeout=5)
        self._slots.clear()


# -- Ray -----------------------------------------------------------------------------------

class _RayWorker:
    """A Ray actor: one :class:`sim.generate.Worker` for the actor's life."""

    def __init__(self) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        from .generate import Worker

        self.worker = Worker()
        self.worker.warm()

    def ready(self) -> str:
        """Answers once the actor is up (its imports done)."""
        return READY

    def run(self, job: Any) -> Any:
        try:
            return self.worker.run(job)
        except Exception as exc:  # noqa: BLE001 - sent back to the driver, which raises
            return JobFailed(_describe(exc))


class RayBackend:
    """``workers`` Ray actors (one CPU each), each holding a :class:`sim.generate.Worker`.

    ``address`` None starts Ray on this machine (``ray.init()``) and stops it at
    :meth:`close`; an address (``127.0.0.1:6379``, ``ray://...``, ``auto``) joins an
    existing cluster and leaves it running. Actors are restarted when they die and their
    job runs again (``max_restarts``, ``max_task_retries``) up to ``retries`` times.
    """

    name = "ray"

    def __init__(self, workers: int, *, address: str | None = None, retries: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise SimError("--backend ray needs Ray: pip install 'demofab[ray]'") from None
        self._ray = ray
        self.workers = workers
        self._own = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except ConnectionError as exc:
                raise SimError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self._own = True
        actor = ray.remote(num_cpus=1, max_restarts=retries,
                           max_task_retries=retries)(_RayWorker)
        self._actors: list[Any] = [actor.remote() for _ in range(workers)]
        self._busy: dict[Any, tuple[int, int]] = {}  # object ref -> (key, actor index)
        try:
            ray.get([a.ready.remote() for a in self._actors], timeout=START_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            self.close()
            raise SimError(f"Ray actors did not start: {type(exc).__name__}: {exc}") from None

    def idle(self) -> int:
        return self.workers - len(self._busy)

    def submit(self, key: int, job: Any) -> None:
        taken = {a for _, a in self._busy.values()}
        for i, actor in enumerate(self._actors):
            if i not in taken:
                self._busy[actor.run.remote(job)] = (key, i)
                return
        raise SimError("ray backend: no idle actor for a new job")

    def wait(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        if not self._busy:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._busy), num_returns=1, timeout=timeout)
        if ready:  # whatever else is done too, without waiting again
            more, _ = ray.wait([r for r in self._busy if r not in ready],
                               num_returns=len(self._busy) - len(ready), timeout=0)
            ready = [*ready, *more]
        out: list[tuple[int, Any]] = []
        for ref in ready:
            key, _ = self._busy.pop(ref)
            try:
                out.append((key, ray.get(ref)))
            except ray.exceptions.RayActorError as exc:
                out.append((key, JobFailed(f"Ray actor died running this job (after its "
                                           f"retries): {exc}", worker_died=True)))
            except ray.exceptions.RayError as exc:
                out.append((key, JobFailed(f"Ray task failed: {exc}")))
        return out

    def close(self) -> None:
        ray = self._ray
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001, S110 - the actor or the cluster is gone already
                pass
        self._actors.clear()
        self._busy.clear()
        if self._own:
            ray.shutdown()


__all__ = ["BACKENDS", "Backend", "JobFailed", "LocalBackend", "RayBackend",
           "make_backend"]
