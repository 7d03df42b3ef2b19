"""Scenes: the Unitree G1 with hands, pelvis fixed, at a table with the task's objects.

A scene is built from a :class:`Layout` (where the objects are, how big and heavy, the
light and the camera offsets): the task gives the default layout, randomization draws
others from the episode seed. The model is edited through ``MjSpec`` (the Menagerie file
has no cameras and no palm sites): the free joint goes (the pelvis is fixed), palm sites
and the three cameras of the recorder's humanoid profile (head and both wrists) are added,
and the table, the objects and the bin are placed in the world.

The robot faces +x; y points to its left; the table's top is at ``table_height``.
One physics step is 2 ms, the rate of ``/joint_states`` in the humanoid profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import mujoco
import numpy as np

from .assets import g1_with_hands_xml
from .errors import SimError
from .meshes import lighten_visuals

#: cameras of the humanoid profile: name -> (body, position in the body, xyaxes)
CAMERAS: dict[str, tuple[str, tuple[float, float, float], tuple[float, ...]]] = {
    # on the head, looking forward and 50 degrees down at the table
    "head": ("torso_link", (0.08, 0.0, 0.46), (0.0, -1.0, 0.0, 0.766, 0.0, 0.643)),
    # above each palm, on its inner side, looking along the fingers and 45 degrees down
    # at what the hand holds (the palm faces the midline: +y of the right wrist, -y of the
    # left)
    "left_wrist": ("left_wrist_yaw_link", (0.06, -0.03, 0.08),
                   (0.0, -1.0, 0.0, 0.707, 0.0, 0.707)),
    "right_wrist": ("right_wrist_yaw_link", (0.06, 0.03, 0.08),
                    (0.0, -1.0, 0.0, 0.707, 0.0, 0.707)),
}
SIDES = ("left", "right")
#: the palm: a site on the wrist-yaw link, at the centre of the palm geom
PALM_OFFSET = (0.08, 0.0, 0.0)
#: the arms' rest pose at reset: forearms raised, palms to the midline, fingers forward,
#: the palms about (0.22, ±0.20, 0.97), clear of anything on the table (left arm; the
#: right mirrors it with roll, yaw and wrist roll and yaw negated)
HOME_ARM = {"shoulder_pitch": 0.216, "shoulder_roll": 0.188, "shoulder_yaw": 0.194,
            "elbow": -0.742, "wrist_roll": -0.268, "wrist_pitch": 0.552, "wrist_yaw": -0.071}
_MIRRORED = ("shoulder_roll", "shoulder_yaw", "wrist_roll", "wrist_yaw")
HAND_JOINTS = ("thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1")


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """A free box on the table: name, centre (x, y on the table), half sizes, mass,
    friction (sliding), colour, and yaw about z (rad)."""

    name: str
    xy: tuple[float, float]
    half_size: tuple[float, float, float] = (0.02, 0.02, 0.02)
    mass: float = 0.05
    friction: float = 1.0
    rgba: tuple[float, float, float, float] = (0.85, 0.2, 0.15, 1.0)
    yaw: float = 0.0


@dataclass(frozen=True, slots=True)
class BinSpec:
    """An open box fixed on the table: centre (x, y), inner half sizes, wall height."""

    xy: tuple[float, float]
    half_size: tuple[float, float] = (0.07, 0.07)
    wall_height: float = 0.05
    wall: float = 0.006


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything a scene is built from; the task gives defaults, randomization varies it."""

    objects: tuple[ObjectSpec, ...]
    bin: BinSpec | None = None
    table_height: float = 0.80
    table_xy: tuple[float, float] = (0.48, 0.0)
    table_half: tuple[float, float] = (0.25, 0.45)
    light_dir: tuple[float, float, float] = (0.3, 0.2, -1.0)
    light_diffuse: float = 0.7
    table_rgba: tuple[float, float, float, float] = (0.55, 0.42, 0.3, 1.0)
    #: per camera: extra (dx, dy, dz) in the camera's body and (droll, dpitch, dyaw), rad
    camera_offsets: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def with_objects(self, *objects: ObjectSpec) -> Layout:
        return replace(self, objects=objects)

    def object(self, name: str) -> ObjectSpec:
        for o in self.objects:
            if o.name == name:
                return o
        raise SimError(f"layout has no object {name!r}; it has "
                       f"{', '.join(o.name for o in self.objects) or 'none'}")


