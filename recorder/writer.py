"""The episode writer: one crash-safe, indexed MCAP file per episode.

The file is written as ``<name>.mcap.part`` and renamed to ``<name>.mcap`` only once its
summary and indexes are complete, so every ``.mcap`` in a session is a finished file.
Chunks are closed when they reach ``chunk_size`` or ``max_chunk_age_s`` of log time, and
fsynced at most every ``fsync_interval_s``: after a crash or power loss the ``.part`` holds
everything up to its last complete chunk, which ``recover`` turns into a valid file.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcap.writer import CompressionType

from demofab.durable import fsync_parent

from .contract import PART_SUFFIX
from .errors import DiskFullError, RecorderError
from .health import HealthMonitor, TopicTrack
from .mcapio import ChunkedWriter
from .profile import Profile, TopicSpec
from .types import message_type, stamp_reader

ROS2_PROFILE = "ros2"
COMPRESSIONS = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                "none": CompressionType.NONE}

# Without this, exceeding RLIMIT_FSIZE kills the process instead of failing the write.
# (Only the main thread may set handlers; EpisodeWriter sets it again when it can.)
def _ignore_sigxfsz() -> None:
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


_ignore_sigxfsz()


class WriteFailedError(RecorderError):
    """Writing or syncing an episode failed (other than a full disk): the episode is
    damaged, its ``.part`` stays for ``demofab recover``."""


#: What a failed write of an episode raises: the episode is over, its ``.part`` kept.
WRITE_ERRORS: tuple[type[RecorderError], ...] = (DiskFullError, WriteFailedError)


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How an episode file is written: chunk compression and size, chunk age and fsync interval."""
    compression: str = "zstd"
    level: int = 1  # zstd level: 1 compresses camera-heavy chunks ~5x faster than 3, same size
    chunk_size: int = 1 << 20
    max_chunk_age_s: float = 1.0
    fsync_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise RecorderError(
                f"unknown compression {self.compression!r}; use one of {', '.join(COMPRESSIONS)}"
            )


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel as it is stored; also used to copy channels from foreign files."""

    topic: str
    type: str
    schema_text: str
    schema_encoding: str = "ros2msg"
    message_encoding: str = "cdr"
    metadata: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def for_spec(spec: TopicSpec) -> ChannelInfo:
        mt = message_type(spec.type)
        return ChannelInfo(
            topic=spec.topic, type=spec.type, schema_text=mt.schema_text,
            metadata=(("offered_qos_profiles", spec.qos.rosbag2_yaml()),
                      ("topic_type_hash", mt.type_hash)),
        )


class EpisodeWriter:
    """Writes one episode. ``write`` is the hot path: keep it lean."""

    def __init__(self, path: Path, profile: Profile, options: WriterOptions | None = None,
                 *, health: HealthMonitor | None = None, profile_channels: bool = True) -> None:
        _ignore_sigxfsz()
        self.path = Path(path)
        self.part_path = self.path.with_name(self.path.name + PART_SUFFIX)
        self.profile = profile
        self.options = options or WriterOptions()
        self.health = health or HealthMonitor(profile, self.path.parent)
        self._file = open(self.part_path, "xb")  # noqa: SIM115
        self._mcap = ChunkedWriter(self._file, chunk_size=self.options.chunk_size,
                                   compression=self.options.compression,
                                   level=self.options.level)
        self._schemas: dict[tuple[str, str], int] = {}
        self._chan: dict[str, tuple[int, Callable[[bytes], int] | None, TopicTrack]] = {}
        self._age_ns = int(self.options.max_chunk_age_s * 1e9)
        self._deadline = -1
        self._last_sync = time.monotonic()
        self._syncer = _Syncer(self._file.fileno())
        self.closed = False
        self.failed: RecorderError | None = None
        try:
            self._mcap.start(profile=ROS2_PROFILE, library=_library())
            for spec in profile.topics if profile_channels else ():
                self.add_channel(ChannelInfo.for_spec(spec), spec)
        except OSError as exc:
            raise self._fail(exc) from exc

    # -- channels ---------------------------------------------------------------------
    def add_channel(self, info: ChannelInfo, spec: TopicSpec | None = None) -> None:
        """Register a topic (profile topics are registered up front)."""
        if info.topic in self._chan:
            return
        key = (info.type, info.schema_encoding)
        sid = self._schemas.get(key)
        if sid is None:
            sid = self._mcap.register_schema(info.type, info.schema_encoding,
                                             info.schema_text.encode())
            self._schemas[key] = sid
        cid = self._mcap.register_channel(info.topic, info.message_encoding, sid,
                                          dict(info.metadata))
        if spec is None:
            spec = TopicSpec(topic=info.topic, type=info.type, role="observation")
        stamp_fn: Callable[[bytes], int] | None
        try:
            stamp_fn = stamp_reader(info.type) if info.message_encoding == "cdr" else None
        except KeyError:
            stamp_fn = None
        self._chan[info.topic] = (cid, stamp_fn, self.health.track(spec))

    @property
    def bytes_written(self) -> int:
        return self.path.stat().st_size if self.closed else self._mcap.tell

    def counts(self) -> dict[str, int]:
        return {topic: len(track.log) for topic, (_, _, track) in self._chan.items()}

    # -- the hot path -----------------------------------------------------------------
    def write(self, topic: str, data: bytes, log_time: int, publish_time: int | None = None,
              sequence: int | None = None) -> None:
        """Append one CDR message. Log time is the receive time (ns); publish time is
        the header stamp unless given."""
        try:
            cid, stamp_fn, track = self._chan[topic]
        except KeyError:
            raise RecorderError(
                f"{self.path.name}: topic {topic!r} is not in profile {self.profile.name!r}"
            ) from None
        if publish_time is None:
            publish_time = stamp_fn(data) if stamp_fn is not None else log_time
            if publish_time < 0:
                publish_time = log_time
        track.log.append(log_time)
        track.stamp.append(publish_time)
        if sequence is None:
            sequence = len(track.log)
        else:
            track.seq.append(sequence)
        track.bytes += len(data)
        try:
            self._mcap.add_message(cid, log_time, data, publish_time, sequence)
            if log_time >= self._deadline:
                self._tick(log_time)
        except OSError as exc:
            raise self._fail(exc) from exc

    def _tick(self, log_time: int) -> None:
        if self._deadline >= 0:  # not the first message
            if self._syncer.error is not None:  # a background fsync failed: stop here
                raise self._syncer.error
            self._mcap.flush()  # close the chunk so a crash loses at most one chunk-age
            now = time.monotonic()
            if now - self._last_sync >= self.options.fsync_interval_s:
                self._syncer.request()  # fsync in the background: I/O wait, not our core
                self._last_sync = now
        self._deadline = log_time + self._age_ns

    # -- episode facts ----------------------------------------------------------------
    def add_attachment(self, name: str, media_type: str, data: bytes, log_time: int) -> None:
        try:
            self._mcap.add_attachment(create_time=time.time_ns(), log_time=log_time,
                                      name=name, media_type=media_type, data=data)
        except OSError as exc:
            raise self._fail(exc) from exc

    def close(self, metadata: dict[str, dict[str, str]] | None = None) -> Path:
        """Write Metadata records, summary and indexes; fsync; rename to the final name."""
        if self.closed:
            return self.path
        try:
            for name, data in (metadata or {}).items():
                self._mcap.add_metadata(name, data)
            self._mcap.finish()
            self._file.flush()
            self._syncer.stop()
            if self._syncer.error is not None:  # Linux may not report it to a later fsync
                raise self._syncer.error
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.part_path, self.path)
            fsync_parent(self.path)
        except OSError as exc:
            raise self._fail(exc) from exc
        self.closed = True
        return self.path

    def abort(self, *, keep: bool = False) -> None:
        """Stop writing. The ``.part`` file is deleted unless ``keep`` (for recovery)."""
        if self.closed:
            return
        self._release()
        if not keep:
            self.part_path.unlink(missing_ok=True)

    def _release(self) -> None:
        """Stop the fsync thread and close the file, whatever state it is in."""
        self.closed = True
        self._syncer.stop()
        try:
            self._file.close()
        except OSError:
            pass  # a full disk can fail the final flush: what reached the disk stays

    def _fail(self, exc: OSError) -> RecorderError:
        self._release()
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            err: RecorderError = DiskFullError(
                exc.errno,
                f"{self.part_path}: disk full while writing the episode "
                f"({os.strerror(exc.errno or 0)}); the episode stopped, finished episodes "
                f"are untouched, and 'demofab recover' keeps what reached the disk",
            )
        else:
            what = "fsync" if exc is self._syncer.error else "write"
            err = WriteFailedError(
                f"{self.part_path}: {what} failed ({exc.strerror or exc}); the episode "
                f"stopped and is marked damaged, finished episodes are untouched, and "
                f"'demofab recover' keeps what reached the disk")
        self.failed = err
        return err


class _Syncer:
    """fsyncs a file on request from a background thread (fsync releases the GIL), so
    the data of closed chunks reaches the disk without stalling the writer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._wake = threading.Event()
        self._done = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="demofab-fsync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._done:
                return
            try:
                os.fsync(self.fd)
            except OSError as exc:  # the writer raises it at its next chunk or at close
                self.error = exc
                return

    def stop(self) -> None:
        self._done = True
        self._wake.set()
        self._thread.join(timeout=30)


def _library() -> str:
    from . import __version__

    return f"demofab {__version__}"


__all__ = [
    "COMPRESSIONS", "PART_SUFFIX", "WRITE_ERRORS", "ChannelInfo", "EpisodeWriter",
    "WriteFailedError", "WriterOptions",
]
