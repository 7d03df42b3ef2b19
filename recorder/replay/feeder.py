"""The read-ahead process: reads a selection's messages in log-time order and writes
them to stdout as frames, for :class:`recorder.replay.readahead.ProcessReadAhead`.

Run as a script (``python feeder.py JSON``), not as a module, so that it starts with
``mcap`` alone and none of the ``recorder`` package: it takes a fraction of a second,
and it holds no GIL of the player's. It runs SCHED_BATCH with a nice of +5, so that on a
busy machine it does not take the CPU from the player when the player wakes up.

A frame is a kind byte, a little-endian u32 length and a body:

* ``B`` a batch: u32 n, n entries ``<qqHHI`` (playback time a, position p, topic index,
  episode position, size), then the n messages' bytes one after the other;
* ``L`` the selection starts over (loop);
* ``E`` the end; a non-empty body is the error that ended the reading (UTF-8).

The argument: ``{"episodes": [[path, offset_ns, start_ns, duration_ns, messages], ...],
"topics": [...], "p0": ns, "loop": bool, "period": ns, "batch": n, "batch_bytes": n}``:
a batch ends at ``batch`` messages or ``batch_bytes`` of payload, so that the player's
share of the work on one batch (a copy and a parse, in the slack before a deadline) stays
a few tens of microseconds even where camera frames fill it.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any, BinaryIO

HEADER = struct.Struct("<cI")
COUNT = struct.Struct("<I")
ENTRY = struct.Struct("<qqHHI")
_F_SETPIPE_SZ = 1031


def _frame(out: BinaryIO, kind: bytes, body: bytes = b"") -> None:
    out.write(HEADER.pack(kind, len(body)))
    out.write(body)


def feed(config: dict[str, Any], out: BinaryIO) -> None:
    from mcap.reader import make_reader

    topics: list[str] = config["topics"]
    index = {t: i for i, t in enumerate(topics)}
    batch_size = int(config.get("batch", 64))
    batch_bytes = int(config.get("batch_bytes", 1 << 16))
    period = int(config["period"])
    base, p0 = 0, int(config["p0"])
    entries: list[bytes] = []
    datas: list[bytes] = []
    held = 0

    def flush() -> None:
        nonlocal held
        if entries:
            _frame(out, b"B", b"".join([COUNT.pack(len(entries)), *entries, *datas]))
            entries.clear()
            datas.clear()
            held = 0

    while True:
        for pos, (path, offset, start_ns, duration, messages) in enumerate(config["episodes"]):
            if offset + duration < p0 or not messages:
                continue
            start = start_ns + max(0, p0 - offset)
            shift = base + offset - start_ns
            with open(path, "rb") as f:
                for _, channel, msg in make_reader(f, validate_crcs=True).iter_messages(
                        topics=topics, starting_at=start, log_time_order=True):
                    a = msg.log_time + shift
                    entries.append(ENTRY.pack(a, a - base, index[channel.topic], pos,
                                              len(msg.data)))
                    datas.append(msg.data)
                    held += len(msg.data)
                    if len(entries) >= batch_size or held >= batch_bytes:
                        flush()
        if not config["loop"]:
            break
        flush()
        _frame(out, b"L")
        base += period
        p0 = 0
    flush()


def polite() -> None:
    """Make the calling thread (or process) yield to the player: SCHED_BATCH (it never
    preempts a thread that wakes up, but keeps its share of the CPU) and a nice of +5."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5))
    except (AttributeError, OSError):
        pass


def main() -> int:
    polite()
    out = sys.stdout.buffer
    try:
        import fcntl

        fcntl.fcntl(out.fileno(), _F_SETPIPE_SZ, 1 << 20)
    except (ImportError, OSError):
        pass   # not Linux, not a pipe, or a lower limit: the default size works too
    try:
        feed(json.loads(sys.argv[1]), out)
    except BrokenPipeError:
        return 0   # the player closed the reading
    except Exception as exc:  # noqa: BLE001 - handed to the player as the end frame
        try:
            _frame(out, b"E", f"{type(exc).__name__}: {exc}".encode() or b"error")
            out.flush()
        except BrokenPipeError:
            pass
        return 1
    try:
        _frame(out, b"E")
        out.flush()
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
