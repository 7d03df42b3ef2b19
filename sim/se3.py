"""Rigid transforms for the simulator: quaternions (w, x, y, z, MuJoCo's order), 4x4
homogeneous transforms, and the MimicGen carry-over ``T_obj_new · T_obj_src⁻¹ · T_eef_src``.
One place for this math: the episode writer, multiplication and replay use it."""

from __future__ import annotations

import numpy as np


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions (w, x, y, z)."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw])


def quat_conj(q: np.ndarray) -> np.ndarray:
    """The conjugate (the inverse of a unit quaternion), w, x, y, z."""
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` rotated by the unit quaternion ``q`` (w, x, y, z)."""
    out: np.ndarray = quat_mul(quat_mul(q, np.array([0.0, *v])), quat_conj(q))[1:]
    return out


def relative_pose(parent: tuple[np.ndarray, np.ndarray],
                  child: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The pose of ``child`` in the frame of ``parent`` (both world poses: pos, quat wxyz)."""
    inv = quat_conj(parent[1])
    return quat_rotate(inv, child[0] - parent[0]), quat_mul(inv, child[1])



def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) in w, x, y, z order
    (normalised first)."""
    q = np.asarray(quat, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(q.shape[:-1] + (3, 3))
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - w * z)
    out[..., 0, 2] = 2 * (x * z + w * y)
    out[..., 1, 0] = 2 * (x * y + w * z)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - w * x)
    out[..., 2, 0] = 2 * (x * z - w * y)
    out[..., 2, 1] = 2 * (y * z + w * x)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def mat_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4), w, x, y, z with w >= 0, of rotation matrices (..., 3, 3)."""
    m = np.asarray(rot, dtype=float)
    flat = m.reshape(-1, 3, 3)
    out = np.empty((len(flat), 4))
    for i, r in enumerate(flat):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s,
                 (r[1, 0] - r[0, 1]) / s)
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s,
                 (r[0, 2] + r[2, 0]) / s)
        elif r[1, 1] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
            q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s,
                 (r[1, 2] + r[2, 1]) / s)
        else:
            s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
            q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s,
                 0.25 * s)
        out[i] = q
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    out[out[:, 0] < 0] *= -1
    return out.reshape(m.shape[:-2] + (4,))


def pose_matrix(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """Homogeneous transforms (..., 4, 4) from positions (..., 3) and quaternions (..., 4)."""
    p = np.asarray(pos, dtype=float)
    rot = quat_to_mat(quat)
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = p
    out[..., 3, 3] = 1.0
    return out


def matrix_pose(transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, quaternion w, x, y, z) of homogeneous transforms (..., 4, 4)."""
    t = np.asarray(transform, dtype=float)
    return t[..., :3, 3].copy(), mat_to_quat(t[..., :3, :3])


def invert(transform: np.ndarray) -> np.ndarray:
    """The inverse of rigid transforms (..., 4, 4): (R, p)⁻¹ = (Rᵀ, -Rᵀ p)."""
    t = np.asarray(transform, dtype=float)
    out = np.zeros_like(t)
    rt = np.swapaxes(t[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(rt @ t[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def object_transform(obj_src: np.ndarray, obj_new: np.ndarray) -> np.ndarray:
    """``T_obj_new · T_obj_src⁻¹``: the rigid motion that takes the source object onto the
    new one, and with it anything held fixed relative to the object."""
    out: np.ndarray = np.asarray(obj_new, dtype=float) @ invert(obj_src)
    return out


def transform_segment(eef_src: np.ndarray, obj_src: np.ndarray,
                      obj_new: np.ndarray) -> np.ndarray:
    """End-effector poses (k, 4, 4) of a source segment carried onto the new object pose:
    ``T_obj_new · T_obj_src⁻¹ · T_eef_src`` for each pose. The pose of each result relative
    to ``obj_new`` equals the source pose relative to ``obj_src``."""
    out: np.ndarray = object_transform(obj_src, obj_new) @ np.asarray(eef_src, dtype=float)
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (w, x, y, z) at fractions ``t``
    (shape (k,) -> (k, 4)); takes the short way round."""
    a = np.asarray(q0, dtype=float) / np.linalg.norm(q0)
    b = np.asarray(q1, dtype=float) / np.linalg.norm(q1)
    tt = np.atleast_1d(np.asarray(t, dtype=float))
    dot = float(a @ b)
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly the same: normalised lerp is exact enough and stable
        out = a[None] + tt[:, None] * (b - a)[None]
    else:
        theta = np.arccos(min(dot, 1.0))
        s = np.sin(theta)
        out = (np.sin((1 - tt) * theta) / s)[:, None] * a + (np.sin(tt * theta) / s)[:, None] * b
    result: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
    return result


def interpolate_poses(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` poses (steps, 4, 4) from just after ``start`` to ``end`` (included): linear
    in position, spherical in orientation, evenly spaced."""
    if steps < 1:
        return np.zeros((0, 4, 4))
    t = np.arange(1, steps + 1) / steps
    p0, q0 = matrix_pose(start)
    p1, q1 = matrix_pose(end)
    pos = p0[None] + t[:, None] * (p1 - p0)[None]
    return pose_matrix(pos, slerp(q0, q1, t))


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (rad) of the rotation between two transforms' orientations."""
    r = np.asarray(a)[:3, :3].T @ np.asarray(b)[:3, :3]
    return float(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))


__all__ = [
    "interpolate_poses", "invert", "mat_to_quat", "matrix_pose", "object_transform", "pose_matrix",
    "quat_conj", "quat_mul", "quat_rotate", "quat_to_mat", "relative_pose", "rotation_angle",
    "slerp", "transform_segment",
]