def _rot_xyaxes(xyaxes: tuple[float, ...], rpy: tuple[float, ...]) -> list[float]:
    x, y = np.array(xyaxes[:3]), np.array(xyaxes[3:])
    r, p, yaw = rpy
    rot = np.eye(3)
    for axis, angle in ((0, r), (1, p), (2, yaw)):
        c, s = np.cos(angle), np.sin(angle)
        m = np.eye(3)
        i, j = [k for k in range(3) if k != axis]
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        rot = rot @ m
    return [*(rot @ x), *(rot @ y)]


def build_spec(layout: Layout, *, light_visuals: bool = True) -> mujoco.MjSpec:
    """The scene as an ``MjSpec``: G1 with hands, pelvis fixed, table, objects, bin,
    palm sites and cameras. ``light_visuals``: the visual geoms draw decimated copies of
    their meshes (``sim.meshes``; frames render several times faster on the CPU, the
    physics is the same bit for bit)."""
    spec = mujoco.MjSpec.from_file(str(g1_with_hands_xml()))
    if light_visuals:
        lighten_visuals(spec, g1_with_hands_xml().parent / "assets")
    spec.delete(spec.joint("floating_base_joint"))
    for key in list(spec.keys):
        spec.delete(key)
    spec.option.timestep = 0.002
    # grasping: elliptic friction cones and a high impedance ratio keep a pinched object
    # from creeping out of the fingers (MuJoCo's advice for manipulation)
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    vis = spec.visual
    vis.quality.offsamples = 0
    vis.quality.shadowsize = 0
    vis.headlight.ambient = [0.3, 0.3, 0.3]
    vis.headlight.diffuse = [0.4, 0.4, 0.4]
    for side in SIDES:
        wrist = spec.body(f"{side}_wrist_yaw_link")
        wrist.add_site(name=f"{side}_palm", pos=list(PALM_OFFSET), size=[0.01, 0.01, 0.01],
                       group=5)
        # the arm holds itself up: the teleoperated arm is gravity-compensated
    for body in spec.bodies:
        if any(k in body.name for k in ("shoulder", "elbow", "wrist", "hand")):
            body.gravcomp = 1.0
    for name, (body, pos, xyaxes) in CAMERAS.items():
        off = layout.camera_offsets.get(name, (0.0,) * 6)
        spec.body(body).add_camera(
            name=name, pos=[p + d for p, d in zip(pos, off[:3], strict=True)],
            fovy=70.0 if name == "head" else 90.0)
        cam = spec.camera(name)
        cam.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        cam.alt.xyaxes = _rot_xyaxes(xyaxes, tuple(off[3:6]) if len(off) >= 6 else (0, 0, 0))
    world = spec.worldbody
    world.add_light(name="key", pos=[0.4, 0.0, 2.5], dir=list(layout.light_dir),
                    diffuse=[layout.light_diffuse] * 3, castshadow=False)
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                   rgba=[0.3, 0.32, 0.35, 1])
    th, (tx, ty), (hx, hy) = layout.table_height, layout.table_xy, layout.table_half
    table = world.add_body(name="table", pos=[tx, ty, th / 2])
    table.add_geom(name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, th / 2],
                   rgba=list(layout.table_rgba), friction=[1.0, 0.005, 0.0001])
    if layout.bin is not None:
        b = layout.bin
        bin_body = world.add_body(name="bin", pos=[b.xy[0], b.xy[1], th])
        bx, by, h, w = b.half_size[0], b.half_size[1], b.wall_height, b.wall
        walls = {"bin_floor": ([0, 0, w / 2], [bx + w, by + w, w / 2]),
                 "bin_wall_px": ([bx + w / 2, 0, h / 2], [w / 2, by + w, h / 2]),
                 "bin_wall_nx": ([-bx - w / 2, 0, h / 2], [w / 2, by + w, h / 2]),
                 "bin_wall_py": ([0, by + w / 2, h / 2], [bx + w, w / 2, h / 2]),
                 "bin_wall_ny": ([0, -by - w / 2, h / 2], [bx + w, w / 2, h / 2])}
        for gname, (wpos, wsize) in walls.items():
            bin_body.add_geom(name=gname, type=mujoco.mjtGeom.mjGEOM_BOX, pos=wpos, size=wsize,
                              rgba=[0.25, 0.35, 0.6, 1])
    for o in layout.objects:
        body = world.add_body(name=o.name, pos=[o.xy[0], o.xy[1], th + o.half_size[2]],
                              quat=[np.cos(o.yaw / 2), 0, 0, np.sin(o.yaw / 2)])
        body.add_freejoint(name=f"{o.name}_free")
        body.add_geom(name=f"{o.name}_geom", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=list(o.half_size), mass=o.mass, rgba=list(o.rgba),
                      friction=[o.friction, 0.01, 0.0001], condim=4)
    return spec


