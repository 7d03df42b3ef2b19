"""Randomization: what changes from one episode to the next, drawn from the episode's seed.

A :class:`RandomizationConfig` (``sim/randomization.yaml`` holds the defaults; a user's file
overrides any part of it) says how far each thing varies: object poses, sizes, mass and
friction, the light, the table's colour, the camera poses, sensor noise, the receive
latency of each stream and the action noise. :func:`draw` turns a task, a seed and a config
into a :class:`Draw`: the scene's :class:`~sim.scenes.Layout` and the noise and latency of
the recording, the same for the same seed on any machine. ``Draw.as_dict()`` is the draw as
written into an episode's provenance; :meth:`Draw.from_dict` reads it back (replay).

Every part is drawn from its own stream of the seed (a ``numpy.random.SeedSequence`` child
per part), so changing the range of one part leaves the others as they were.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from demofab.yamlutil import safe_load

from .errors import SimError
from .scenes import CAMERAS, BinSpec, Layout, ObjectSpec

CONFIG_FORMAT_VERSION = 1
#: the draw's record format (``Draw.as_dict``), checked by ``Draw.from_dict``
DRAW_FORMAT_VERSION = 1

Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class ObjectRandomization:
    """How the task's objects vary: centre and yaw jitter, size, mass and friction scales,
    colour jitter."""

    xy_jitter_m: float = 0.03
    yaw_jitter_rad: float = 0.4
    size_scale: Range = (0.9, 1.1)
    mass_scale: Range = (0.8, 1.2)
    friction_scale: Range = (0.8, 1.2)
    colour_jitter: float = 0.08


@dataclass(frozen=True, slots=True)
class BinRandomization:
    """How the bin's place varies."""

    xy_jitter_m: float = 0.03


@dataclass(frozen=True, slots=True)
class LightingRandomization:
    """The key light: direction jitter (x and y of its direction) and diffuse intensity."""

    direction_jitter: float = 0.25
    intensity: Range = (0.5, 0.9)


@dataclass(frozen=True, slots=True)
class TableRandomization:
    """The table top's colour jitter per rgb channel."""

    colour_jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class CameraRandomization:
    """Each camera's pose offset in its body: position (m) and roll, pitch, yaw (rad)."""

    position_jitter_m: float = 0.01
    rotation_jitter_rad: float = 0.03


@dataclass(frozen=True, slots=True)
class SensorNoise:
    """Standard deviations of the noise on the recorded sensor streams."""

    joint_position_std_rad: float = 0.0005
    joint_velocity_std_rad_s: float = 0.005
    joint_effort_std_nm: float = 0.05
    imu_orientation_std_rad: float = 0.001
    imu_gyro_std_rad_s: float = 0.002
    imu_accel_std_m_s2: float = 0.02
    mocap_position_std_m: float = 0.001
    mocap_rotation_std_rad: float = 0.005
    teleop_position_std_m: float = 0.0005
    teleop_rotation_std_rad: float = 0.002


@dataclass(frozen=True, slots=True)
class LatencyRandomization:
    """Receive latency per stream: the episode's mean is drawn from each range (ms); each
    message adds a jitter of std ``jitter_ms``. ``mocap_ms`` is the age of the object poses
    on ``/tf`` (a motion-capture system's delay)."""

    joint_states_ms: Range = (1.0, 3.0)
    joint_commands_ms: Range = (0.5, 1.5)
    imu_ms: Range = (1.0, 3.0)
    teleop_ms: Range = (5.0, 15.0)
    tf_ms: Range = (2.0, 5.0)
    mocap_ms: Range = (8.0, 20.0)
    camera_ms: Range = (5.0, 15.0)
    jitter_ms: float = 0.3


@dataclass(frozen=True, slots=True)
class ActionNoise:
    """Noise the executor adds to the commanded joint positions (std, rad)."""

    std_rad: float = 0.005


