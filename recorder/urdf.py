"""A kinematic URDF listing a profile's joints and limits, attached to episodes recorded
from a rig that has no description of its own (the synthetic rig)."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .profile import Profile


def urdf_from_profile(profile: Profile) -> bytes:
    robot = profile.robot
    lines = ['<?xml version="1.0"?>', f"<robot name={quoteattr(robot.name)}>",
             '  <link name="pelvis"/>']
    for j in robot.joints:
        child = j.name.removesuffix("_joint") + "_link"
        lines += [
            f"  <link name={quoteattr(child)}/>",
            f"  <joint name={quoteattr(j.name)} type=\"revolute\">",
            '    <parent link="pelvis"/>',
            f"    <child link={quoteattr(child)}/>",
            '    <axis xyz="0 0 1"/>',
            f'    <limit lower="{j.lower}" upper="{j.upper}" effort="100" velocity="10"/>',
            "  </joint>",
        ]
    lines.append("</robot>")
    return ("\n".join(lines) + "\n").encode()
