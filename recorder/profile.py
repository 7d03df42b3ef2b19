"""Recording profiles: which topics to record, their types, rates, QoS and roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from demofab.yamlutil import safe_load

from .contract import EPISODE_EVENT_TYPE, EVENTS_TOPIC
from .errors import ProfileError
from .types import message_type

PROFILE_FORMAT_VERSION = 1
ROLES = ("observation", "action", "camera", "event", "ground_truth")
RELIABILITY = ("reliable", "best_effort")
DURABILITY = ("volatile", "transient_local")
HISTORY = ("keep_last", "keep_all")


@dataclass(frozen=True, slots=True)
class Qos:
    """A topic's ROS 2 QoS (reliability, durability, history, depth)."""
    reliability: str = "reliable"
    durability: str = "volatile"
    history: str = "keep_last"
    depth: int = 10

    def rosbag2_dict(self) -> dict[str, Any]:
        """The QoS as rosbag2 (metadata version 9) writes it."""
        return {
            "history": self.history,
            "depth": self.depth,
            "reliability": self.reliability,
            "durability": self.durability,
            "deadline": {"sec": 0, "nsec": 0},
            "lifespan": {"sec": 0, "nsec": 0},
            "liveliness": "automatic",
            "liveliness_lease_duration": {"sec": 0, "nsec": 0},
            "avoid_ros_namespace_conventions": False,
        }

    def rosbag2_yaml(self) -> str:
        return yaml.safe_dump([self.rosbag2_dict()], sort_keys=False)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One recorded topic: name, ROS 2 type, role, nominal rate, QoS and camera info."""
    topic: str
    type: str
    role: str
    rate_hz: float | None = None  # None: sporadic (events), no rate check
    qos: Qos = field(default_factory=Qos)
    camera: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    min_rate_ratio: float = 0.9
    gap_periods: float = 3.0
    max_gaps: int = 0
    max_latency_ms: float = 50.0
    min_disk_free_gb: float = 2.0


@dataclass(frozen=True, slots=True)
class Joint:
    name: str
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class RobotSpec:
    name: str
    joints: tuple[Joint, ...] = ()

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]


@dataclass(frozen=True, slots=True)
class Profile:
    """A robot's recording profile: its topics, robot description and health thresholds."""
    name: str
    topics: tuple[TopicSpec, ...]
    robot: RobotSpec
    health: HealthThresholds = field(default_factory=HealthThresholds)
    description: str = ""

    def topic(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.topic == name:
                return spec
        raise ProfileError(
            f"profile {self.name!r} has no topic {name!r} "
            f"(topics: {', '.join(t.topic for t in self.topics)})"
        )

    def by_role(self, role: str) -> list[TopicSpec]:
        return [t for t in self.topics if t.role == role]

    @property
    def events_topic(self) -> TopicSpec:
        return self.topic(EVENTS_TOPIC)


def builtin_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in (files("recorder") / "profiles").iterdir()
                  if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a built-in profile by name (``humanoid``) or a profile YAML file by path."""
    text: str
    where: str
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ProfileError(f"profile file {path} does not exist")
        text, where = path.read_text(), str(path)
    else:
        name = str(name_or_path)
        if name not in builtin_profiles():
            raise ProfileError(
                f"unknown profile {name!r}: built-in profiles are "
                f"{', '.join(builtin_profiles())}, or give a path to a YAML file"
            )
        text = (files("recorder") / "profiles" / f"{name}.yaml").read_text()
        where = f"built-in profile {name}"
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: not valid YAML: {exc}") from exc
    return parse_profile(raw, where)


def _pick(d: dict[str, Any], key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
    value = str(d.get(key, default))
    if value not in allowed:
        raise ProfileError(f"{where}: {key} is {value!r}, expected one of {', '.join(allowed)}")
    return value


def parse_profile(raw: Any, where: str = "profile") -> Profile:
    """A Profile from a parsed YAML mapping; raises ProfileError naming ``where`` and the bad field."""
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping at the top level")
    version = raw.get("format_version", PROFILE_FORMAT_VERSION)
    if version != PROFILE_FORMAT_VERSION:
        raise ProfileError(
            f"{where}: format_version {version} is not supported "
            f"(this DemoFab reads version {PROFILE_FORMAT_VERSION})"
        )
    if not raw.get("name"):
        raise ProfileError(f"{where}: missing 'name'")
    topics: list[TopicSpec] = []
    seen: set[str] = set()
    for i, t in enumerate(raw.get("topics") or []):
        at = f"{where}: topics[{i}]"
        if not isinstance(t, dict) or "topic" not in t or "type" not in t:
            raise ProfileError(f"{at}: each topic needs 'topic' and 'type'")
        name = str(t["topic"])
        if not name.startswith("/"):
            raise ProfileError(f"{at}: topic {name!r} must be absolute (start with '/')")
        if name in seen:
            raise ProfileError(f"{at}: topic {name!r} listed twice")
        seen.add(name)
        message_type(str(t["type"]))  # raises ProfileError on unknown types
        role = _pick(t, "role", ROLES, "observation", at)
        q = t.get("qos") or {}
        qos = Qos(
            reliability=_pick(q, "reliability", RELIABILITY, "reliable", at),
            durability=_pick(q, "durability", DURABILITY, "volatile", at),
            history=_pick(q, "history", HISTORY, "keep_last", at),
            depth=int(q.get("depth", 10)),
        )
        rate = t.get("rate_hz")
        if rate is not None and float(rate) <= 0:
            raise ProfileError(f"{at}: rate_hz must be positive, got {rate}")
        topics.append(TopicSpec(
            topic=name, type=str(t["type"]), role=role,
            rate_hz=float(rate) if rate is not None else None, qos=qos, camera=t.get("camera"),
        ))
    if not topics:
        raise ProfileError(f"{where}: no topics")
    if EVENTS_TOPIC not in seen:
        topics.append(TopicSpec(EVENTS_TOPIC, EPISODE_EVENT_TYPE, "event",
                                qos=Qos(durability="transient_local", depth=100)))
    r = raw.get("robot") or {}
    joints = tuple(
        Joint(str(j["name"]), float(j.get("lower", "-inf")), float(j.get("upper", "inf")))
        for j in r.get("joints") or []
    )
    h = raw.get("health") or {}
    try:
        health = HealthThresholds(**h)
    except TypeError as exc:
        raise ProfileError(f"{where}: health: {exc}") from exc
    return Profile(
        name=str(raw["name"]), topics=tuple(topics),
        robot=RobotSpec(name=str(r.get("name", "robot")), joints=joints),
        health=health, description=str(raw.get("description", "")),
    )


__all__ = [
    "DURABILITY", "EVENTS_TOPIC", "HISTORY", "PROFILE_FORMAT_VERSION", "RELIABILITY", "ROLES",
    "HealthThresholds", "Joint", "Profile", "Qos", "RobotSpec", "TopicSpec",
    "builtin_profiles", "load_profile", "parse_profile",
]
