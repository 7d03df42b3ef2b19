"""What the hand-written fast paths of curation gain over the libraries they replace,
timed side by side on the same recordings (``bench curate`` reports these):

* ``curation.mcapread.read_mcap`` against the ``mcap`` library's reader
  (``make_reader(...).iter_messages()``), both over the file bytes already in memory,
  both decompressing every chunk and yielding every message;
* ``curation.decode.decode_channel`` (columns by CDR layout, ``curation.cdr``) against
  rosbags' ``deserialize_cdr`` per message plus gathering the same numeric fields into
  arrays, for every CDR channel of the recordings except camera frames.

The tests hold both equal to their library (``tests/curation/test_mcapread_conformance.py``,
``tests/curation/test_cdr_rosbags.py``); this says what that equality buys.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .timing import best_of

#: message types whose payload is a blob (frames): both sides would only copy bytes
_BLOB_TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image")


def _numeric_fields(msg: Any, prefix: str = "") -> dict[str, Any]:
    """The numeric leaves of a rosbags message, as a flat ``{path: value}``."""
    out: dict[str, Any] = {}
    for name in getattr(msg, "__dataclass_fields__", {}):
        value = getattr(msg, name)
        key = f"{prefix}{name}"
        if isinstance(value, (int, float, np.ndarray)):
            out[key] = value
        elif hasattr(value, "__dataclass_fields__"):
            out.update(_numeric_fields(value, key + "."))
    return out


def compare_fast_paths(files: list[Path], repeat: int) -> dict[str, Any]:
    """Time both fast paths against their libraries over ``files``; the ratios are
    library time / ours (above 1: ours is faster)."""
    from mcap.reader import make_reader

    from curation.decode import decode_channel
    from curation.mcapread import read_mcap
    from recorder.types import schema_store

    blobs = [f.read_bytes() for f in files]

    def ours_read() -> None:
        for b in blobs:
            read_mcap(b)

    def library_read() -> None:
        for b in blobs:
            for _ in make_reader(io.BytesIO(b)).iter_messages():
                pass

    contents = [read_mcap(b) for b in blobs]
    channels = [ch for c in contents for ch in c.channels.values()
                if ch.message_encoding == "cdr" and ch.type and ch.type not in _BLOB_TYPES]
    stores = {(ch.type, ch.schema): schema_store(ch.type, ch.schema_encoding, ch.schema)
              for ch in channels}
    payloads = [(ch, [bytes(d) for d in ch.data], np.asarray(ch.log_times, np.int64))
                for ch in channels]
    messages = sum(len(d) for _, d, _ in payloads)

    def ours_decode() -> None:
        for ch, data, log in payloads:
            decode_channel(ch.topic, ch.type, ch.message_encoding, ch.schema_encoding,
                           ch.schema, data, log)

    def library_decode() -> None:
        for ch, data, _ in payloads:
            store = stores[(ch.type, ch.schema)]
            rows = [_numeric_fields(store.deserialize(d)) for d in data]
            if rows:  # the same columns as arrays, as the release needs them
                for key in rows[0]:
                    np.asarray([r[key] for r in rows])

    read_ours, read_lib, dec_ours, dec_lib = best_of(
        [ours_read, library_read, ours_decode, library_decode], max(1, repeat))
    return {
        "mcapread_s": round(read_ours, 3), "mcap_library_read_s": round(read_lib, 3),
        "mcapread_vs_mcap_library": round(read_lib / read_ours, 2),
        "cdr_messages": messages,
        "cdr_decode_s": round(dec_ours, 3), "rosbags_deserialize_s": round(dec_lib, 3),
        "cdr_vs_rosbags": round(dec_lib / dec_ours, 2),
    }


__all__ = ["compare_fast_paths"]
