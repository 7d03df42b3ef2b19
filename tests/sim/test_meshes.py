"""Decimated visual meshes: the frames get cheaper, the physics stays the same bit for bit."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from sim import meshes
from sim.assets import g1_dir, g1_with_hands_xml
from sim.errors import SimError


def _g1(light: bool) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(g1_with_hands_xml()))
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05])
    if light:
        meshes.lighten_visuals(spec, g1_dir() / "assets")
    return spec.compile()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mesh cache for the module: the G1's meshes are decimated once (~10 s)."""
    return tmp_path_factory.mktemp("mesh-cache")


def _visual_faces(m: mujoco.MjModel) -> int:
    ids = {int(m.geom_dataid[g]) for g in range(m.ngeom)
           if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and m.geom_group[g] == 2}
    return int(sum(m.mesh_facenum[i] for i in ids))


def test_visual_meshes_lose_most_triangles_and_collision_meshes_none(cache, monkeypatch):
    monkeypatch.setenv("DEMOFAB_CACHE", str(cache))
    full, light = _g1(False), _g1(True)
    assert _visual_faces(light) < 0.15 * _visual_faces(full)
    collision = [(full.geom(g).name, int(full.mesh_facenum[full.geom_dataid[g]]))
                 for g in range(full.ngeom) if full.geom_group[g] == 3
                 and full.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH]
    assert collision and all(int(light.mesh_facenum[light.geom_dataid[g]]) == n
                             for g, (_, n) in zip(
                                 [g for g in range(light.ngeom) if light.geom_group[g] == 3
                                  and light.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH],
                                 collision, strict=True))
    assert list(cache.glob("meshes/*.npz")), "decimated meshes are cached"


def test_physics_is_bit_identical_with_the_lighter_visuals(cache, monkeypatch):
    monkeypatch.setenv("DEMOFAB_CACHE", str(cache))
    a, b = _g1(False), _g1(True)
    assert np.array_equal(a.body_mass, b.body_mass)
    assert np.array_equal(a.body_inertia, b.body_inertia)
    da, db = mujoco.MjData(a), mujoco.MjData(b)
    rng = np.random.default_rng(0)
    lo, hi = a.actuator_ctrlrange.T
    for _ in range(300):  # the robot falls and flails: contacts with the floor included
        da.ctrl[:] = db.ctrl[:] = rng.uniform(lo, hi)
        mujoco.mj_step(a, da, nstep=5)
        mujoco.mj_step(b, db, nstep=5)
    assert da.ncon > 0
    assert np.array_equal(da.qpos, db.qpos) and np.array_equal(da.qvel, db.qvel)


def test_a_cached_mesh_is_read_back_not_decimated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMOFAB_CACHE", str(tmp_path))
    stl = g1_dir() / "assets" / "torso_link_rev_1_0.STL"
    v1, f1 = meshes.decimate(stl)
    cached = next(tmp_path.glob("meshes/torso_link_rev_1_0-*.npz"))
    monkeypatch.setattr("fast_simplification.simplify", lambda *a, **k: pytest.fail("again"))
    v2, f2 = meshes.decimate(stl)
    assert np.array_equal(v1, v2) and np.array_equal(f1, f2)
    cached.write_bytes(b"damaged")  # a damaged cache entry is made again, not an error
    monkeypatch.undo()
    monkeypatch.setenv("DEMOFAB_CACHE", str(tmp_path))
    v3, _ = meshes.decimate(stl)
    assert np.array_equal(v1, v3)


def test_a_file_that_is_not_a_binary_stl_is_named(tmp_path: Path):
    bad = tmp_path / "part.STL"
    bad.write_bytes(b"solid part\n" + b" " * 100)
    with pytest.raises(SimError, match=f"{bad}: not a binary STL"):
        meshes.read_stl(bad)
    short = tmp_path / "short.STL"
    short.write_bytes(b"x")
    with pytest.raises(SimError, match="not an STL file"):
        meshes.read_stl(short)
