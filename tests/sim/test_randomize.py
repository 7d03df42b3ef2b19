"""Randomization: the YAML config with its defaults and errors, and seed-determined draws."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sim.errors import SimError
from sim.randomize import (
    LATENCY_STREAMS,
    Draw,
    RandomizationConfig,
    default_config_path,
    draw,
    layout_from_dict,
    layout_to_dict,
    load,
    no_randomization,
)
from sim.scenes import CAMERAS, BinSpec, Layout, ObjectSpec

LAYOUT = Layout(objects=(ObjectSpec("cube", (0.42, -0.12)),
                         ObjectSpec("block", (0.40, 0.05), half_size=(0.03, 0.02, 0.02))),
                bin=BinSpec((0.45, 0.18)))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rand.yaml"
    path.write_text(text)
    return path


def test_the_shipped_yaml_holds_the_dataclass_defaults() -> None:
    assert replace(load(), source="x") == replace(RandomizationConfig(), source="x")
    assert default_config_path().is_file()


def test_a_user_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "objects:\n  xy_jitter_m: 0.1\nlatency:\n  tf_ms: [1, 2]\n"))
    assert cfg.objects.xy_jitter_m == 0.1
    assert cfg.latency.tf_ms == (1.0, 2.0)
    assert cfg.objects.yaw_jitter_rad == RandomizationConfig().objects.yaw_jitter_rad
    assert cfg.lighting == RandomizationConfig().lighting
    assert cfg.source.endswith("rand.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("lights:\n  intensity: [0, 1]\n", "unknown key 'lights'"),
    ("objects:\n  xy_jiter_m: 0.1\n", "objects.xy_jiter_m: unknown key"),
    ("objects:\n  xy_jitter_m: far\n", "objects.xy_jitter_m: 'far' is not a number"),
    ("objects:\n  xy_jitter_m: -0.1\n", "objects.xy_jitter_m: -0.1 is negative"),
    ("objects:\n  mass_scale: [1.2, 0.8]\n", "objects.mass_scale: range [1.2, 0.8] has low"),
    ("objects:\n  mass_scale: 1.0\n", "objects.mass_scale: 1.0 is not a range"),
    ("latency:\n  jitter_ms: true\n", "latency.jitter_ms: True is not a number"),
    ("camera: 3\n", "camera: is int, not a mapping"),
    ("format_version: 2\n", "format_version 2 is not supported"),
    ("- a\n- b\n", "is list, not a mapping"),
    ("objects: [\n", "not valid YAML"),
])
def test_a_bad_key_or_value_is_named_with_the_file(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SimError, match=f"^{path}: .*") as err:
        load(path)
    assert message in str(err.value)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="nope.yaml: cannot read"):
        load(tmp_path / "nope.yaml")


def test_the_same_seed_gives_the_same_draw_and_another_seed_another() -> None:
    a, b = draw("pick_place", 7, layout=LAYOUT), draw("pick_place", 7, layout=LAYOUT)
    assert a.as_dict() == b.as_dict()
    assert np.array_equal(a.action_noise(50), b.action_noise(50))
    c = draw("pick_place", 8, layout=LAYOUT)
    assert c.layout.objects[0].xy != a.layout.objects[0].xy
    assert c.latency_ms != a.latency_ms


def test_every_value_stays_inside_its_configured_range() -> None:
    cfg = load()
    for seed in range(20):
        d = draw("pick_place", seed, cfg, layout=LAYOUT)
        for new, old in zip(d.layout.objects, LAYOUT.objects, strict=True):
            assert abs(new.xy[0] - old.xy[0]) <= cfg.objects.xy_jitter_m
            assert abs(new.xy[1] - old.xy[1]) <= cfg.objects.xy_jitter_m
            assert abs(new.yaw - old.yaw) <= cfg.objects.yaw_jitter_rad
            lo, hi = cfg.objects.size_scale
            assert lo <= new.half_size[0] / old.half_size[0] <= hi
            assert cfg.objects.mass_scale[0] <= new.mass / old.mass <= cfg.objects.mass_scale[1]
            assert all(0 <= c <= 1 for c in new.rgba)
        assert d.layout.bin is not None and LAYOUT.bin is not None
        assert abs(d.layout.bin.xy[0] - LAYOUT.bin.xy[0]) <= cfg.bin.xy_jitter_m
        lo, hi = cfg.lighting.intensity
        assert lo <= d.layout.light_diffuse <= hi
        assert set(d.layout.camera_offsets) == set(CAMERAS)
        for off in d.layout.camera_offsets.values():
            assert max(abs(x) for x in off[:3]) <= cfg.camera.position_jitter_m
            assert max(abs(x) for x in off[3:]) <= cfg.camera.rotation_jitter_rad
        assert set(d.latency_ms) == set(LATENCY_STREAMS)
        assert cfg.latency.camera_ms[0] <= d.latency_ms["camera"] <= cfg.latency.camera_ms[1]


def test_changing_one_part_leaves_the_others_as_they_were(tmp_path: Path) -> None:
    base = draw("pick_place", 3, layout=LAYOUT)
    cfg = load(write(tmp_path, "lighting:\n  intensity: [0.1, 0.2]\n"))
    other = draw("pick_place", 3, cfg, layout=LAYOUT)
    assert other.layout.light_diffuse != base.layout.light_diffuse
    assert other.layout.objects == base.layout.objects
    assert other.latency_ms == base.latency_ms
    assert other.layout.camera_offsets == base.layout.camera_offsets


def test_action_noise_has_the_configured_spread() -> None:
    d = draw("pick_place", 1, layout=LAYOUT)
    noise = d.action_noise(2000)
    assert noise.shape == (2000, 43)
    assert noise.std() == pytest.approx(d.action_noise_rad, rel=0.05)


def test_no_randomization_keeps_the_layout_and_adds_no_noise() -> None:
    d = draw("pick_place", 5, no_randomization(), layout=LAYOUT)
    assert d.layout.objects == LAYOUT.objects
    assert d.layout.bin == LAYOUT.bin
    assert d.layout.light_dir == LAYOUT.light_dir
    assert all(v == 0 for v in d.latency_ms.values())
    assert d.sensor_noise.joint_position_std_rad == 0
    assert not d.action_noise(10).any()


def test_the_draw_survives_json_for_the_provenance_record() -> None:
    d = draw("handover", 11, layout=LAYOUT)
    back = Draw.from_dict(json.loads(json.dumps(d.as_dict())))
    assert back == d
    assert layout_from_dict(layout_to_dict(LAYOUT)) == LAYOUT


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.pop("layout"), "the draw has no 'layout'"),
    (lambda r: r.update(format_version=9), "draw format_version 9 is not supported"),
    (lambda r: r["layout"]["objects"][0].pop("name"), "bad layout"),
])
def test_a_bad_draw_record_is_named(mutate: object, message: str) -> None:
    raw = json.loads(json.dumps(draw("pick_place", 2, layout=LAYOUT).as_dict()))
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(SimError, match="episode_0001.mcap") as err:
        Draw.from_dict(raw, "episode_0001.mcap")
    assert message in str(err.value)


def test_a_negative_seed_is_refused() -> None:
    with pytest.raises(SimError, match="seed -1 is negative"):
        draw("pick_place", -1, layout=LAYOUT)


def test_the_task_gives_the_default_layout() -> None:
    tasks = pytest.importorskip("sim.tasks")
    d = draw("pick_place", 0)
    names = [o.name for o in tasks.get_task("pick_place").default_layout().objects]
    assert [o.name for o in d.layout.objects] == names


def test_the_config_loads_from_its_class_too(tmp_path: Path) -> None:
    path = write(tmp_path, "action_noise:\n  std_rad: 0.0\n")
    assert RandomizationConfig.load(path) == load(path)
    assert RandomizationConfig.load(None) == load()


def test_objects_stay_on_the_table_and_clear_of_the_bin_and_each_other(tmp_path: Path) -> None:
    near = Layout(objects=(ObjectSpec("a", (0.40, 0.0)), ObjectSpec("b", (0.40, 0.07))),
                  bin=BinSpec((0.40, 0.20)))
    cfg = load(write(tmp_path, "objects:\n  xy_jitter_m: 0.06\n"))
    for seed in range(30):
        d = draw("pick_place", seed, cfg, layout=near)
        a, b = d.layout.objects
        assert np.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1]) > 2 * np.hypot(0.02, 0.02) * 0.9
        assert d.layout.bin is not None
        assert abs(b.xy[1] - d.layout.bin.xy[1]) > 0.07 + 0.006 or \
            abs(b.xy[0] - d.layout.bin.xy[0]) > 0.07 + 0.006


def test_an_impossible_placement_is_named(tmp_path: Path) -> None:
    wall = Layout(objects=(ObjectSpec("a", (0.40, 0.0)),), table_half=(0.25, 0.02))
    with pytest.raises(SimError, match="seed 3: no place for object 'a'"):
        draw("pick_place", 3, layout=wall)
