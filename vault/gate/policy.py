"""What the gate allows: size caps, parse limits and match thresholds (:class:`GatePolicy`),
and how an input index is built (:class:`IndexConfig`). Both are frozen dataclasses with
defaults that work on a laptop, loadable from a mapping (a YAML document)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from .errors import GateError

__all__ = ["ALLOWED_KINDS", "GatePolicy", "IndexConfig"]

#: the output kinds the gate lets through to review (detected from the content)
ALLOWED_KINDS = ("json", "csv", "png", "safetensors", "text")

_MIB = 1 << 20

_T = TypeVar("_T")


def _from_mapping(cls: type[_T], raw: Any, where: str) -> _T:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise GateError(f"{where}: expected a mapping, got {type(raw).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - names
    if unknown:
        raise GateError(f"{where}: unknown keys {', '.join(sorted(unknown))} "
                        f"(valid: {', '.join(sorted(names))})")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise GateError(f"{where}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """How the input index is built. Stored in the index file; a check uses the index's own.

    Frames: every ``block_stride`` bytes of each stored JPEG frame, the hash of the
    ``block_bytes`` bytes there (and of the frame's last block), so any run of a frame of
    at least ``2 * block_stride + block_bytes - 1`` bytes inside an output holds two indexed
    blocks (a finding needs ``frame_min_blocks``, 2).
    Streams: every numeric column of every stream, values rounded to ``digits`` significant
    digits (a CSV prints them as text; float32 keeps 7), windows of ``window`` consecutive
    values hashed at every ``window_stride``-th row (rows ``>= window + window_stride``
    copied in order always hold one). Windows with fewer than ``min_distinct`` different
    values, or evenly stepped, say nothing about the data and are left out. At most
    ``max_windows`` windows are kept: the stride grows to fit (the index records it).
    """

    block_bytes: int = 256
    block_stride: int = 1024
    window: int = 8
    window_stride: int = 4
    digits: int = 3
    zero_below: float = 1e-4
    min_distinct: int = 4
    max_windows: int = 16_000_000
    thumb: int = 16

    def __post_init__(self) -> None:
        if self.block_bytes < 32 or self.block_stride < self.block_bytes:
            raise GateError(f"index config: block_bytes {self.block_bytes} must be >= 32 and "
                            f"<= block_stride {self.block_stride}")
        if not 4 <= self.window <= 64 or self.window_stride < 1:
            raise GateError(f"index config: window {self.window} must be 4..64 and "
                            f"window_stride {self.window_stride} >= 1")
        if not 1 <= self.digits <= 15:
            raise GateError(f"index config: digits {self.digits} must be 1..15")
        if not 1e-200 <= self.zero_below < 1.0:
            raise GateError(f"index config: zero_below {self.zero_below} must be in [1e-200, 1)")
        if not 2 <= self.min_distinct <= self.window:
            raise GateError(f"index config: min_distinct {self.min_distinct} must be 2..window")

    @classmethod
    def from_mapping(cls, raw: Any) -> IndexConfig:
        return _from_mapping(cls, raw, "index config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _default_caps() -> dict[str, int]:
    return {"json": 1 * _MIB, "csv": 16 * _MIB, "png": 8 * _MIB, "safetensors": 2048 * _MIB,
            "text": 16 * _MIB}


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """Caps and thresholds of :func:`vault.gate.check`. Sizes are bytes."""

    max_bytes: dict[str, int] = field(default_factory=_default_caps)  # per file, by kind
    max_run_bytes: int = 4096 * _MIB                                  # all outputs of a run
    max_files: int = 256
    # JSON
    json_max_depth: int = 32
    json_max_string: int = 4096           # characters in one string
    # CSV
    csv_max_rows: int = 10_000
    csv_max_columns: int = 256
    csv_max_cell: int = 256               # characters in one cell
    csv_dump_fraction: float = 0.5        # rows >= this share of a stream's (or an episode's) rows ...
    csv_dump_min_rows: int = 100          # ... and at least this many rows: a dump
    csv_dump_severity: str = "block"      # as long as a whole stream; or "note": shown, not blocking
    # as long as one episode, values matching nothing: a note for the reviewers by default (a
    # per-step training curve is often that long; a dump of the values is blocked by the
    # stream-window check whatever its length)
    csv_episode_dump_severity: str = "note"
    # text (logs)
    text_max_line: int = 16_384
    # PNG
    png_max_pixels: int = 4096 * 4096
    png_text_keywords: tuple[str, ...] = ("Software", "Title", "Author", "Description",
                                          "Creation Time", "Comment", "Source")
    png_text_max: int = 256               # bytes of one text chunk's text (after inflating)
    png_text_total: int = 1024
    png_iccp_max: int = 8192
    # safetensors
    st_max_tensors: int = 10_000
    st_max_ndim: int = 8
    st_max_header: int = 8 * _MIB
    st_max_metadata: int = 4096           # bytes of __metadata__ as JSON
    # matching
    frame_min_blocks: int = 2             # indexed blocks of one frame found at consistent offsets
    stream_min_windows: int = 2           # indexed windows of one column found in one sequence, aligned
    stream_min_distinct: int = 8          # distinct rounded values in the matched span
    phash_max_distance: int = 10          # bits of 64 (a frame re-encoded, resized or pasted: 0-2)
    thumb_min_corr: float = 0.9           # correlation of the 16x16 thumbnails that confirms it
    region_min_side: int = 24             # pixels: smaller pasted frames are not looked for
    max_regions: int = 96                 # candidate rectangles per image
    max_images_per_tensor: int = 16

    def __post_init__(self) -> None:
        unknown = set(self.max_bytes) - set(ALLOWED_KINDS)
        if unknown:
            raise GateError(f"gate policy: max_bytes has unknown kinds {', '.join(sorted(unknown))} "
                            f"(kinds: {', '.join(ALLOWED_KINDS)})")
        for name in ("csv_dump_severity", "csv_episode_dump_severity"):
            if getattr(self, name) not in ("block", "note"):
                raise GateError(f"gate policy: {name} {getattr(self, name)!r}: expected block or note")
        if not 0 < self.csv_dump_fraction <= 1:
            raise GateError(f"gate policy: csv_dump_fraction {self.csv_dump_fraction} must be in (0, 1]")

    def cap(self, kind: str) -> int:
        """The size cap of one file of ``kind`` (the defaults fill kinds a mapping leaves out)."""
        return int(self.max_bytes.get(kind, _default_caps()[kind]))

    @classmethod
    def from_mapping(cls, raw: Any) -> GatePolicy:
        if isinstance(raw, dict) and isinstance(raw.get("png_text_keywords"), list):
            raw = dict(raw, png_text_keywords=tuple(raw["png_text_keywords"]))
        return _from_mapping(cls, raw, "gate policy")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["png_text_keywords"] = list(self.png_text_keywords)
        return d