class Scene:
    """A compiled scene with its state: step it, read poses, render its cameras.

    ``joint_names`` is the order of the 43 actuated joints, which is the order of the
    humanoid profile's ``/joint_states``; ``ctrl`` targets are in the same order.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        try:
            self.model = build_spec(layout).compile()
        except ValueError as exc:
            raise SimError(f"scene does not compile: {exc}") from exc
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_names = profile_joint_names()
        by_joint = {m.joint(m.actuator(i).trnid[0]).name: i for i in range(m.nu)}
        missing = [n for n in self.joint_names if n not in by_joint]
        if missing or len(by_joint) != len(self.joint_names):
            raise SimError(f"G1 model and humanoid profile disagree on joints: {missing}")
        #: actuator index of each profile joint
        self._act = np.array([by_joint[n] for n in self.joint_names])
        jnt = m.actuator_trnid[self._act, 0]
        self._qadr = m.jnt_qposadr[jnt]
        self._vadr = m.jnt_dofadr[jnt]
        self.ctrl_range = m.actuator_ctrlrange[self._act].copy()
        self.object_names = [o.name for o in layout.objects]
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.reset()

    @property
    def dt(self) -> float:
        """Seconds per physics step."""
        return float(self.model.opt.timestep)

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    def reset(self) -> None:
        """Back to the start: arms at rest (:data:`HOME_ARM`), hands open, objects at their
        layout poses."""
        mujoco.mj_resetData(self.model, self.data)
        self.set_ctrl(self.home_ctrl())
        self.data.qpos[self._qadr] = self.data.ctrl[self._act]
        mujoco.mj_forward(self.model, self.data)

    def home_ctrl(self) -> np.ndarray:
        """The rest posture (profile order): legs and waist at zero, arms at
        :data:`HOME_ARM`, hands open; clipped to each joint's range."""
        home = np.zeros(len(self.joint_names))
        for side, sign in (("left", 1.0), ("right", -1.0)):
            for j, v in HOME_ARM.items():
                home[self.joint_names.index(f"{side}_{j}_joint")] = \
                    sign * v if j in _MIRRORED else v
        out: np.ndarray = np.clip(home, self.ctrl_range[:, 0], self.ctrl_range[:, 1])
        return out

    # -- state ------------------------------------------------------------------------
    def qpos(self) -> np.ndarray:
        """Positions of the 43 actuated joints, profile order."""
        out: np.ndarray = self.data.qpos[self._qadr].copy()
        return out

    def qvel(self) -> np.ndarray:
        out: np.ndarray = self.data.qvel[self._vadr].copy()
        return out

    def effort(self) -> np.ndarray:
        """Actuator forces (N m) of the 43 joints."""
        out: np.ndarray = self.data.actuator_force[self._act].copy()
        return out

    def set_ctrl(self, targets: np.ndarray) -> None:
        """Position targets of the 43 joints (profile order), clipped to their ranges."""
        self.data.ctrl[self._act] = np.clip(targets, self.ctrl_range[:, 0], self.ctrl_range[:, 1])

    def ctrl(self) -> np.ndarray:
        """The current position targets, profile order."""
        out: np.ndarray = self.data.ctrl[self._act].copy()
        return out

    def set_joint_positions(self, q: np.ndarray) -> None:
        """Put the 43 joints (profile order) at ``q`` directly, velocities zero, and update
        poses and contacts (a teleport, for tests and checks; physics does not do this)."""
        self.data.qpos[self._qadr] = q
        self.data.qvel[self._vadr] = 0.0
        self.forward()

    def set_object_pose(self, name: str, pos: np.ndarray | tuple[float, ...],
                        quat: np.ndarray | tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)) -> None:
        """Put a free object at a world pose (quaternion w, x, y, z), at rest, and update
        poses and contacts."""
        if name not in self.object_names:
            raise SimError(f"scene has no object {name!r}; it has {', '.join(self.object_names)}")
        m, d = self.model, self.data
        jid = m.joint(f"{name}_free").id
        adr, vadr = m.jnt_qposadr[jid], m.jnt_dofadr[jid]
        d.qpos[adr:adr + 3] = pos
        d.qpos[adr + 3:adr + 7] = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
        d.qvel[vadr:vadr + 6] = 0.0
        self.forward()

    def forward(self) -> None:
        """Recompute poses and contacts from the current state without stepping."""
        mujoco.mj_forward(self.model, self.data)

    def step(self, n: int = 1) -> None:
        mujoco.mj_step(self.model, self.data, nstep=n)

    def body_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World position and orientation (quaternion w, x, y, z) of a body."""
        try:
            b = self.data.body(name)
        except KeyError:
            raise SimError(f"scene has no body {name!r}") from None
        return b.xpos.copy(), b.xquat.copy()

    def palm_pose(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """World position and quaternion (w, x, y, z) of the ``left`` or ``right`` palm."""
        site = self.data.site(f"{side}_palm")
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, site.xmat)
        return site.xpos.copy(), quat

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.object_names:
            raise SimError(f"scene has no object {name!r}; it has {', '.join(self.object_names)}")
        return self.body_pose(name)

    def contacts(self, geom_a: str, body_b: str) -> bool:
        """Whether geom ``geom_a`` touches any geom of body ``body_b`` (or its children)."""
        m, d = self.model, self.data
        ga = m.geom(geom_a).id
        bb = m.body(body_b).id
        for i in range(d.ncon):
            c = d.contact[i]
            for g1, g2 in ((c.geom1, c.geom2), (c.geom2, c.geom1)):
                if g1 == ga and _is_under(m, int(m.geom_bodyid[g2]), bb):
                    return True
        return False

    def imu(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Torso orientation (w, x, y, z), angular velocity and linear acceleration
        (gravity included), as the pelvis IMU reports them on a fixed base."""
        _, quat = self.body_pose("pelvis")
        return quat, np.zeros(3), np.array([0.0, 0.0, 9.81])

    # -- rendering --------------------------------------------------------------------
    def render(self, camera: str, width: int = 640, height: int = 480) -> np.ndarray:
        """An RGB frame (height x width x 3, uint8) of one of ``CAMERAS``, offscreen on the
        CPU (``MUJOCO_GL=egl`` or ``osmesa``), shadows and reflections off."""
        if camera not in CAMERAS:
            raise SimError(f"unknown camera {camera!r}; cameras: {', '.join(CAMERAS)}")
        r = self._renderers.get((width, height))
        if r is None:
            os.environ.setdefault("MUJOCO_GL", "egl")
            try:
                r = mujoco.Renderer(self.model, height=height, width=width)
            except Exception as exc:  # GL back-ends raise their own types
                raise SimError(f"offscreen rendering failed ({exc}); install libosmesa6 "
                               "or libegl1 and set MUJOCO_GL=osmesa or egl") from exc
            self._renderers[(width, height)] = r
        r.update_scene(self.data, camera=camera)
        flags = r.scene.flags
        for f in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                  mujoco.mjtRndFlag.mjRND_SKYBOX):
            flags[f] = 0
        out: np.ndarray = r.render()
        return out

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def profile_joint_names() -> list[str]:
    """The 43 joints of the recorder's humanoid profile, in its ``/joint_states`` order."""
    from recorder.profile import load_profile

    return [j.name for j in load_profile("humanoid").robot.joints]


def _is_under(m: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while True:
        if body == ancestor:
            return True
        if body == 0:
            return False
        body = int(m.body_parentid[body])


__all__ = ["CAMERAS", "SIDES", "HOME_ARM", "HAND_JOINTS", "PALM_OFFSET", "ObjectSpec", "BinSpec", "Layout",
           "build_spec", "Scene", "profile_joint_names"]
