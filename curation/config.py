"""Curation settings: segmentation, quality thresholds, splits, release layout. YAML-loadable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from demofab.yamlutil import safe_load

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    """Automatic segmentation, used for recordings without episode events."""

    auto: str = "idle"                 # idle | gripper | idle+gripper | none
    idle_velocity: float = 0.02        # rad/s: joints slower than this are idle
    idle_command_delta: float = 1e-4   # rad: command changes smaller than this are idle
    idle_min_s: float = 1.0            # an idle period this long separates episodes
    min_episode_s: float = 1.0         # shorter automatic segments are left out (reported)
    gripper_joints: str = "hand|gripper|finger"  # regex over joint names
    grasp_close: float = 0.6           # normalised closure above this: grasp
    grasp_open: float = 0.4            # below this: release
    contact_effort_step: float = 0.0   # Nm step in any effort that marks a contact (0: off)


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the quality checks (rates, gaps, clock jumps, frozen streams, limits, jerk)."""
    min_rate_ratio: float = 0.9
    gap_periods: float = 3.0
    clock_jump_s: float = 0.5          # stamp-vs-log offset change that counts as a jump
    frozen_s: float = 0.5              # identical numeric rows for this long
    frozen_periods: float = 5.0        # ... and over at least this many periods of the stream
    max_jitter_ratio: float = 0.5      # p99 step deviation, as a share of the observed period
    limit_tolerance: float = 1e-3      # rad beyond a joint limit before it counts
    jerk_sigma: float = 30.0           # robust deviations above the median jerk
    max_camera_skew_ms: float = 20.0
    max_latency_ms: float = 50.0
    min_episode_s: float = 0.5


@dataclass(frozen=True, slots=True)
class SplitConfig:
    by: str = "operator"               # operator | session
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class CurateConfig:
    """How `demofab curate` segments, checks, splits and writes: the parsed curation config."""
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    profile: str = ""                  # profile name/path for foreign data ("" : from metadata)
    sync_reference: str = ""           # stream name ("" : first observation JointState)
    chunk_rows: int = 4096
    shard_rows: int = 262144
    bytes_chunk: int = 1 << 20
    bytes_shard: int = 1 << 28
    workers: int = 0                   # files ingested in parallel (0: one per CPU)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.segment.auto not in ("idle", "gripper", "idle+gripper", "none"):
            raise ConfigError(f"segment.auto is {self.segment.auto!r}, expected one of "
                              "idle, gripper, idle+gripper, none")
        if self.split.by not in ("operator", "session"):
            raise ConfigError(f"split.by is {self.split.by!r}, expected operator or session")
        if self.shard_rows % self.chunk_rows or self.bytes_shard % self.bytes_chunk:
            raise ConfigError("shard sizes must be multiples of chunk sizes")


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))} "
                          f"(valid: {', '.join(sorted(names))})")
    return cls(**raw)


def load_config(path: str | Path | None) -> CurateConfig:
    """Defaults, or a YAML file with sections ``segment``, ``quality``, ``split``."""
    if path is None:
        return CurateConfig()
    p = Path(path)
    try:
        raw = safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read curation config: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    top = {k: v for k, v in raw.items() if k not in ("segment", "quality", "split")}
    try:
        return CurateConfig(segment=_build(SegmentConfig, raw.get("segment"), f"{p}: segment"),
                            quality=_build(QualityConfig, raw.get("quality"), f"{p}: quality"),
                            split=_build(SplitConfig, raw.get("split"), f"{p}: split"), **top)
    except TypeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
