"""Generate demofab_msgs' C and Python sources with the rosidl generators of .venv-ros.

Without colcon or ament_cmake (not in the PyPI wheels), this runs the same generators that
``rosidl_generate_interfaces`` runs: .msg/.srv -> .idl (rosidl_adapter), type descriptions
and hashes, C structs (rosidl_generator_c), the C type supports (introspection, Fast DDS,
the dispatching one) and the Python classes with their C extension (rosidl_generator_py).
``build_demofab_msgs.sh`` then compiles the C with gcc.

The wheels ship every generator twice (an egg-info inside the wheel and the dist-info),
so ``rosidl generate`` refuses the duplicate entry points; this calls the extension
classes directly instead.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(pkg_dir: str, out_dir: str, include: str) -> None:
    from rosidl_cli.command.generate import api

    def dedupe(loader):
        def load(*, specs=None, strict=False):
            import importlib.metadata as md

            seen, out = set(), []
            for ep in md.entry_points().select(group=loader.group):
                if ep.name in seen or (specs and ep.name not in specs):
                    continue
                seen.add(ep.name)
                out.append(ep.load()(ep.name))
            return out
        return load

    class Group:
        def __init__(self, group: str) -> None:
            self.group = group

    api.load_type_extensions = dedupe(Group("rosidl_cli.command.generate.type_extensions"))
    api.load_typesupport_extensions = dedupe(
        Group("rosidl_cli.command.generate.typesupport_extensions"))
    from rosidl_adapter import convert_to_idl

    pkg = Path(pkg_dir).resolve()
    idl_dir = Path(out_dir).resolve() / "idl"
    files = []
    for path in sorted(pkg.glob("msg/*.msg")) + sorted(pkg.glob("srv/*.srv")):
        idl = convert_to_idl(pkg, "demofab_msgs", path.relative_to(pkg), idl_dir)
        files.append(f"{idl_dir}:{Path(idl).relative_to(idl_dir)}")
    api.generate(package_name="demofab_msgs", interface_files=files, include_paths=[include],
                 output_path=Path(out_dir), types=["c", "py"],
                 typesupports=["c", "introspection_c", "fastrtps_c"])


if __name__ == "__main__":
    main(*sys.argv[1:4])