@dataclass(frozen=True, slots=True)
class RandomizationConfig:
    """The whole randomization: one section per thing that varies (see the YAML file)."""

    objects: ObjectRandomization = field(default_factory=ObjectRandomization)
    bin: BinRandomization = field(default_factory=BinRandomization)
    lighting: LightingRandomization = field(default_factory=LightingRandomization)
    table: TableRandomization = field(default_factory=TableRandomization)
    camera: CameraRandomization = field(default_factory=CameraRandomization)
    sensor_noise: SensorNoise = field(default_factory=SensorNoise)
    latency: LatencyRandomization = field(default_factory=LatencyRandomization)
    action_noise: ActionNoise = field(default_factory=ActionNoise)
    source: str = "defaults"   # the file it was read from

    @classmethod
    def load(cls, path: str | Path | None = None) -> RandomizationConfig:
        """The config in ``path`` over the shipped defaults (see :func:`load`)."""
        return load(path)

    def as_dict(self) -> dict[str, Any]:
        """The config as plain data (the YAML file's shape)."""
        out = asdict(self)
        out.pop("source")
        return {"format_version": CONFIG_FORMAT_VERSION, **out}


def default_config_path() -> Path:
    """The shipped defaults, ``sim/randomization.yaml``."""
    return Path(str(files("sim") / "randomization.yaml"))


def load(path: str | Path | None = None) -> RandomizationConfig:
    """The config in ``path`` over the shipped defaults (``None``: the defaults alone).
    Raises ``SimError`` naming the file and the key for an unknown key or a bad value."""
    base = _parse(_read(default_config_path()), str(default_config_path()),
                  RandomizationConfig())
    if path is None:
        return base
    p = Path(path)
    return replace(_parse(_read(p), str(p), base), source=str(p))


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SimError(f"{path}: cannot read the randomization config: {exc.strerror}") from None
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise SimError(f"{path}: not valid YAML: {exc}") from None


def _parse(raw: Any, where: str, base: RandomizationConfig) -> RandomizationConfig:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise SimError(f"{where}: the randomization config is {type(raw).__name__}, "
                       "not a mapping")
    version = raw.get("format_version", CONFIG_FORMAT_VERSION)
    if version != CONFIG_FORMAT_VERSION:
        raise SimError(f"{where}: format_version {version!r} is not supported "
                       f"(this DemoFab reads {CONFIG_FORMAT_VERSION})")
    sections = {f.name: f for f in fields(RandomizationConfig) if f.name != "source"}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "format_version":
            continue
        if key not in sections:
            raise SimError(f"{where}: unknown key {key!r}; the sections are "
                           f"{', '.join(sections)}")
        changes[key] = _section(getattr(base, key), value, f"{where}: {key}")
    return replace(base, **changes)


