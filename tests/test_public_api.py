"""The public surface of every DemoFab package: what its ``__init__`` exports in ``__all__``.

Packages are found, not listed: every package under the top-level packages that
pyproject.toml installs (``demofab``, ``recorder``, ``curation``, ``bench``, and the stages
added later), so a module that becomes a package is covered as soon as it exists.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import pkgutil
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _top_level_packages() -> list[str]:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    patterns = find["find"]["include"]
    return sorted(p.name for p in ROOT.iterdir()
                  if (p / "__init__.py").is_file() and any(fnmatch(p.name, pat) for pat in patterns))


def _packages() -> list[str]:
    names = []
    for top in _top_level_packages():
        pkg = importlib.import_module(top)
        names.append(top)
        names += [info.name for info in pkgutil.walk_packages(pkg.__path__, f"{top}.")
                  if info.ispkg]
    return names


PACKAGES = _packages()


def _public(name: str) -> ModuleType:
    module = importlib.import_module(name)
    assert "__all__" in vars(module), f"{name}/__init__.py has no __all__"
    return module


def _undocumented(obj: object) -> bool:
    """True for a class or function without a docstring of its own; a constant (a value
    that is not a class, function or module) needs none."""
    if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)):
        return False
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    if not doc or not doc.strip():
        return True
    # a dataclass or NamedTuple without a docstring gets its signature as one
    generated = inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields"))
    return generated and doc.startswith(f"{obj.__name__}(")


def test_the_packages_are_found_and_include_the_stages() -> None:
    assert {"demofab", "recorder", "recorder.sources", "curation", "curation.export",
            "curation.loader", "bench"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_declares_its_public_names_in_all(name: str) -> None:
    names = _public(name).__all__
    assert isinstance(names, list | tuple) and all(isinstance(n, str) for n in names), \
        f"{name}.__all__ is not a list of names"
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    assert not duplicates, f"{name}.__all__ names {duplicates} more than once"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_exists_and_is_documented(name: str) -> None:
    module = _public(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define"
    undocumented = [n for n in module.__all__ if _undocumented(getattr(module, n))]
    assert not undocumented, f"{name}: {undocumented} have no docstring"


@pytest.mark.parametrize("name", PACKAGES)
def test_star_import_gives_exactly_all(name: str) -> None:
    module = _public(name)
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(set(module.__all__))
    assert all(namespace[n] is getattr(module, n) for n in namespace)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_leaves_out_no_public_class_or_function_the_init_defines(name: str) -> None:
    """What a package's ``__init__`` defines is either named in ``__all__`` or private."""
    module = _public(name)
    left_out = sorted(
        n for n, obj in vars(module).items()
        if not n.startswith("_") and n not in module.__all__
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    )
    assert not left_out, f"{name} exposes {left_out} without naming them in __all__"


def test_the_package_version_is_the_one_version_string() -> None:
    import demofab
    import recorder

    assert recorder.__version__ is demofab.__version__
    assert importlib.metadata.version("demofab") == demofab.__version__
