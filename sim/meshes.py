"""Lighter visual meshes for rendering on the CPU.

The G1's visual meshes hold about 630,000 triangles, so Mesa's llvmpipe spends its time
on geometry: a 640x480 frame costs the same as a 64x48 one. Rendering only ever sees the
visual geoms (group 2), so each of them gets a decimated copy of its mesh (quadric edge
collapse, ``fast-simplification``), and collision geoms keep the original meshes: the
physics, contacts and masses are those of the unchanged model, bit for bit, while a frame
renders several times faster. Decimated meshes are cached on disk (one ``.npz`` per mesh
file and detail level), so worker processes pay for the decimation once per machine.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import mujoco
import numpy as np

from demofab.durable import atomic_write

from .errors import SimError

#: keep this fraction of each visual mesh's triangles (and at least MIN_FACES)
DEFAULT_KEEP = 0.08
MIN_FACES = 400
#: suffix of the decimated copies' asset names
VISUAL_SUFFIX = "__visual"
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where decimated meshes are kept: ``$DEMOFAB_CACHE`` or ``~/.cache/demofab``."""
    root = os.environ.get("DEMOFAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "demofab")
    return Path(root) / "meshes"


def read_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n, 3) float32 and triangles (m, 3) int32 of a binary STL file, with
    shared vertices merged."""
    data = path.read_bytes()
    if len(data) < 84:
        raise SimError(f"{path}: not an STL file ({len(data)} bytes)")
    count = int(np.frombuffer(data, np.uint32, 1, 80)[0])
    record = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    if 84 + count * record.itemsize != len(data):
        raise SimError(f"{path}: not a binary STL file (header says {count} triangles, "
                       f"size is {len(data)} bytes)")
    tri = np.frombuffer(data, record, count, 84)["v"].reshape(-1, 3)
    verts, inverse = np.unique(tri, axis=0, return_inverse=True)
    return verts, inverse.reshape(-1, 3).astype(np.int32)


def decimate(path: Path, keep: float = DEFAULT_KEEP) -> tuple[np.ndarray, np.ndarray]:
    """The mesh of ``path`` with about ``keep`` of its triangles, from the cache when there."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    cached = cache_dir() / f"{path.stem}-{digest}-{keep:.4f}-v{_CACHE_VERSION}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return z["verts"], z["faces"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is made again
    verts, faces = read_stl(path)
    if len(faces) > MIN_FACES:
        import fast_simplification

        reduction = 1.0 - max(keep, MIN_FACES / len(faces))
        verts, faces = fast_simplification.simplify(verts, faces, target_reduction=reduction)
    verts = np.ascontiguousarray(verts, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    cached.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, verts=verts, faces=faces)
    atomic_write(cached, buf.getvalue())
    return verts, faces


def lighten_visuals(spec: mujoco.MjSpec, mesh_dir: Path, keep: float = DEFAULT_KEEP) -> int:
    """Point every visual geom (group 2) of ``spec`` at a decimated copy of its mesh;
    collision geoms keep the original. Returns the triangles left in the visual meshes."""
    visual = {g.meshname for g in spec.geoms
              if g.type == mujoco.mjtGeom.mjGEOM_MESH and g.group == 2 and g.meshname}
    total = 0
    for mesh in list(spec.meshes):
        if mesh.name not in visual or not mesh.file:
            continue
        verts, faces = decimate(mesh_dir / mesh.file, keep)
        total += len(faces)
        copy = spec.add_mesh(name=mesh.name + VISUAL_SUFFIX)
        copy.uservert = verts.astype(np.float64).ravel().tolist()
        copy.userface = faces.ravel().tolist()
        copy.scale = list(mesh.scale)
    for g in spec.geoms:
        if g.type == mujoco.mjtGeom.mjGEOM_MESH and g.group == 2 and g.meshname in visual:
            g.meshname = g.meshname + VISUAL_SUFFIX
    used = {g.meshname for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH}
    for mesh in list(spec.meshes):
        if mesh.name in visual and mesh.name not in used:
            spec.delete(mesh)  # a visual-only original: nothing draws or collides with it
    return total


__all__ = ["DEFAULT_KEEP", "MIN_FACES", "VISUAL_SUFFIX", "cache_dir", "read_stl", "decimate",
           "lighten_visuals"]