def _section(current: Any, raw: Any, where: str) -> Any:
    if raw is None:
        return current
    if not isinstance(raw, dict):
        raise SimError(f"{where}: is {type(raw).__name__}, not a mapping")
    known = {f.name: f for f in fields(current)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise SimError(f"{where}.{key}: unknown key; {where.rsplit(': ', 1)[-1]} has "
                           f"{', '.join(known)}")
        default = getattr(current, key)
        at = f"{where}.{key}"
        if isinstance(default, tuple):
            changes[key] = _range(value, at)
        else:
            changes[key] = _non_negative(value, at)
    return replace(current, **changes)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimError(f"{where}: {value!r} is not a number")
    out = float(value)
    if not np.isfinite(out):
        raise SimError(f"{where}: {value!r} is not finite")
    return out


def _non_negative(value: Any, where: str) -> float:
    out = _number(value, where)
    if out < 0:
        raise SimError(f"{where}: {value!r} is negative; expected a value >= 0")
    return out


def _range(value: Any, where: str) -> Range:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SimError(f"{where}: {value!r} is not a range [low, high]")
    lo, hi = _non_negative(value[0], where), _non_negative(value[1], where)
    if lo > hi:
        raise SimError(f"{where}: range [{lo}, {hi}] has low above high")
    return (lo, hi)


# -- the draw ---------------------------------------------------------------------------
#: the recorded streams whose receive latency is drawn (keys of ``Draw.latency_ms``)
LATENCY_STREAMS = ("joint_states", "joint_commands", "imu", "teleop", "tf", "mocap", "camera")
#: the parts drawn from their own child of the seed, in spawn order (never reorder)
_PARTS = ("objects", "bin", "lighting", "table", "camera", "latency", "messages", "action")


@dataclass(frozen=True, slots=True)
class Draw:
    """One episode's randomization: the scene's layout and the recording's noise and
    latency, all from ``seed``. ``latency_ms`` holds the mean receive latency of each of
    ``LATENCY_STREAMS`` for this episode; the per-message noise and jitter come from
    :meth:`rng` (``messages``), so the same draw gives the same recording bytes."""

    task: str
    seed: int
    layout: Layout
    sensor_noise: SensorNoise
    latency_ms: dict[str, float]
    latency_jitter_ms: float
    action_noise_rad: float

    def rng(self, part: str, *key: int) -> np.random.Generator:
        """A generator for one part of this draw (one of the parts drawn at ``draw``, or
        ``messages`` and ``action`` for the per-message and per-step noise), with an
        optional key (a topic's index) for a stream of its own."""
        return _rng(self.task, self.seed, part, *key)

    def action_noise(self, steps: int, joints: int = 43) -> np.ndarray:
        """Noise to add to ``steps`` commanded joint positions (steps, joints), rad; the
        executor adds it to what it commands, so it is part of the trace's ``ctrl``."""
        if self.action_noise_rad == 0:
            return np.zeros((steps, joints))
        out: np.ndarray = self.rng("action").normal(0.0, self.action_noise_rad, (steps, joints))
        return out

    def as_dict(self) -> dict[str, Any]:
        """The draw as JSON-able data, for the episode's provenance record."""
        return {
            "format_version": DRAW_FORMAT_VERSION,
            "task": self.task,
            "seed": self.seed,
            "layout": layout_to_dict(self.layout),
            "sensor_noise": asdict(self.sensor_noise),
            "latency_ms": dict(self.latency_ms),
            "latency_jitter_ms": self.latency_jitter_ms,
            "action_noise_rad": self.action_noise_rad,
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "draw") -> Draw:
        """A draw read back from ``as_dict``'s data; ``SimError`` naming ``where`` and the
        field when it is not one."""
        if not isinstance(raw, dict):
            raise SimError(f"{where}: the draw is {type(raw).__name__}, not a mapping")
        if raw.get("format_version") != DRAW_FORMAT_VERSION:
            raise SimError(f"{where}: draw format_version {raw.get('format_version')!r} is "
                           f"not supported (this DemoFab reads {DRAW_FORMAT_VERSION})")
        try:
            noise = SensorNoise(**raw["sensor_noise"])
            latency = {str(k): float(v) for k, v in raw["latency_ms"].items()}
            return cls(task=str(raw["task"]), seed=int(raw["seed"]),
                       layout=layout_from_dict(raw["layout"], f"{where}: layout"),
                       sensor_noise=noise, latency_ms=latency,
                       latency_jitter_ms=float(raw["latency_jitter_ms"]),
                       action_noise_rad=float(raw["action_noise_rad"]))
        except KeyError as exc:
            raise SimError(f"{where}: the draw has no {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise SimError(f"{where}: bad draw: {exc}") from None


def layout_to_dict(layout: Layout) -> dict[str, Any]:
    """A layout as JSON-able data (lists for tuples)."""
    out: dict[str, Any] = asdict(layout)
    return out


def layout_from_dict(raw: Any, where: str = "layout") -> Layout:
    """The layout that ``layout_to_dict`` wrote; ``SimError`` naming ``where`` otherwise."""
    if not isinstance(raw, dict):
        raise SimError(f"{where}: is {type(raw).__name__}, not a mapping")
    try:
        objects = tuple(ObjectSpec(**_tuples(o)) for o in raw["objects"])
        b = raw.get("bin")
        rest = {k: v for k, v in raw.items() if k not in ("objects", "bin", "camera_offsets")}
        offsets = {str(k): tuple(float(x) for x in v)
                   for k, v in (raw.get("camera_offsets") or {}).items()}
        return Layout(objects=objects, bin=BinSpec(**_tuples(b)) if b is not None else None,
                      camera_offsets=offsets, **_tuples(rest))
    except KeyError as exc:
        raise SimError(f"{where}: has no {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise SimError(f"{where}: bad layout: {exc}") from None


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _rng(task: str, seed: int, part: str, *key: int) -> np.random.Generator:
    if part not in _PARTS:
        raise SimError(f"unknown randomization part {part!r}; parts: {', '.join(_PARTS)}")
    if seed < 0:
        raise SimError(f"seed {seed} is negative; seeds are integers >= 0")
    ss = np.random.SeedSequence(entropy=seed,
                                spawn_key=(zlib.crc32(task.encode()), _PARTS.index(part), *key))
    return np.random.Generator(np.random.PCG64(ss))


def _default_layout(task: str) -> Layout:
    from .tasks import get_task

    return get_task(task).default_layout()


def draw(task: str, seed: int, config: RandomizationConfig | None = None, *,
         layout: Layout | None = None) -> Draw:
    """The randomization of episode ``seed`` of ``task``: the task's default layout (or
    ``layout``) varied as ``config`` says (default: the shipped defaults), and the
    recording's sensor noise, latency and action noise."""
    cfg = config if config is not None else load()
    base = layout if layout is not None else _default_layout(task)

    def rng(part: str) -> np.random.Generator:
        return _rng(task, seed, part)

    bin_spec = base.bin
    if bin_spec is not None:
        dx, dy = rng("bin").uniform(-cfg.bin.xy_jitter_m, cfg.bin.xy_jitter_m, 2)
        bin_spec = replace(bin_spec, xy=(bin_spec.xy[0] + float(dx), bin_spec.xy[1] + float(dy)))
    oc, g = cfg.objects, rng("objects")
    objects: list[ObjectSpec] = []
    for o in base.objects:
        size = float(g.uniform(*oc.size_scale))
        mass = float(g.uniform(*oc.mass_scale))
        friction = float(g.uniform(*oc.friction_scale))
        colour = g.uniform(-oc.colour_jitter, oc.colour_jitter, 3)
        new = replace(o, half_size=tuple(h * size for h in o.half_size),  # type: ignore[arg-type]
                      mass=o.mass * mass, friction=o.friction * friction,
                      rgba=_jitter_rgba(o.rgba, colour))
        # where it goes: drawn again while it would overlap what its default place does not
        # (another object, the bin) or leave the table
        for _ in range(_PLACE_TRIES):
            dx, dy = g.uniform(-oc.xy_jitter_m, oc.xy_jitter_m, 2)
            yaw = float(g.uniform(-oc.yaw_jitter_rad, oc.yaw_jitter_rad))
            placed = replace(new, xy=(o.xy[0] + float(dx), o.xy[1] + float(dy)), yaw=o.yaw + yaw)
            if _fits(placed, o, objects, base, bin_spec):
                break
        else:
            raise SimError(f"task {task!r}, seed {seed}: no place for object {o.name!r} within "
                           f"+-{oc.xy_jitter_m} m of its default that keeps it on the table "
                           "and clear of the others; lower objects.xy_jitter_m")
        objects.append(placed)
    g = rng("lighting")
    lx, ly = g.uniform(-cfg.lighting.direction_jitter, cfg.lighting.direction_jitter, 2)
    light_dir = (base.light_dir[0] + float(lx), base.light_dir[1] + float(ly), base.light_dir[2])
    intensity = float(g.uniform(*cfg.lighting.intensity))
    table_rgba = _jitter_rgba(base.table_rgba, rng("table").uniform(
        -cfg.table.colour_jitter, cfg.table.colour_jitter, 3))
    g, cc = rng("camera"), cfg.camera
    offsets: dict[str, tuple[float, ...]] = {}
    for name in CAMERAS:
        extra = (*g.uniform(-cc.position_jitter_m, cc.position_jitter_m, 3),
                 *g.uniform(-cc.rotation_jitter_rad, cc.rotation_jitter_rad, 3))
        have = base.camera_offsets.get(name, (0.0,) * 6)
        offsets[name] = tuple(float(a + b) for a, b in zip(have, extra, strict=True))
    g, lc = rng("latency"), cfg.latency
    latency = {name: float(g.uniform(*getattr(lc, f"{name}_ms"))) for name in LATENCY_STREAMS}
    new_layout = replace(base, objects=tuple(objects), bin=bin_spec, light_dir=light_dir,
                         light_diffuse=intensity, table_rgba=table_rgba, camera_offsets=offsets)
    return Draw(task=task, seed=seed, layout=new_layout, sensor_noise=cfg.sensor_noise,
                latency_ms=latency, latency_jitter_ms=lc.jitter_ms,
                action_noise_rad=cfg.action_noise.std_rad)


_PLACE_TRIES = 100


def _radius(o: ObjectSpec) -> float:
    return float(np.hypot(o.half_size[0], o.half_size[1]))


def _clear_of_bin(o: ObjectSpec, b: BinSpec | None) -> bool:
    if b is None:
        return True
    outer = (b.half_size[0] + b.wall, b.half_size[1] + b.wall)
    r = _radius(o)
    return abs(o.xy[0] - b.xy[0]) > outer[0] + r or abs(o.xy[1] - b.xy[1]) > outer[1] + r


def _fits(o: ObjectSpec, default: ObjectSpec, placed: list[ObjectSpec], base: Layout,
          bin_spec: BinSpec | None) -> bool:
    """Whether ``o`` stays on the table and clear of the objects already placed and of the
    bin, wherever its default place (``default``) was clear of them."""
    r = _radius(o)
    (tx, ty), (hx, hy) = base.table_xy, base.table_half
    if abs(o.xy[0] - tx) > hx - r or abs(o.xy[1] - ty) > hy - r:
        return False
    if _clear_of_bin(default, base.bin) and not _clear_of_bin(o, bin_spec):
        return False
    defaults = {d.name: d for d in base.objects}
    for p in placed:
        d = defaults[p.name]
        was_clear = np.hypot(default.xy[0] - d.xy[0], default.xy[1] - d.xy[1]) > \
            _radius(default) + _radius(d)
        if was_clear and np.hypot(o.xy[0] - p.xy[0], o.xy[1] - p.xy[1]) <= r + _radius(p):
            return False
    return True


def _jitter_rgba(rgba: tuple[float, float, float, float],
                 delta: np.ndarray) -> tuple[float, float, float, float]:
    r, g, b = (float(np.clip(c + d, 0.0, 1.0)) for c, d in zip(rgba[:3], delta, strict=True))
    return (r, g, b, rgba[3])


def no_randomization() -> RandomizationConfig:
    """A config that varies nothing and adds no noise or latency (the default layout, exact
    streams): for replays and checks against the default scene."""
    def zero(section: Any) -> Any:
        return replace(section, **{
            f.name: (0.0, 0.0) if isinstance(getattr(section, f.name), tuple) else 0.0
            for f in fields(section)})

    cfg = RandomizationConfig()
    changes = {f.name: zero(getattr(cfg, f.name)) for f in fields(cfg) if f.name != "source"}
    out = replace(cfg, **changes, source="none")
    scales = replace(out.objects, size_scale=(1.0, 1.0), mass_scale=(1.0, 1.0),
                     friction_scale=(1.0, 1.0))
    light = replace(out.lighting, intensity=(0.7, 0.7))
    return replace(out, objects=scales, lighting=light)


__all__ = [
    "CONFIG_FORMAT_VERSION", "DRAW_FORMAT_VERSION", "LATENCY_STREAMS", "ActionNoise",
    "BinRandomization", "CameraRandomization", "Draw", "LatencyRandomization",
    "LightingRandomization", "ObjectRandomization", "RandomizationConfig", "SensorNoise",
    "TableRandomization", "default_config_path", "draw", "layout_from_dict", "layout_to_dict",
    "load", "no_randomization",
]
