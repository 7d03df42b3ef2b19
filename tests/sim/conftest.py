"""Fixtures of the sim tests: scenes of the tasks' default layouts, free-object placement.

(No ``__init__.py`` in this folder: with pytest's importlib mode it would be imported as a
package called ``sim`` and shadow the real one.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from sim.scenes import Scene
from sim.tasks import get_task

Place = Callable[..., None]


def place_object(scene: Scene, name: str, pos: tuple[float, ...] | np.ndarray,
                 quat: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)) -> None:
    """Put a free object at a world pose, at rest (:meth:`Scene.set_object_pose`)."""
    scene.set_object_pose(name, pos, quat)


@pytest.fixture()
def place() -> Place:
    """:func:`place_object`, for tests."""
    return place_object


@pytest.fixture()
def pick_place_scene() -> Iterator[Scene]:
    with Scene(get_task("pick_place").default_layout()) as scene:
        yield scene
