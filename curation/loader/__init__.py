"""Random-access training samples from a DemoFab release (contract: docs/release-format.md).

Two layers:

* :class:`ShardedArrayReader` reads one Zarr v3 array without zarr-python: it parses
  ``zarr.json``, reads each shard's index once (``sharding_indexed``: ``nchunks x
  (offset, nbytes)`` uint64, then a crc32c when the index codecs say so), fetches inner
  chunks with ``os.pread`` and decodes them with the declared codecs (``bytes``,
  ``transpose``, ``zstd``, ``gzip``, ``blosc``, ``crc32c``), keeping decoded chunks in an
  LRU. zarr-python's per-call overhead (~0.5-1 ms) is what limits random reads; this
  reader pays it never. Arrays it does not understand are read through zarr-python.
* :class:`ReleaseDataset` turns a release into samples addressed by (episode, time) on a
  clock (a stream's own rows, or a fixed rate), with LeRobot-style ``delta_timestamps``
  per key aligned on the int64 clocks (sync indices / ``searchsorted``, nothing
  resampled), JPEG frames decoded with OpenCV, and filters on the episode table. It is a
  map-style dataset (``__len__``/``__getitem__`` returning dicts of numpy arrays) that
  works in PyTorch ``DataLoader`` workers without importing torch: it pickles without its
  file handles and reopens them lazily in each process.

Keys are ``"<stream>/<field>"``: ``"joint_states/position"``,
``"teleop.left_hand.pose/pose.position"``, and for a camera the ragged field
``"camera.head.image_raw.compressed/data"`` (decoded to an ``H x W x 3`` uint8 image).
"""

from __future__ import annotations

from ..release import resolve as resolve_release
from .dataset import ReleaseDataset, grid_times, latest_rows, select_episodes
from .errors import LoaderError
from .reader import ReleaseReader, StreamInfo
from .zarrread import ChunkCache, ShardedArrayReader

__all__ = [
    "ChunkCache",
    "LoaderError",
    "ReleaseDataset",
    "ReleaseReader",
    "ShardedArrayReader",
    "StreamInfo",
    "grid_times",
    "latest_rows",
    "resolve_release",
    "select_episodes",
]
