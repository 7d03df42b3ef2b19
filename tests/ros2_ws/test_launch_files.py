"""The ROS 2 launch files, parameter files and ament packages, checked without ROS 2.

There is no ``launch``/``launch_ros`` here, so the launch files are read with ``ast``: every
executable they start is a console script of its package's setup.py, every package has a
package.xml, every parameter file exists and parses, and every parameter given (in the
YAML or inline) is declared by the node, with a value of the declared type (rclpy refuses
``10`` for a float parameter).
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
SRC = ROOT / "ros2_ws" / "src"
LAUNCH_FILES = sorted(LAUNCH.glob("*.launch.py"))


def call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        f = node.func
        return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
    return ""


def kwargs(call: ast.Call) -> dict[str, ast.AST]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def const(node: ast.AST | None) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


def console_scripts(package: str) -> dict[str, str]:
    """name -> 'module:function' from the package's setup.py entry_points."""
    tree = ast.parse((SRC / package / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if const(key) == "console_scripts" and isinstance(value, ast.List):
                    out = {}
                    for item in value.elts:
                        name, _, target = const(item).partition("=")
                        out[name.strip()] = target.strip()
                    return out
    return {}


def declared_parameters(package: str, module: str) -> dict[str, Any]:
    """Parameters a node declares: literal ``declare_parameter('name', default)`` calls and
    the (name, default, description) rows of a module-level ``PARAMETERS`` table."""
    path = SRC / package / Path(*module.split("."))
    tree = ast.parse(path.with_suffix(".py").read_text())
    out: dict[str, Any] = {}
    for node in ast.walk(tree):
        if call_name(node) == "declare_parameter" and node.args and const(node.args[0]):
            out[const(node.args[0])] = const(node.args[1]) if len(node.args) > 1 else None
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(getattr(t, "id", "") == "PARAMETERS" for t in targets) and \
                    isinstance(node.value, ast.Tuple):
                for row in node.value.elts:
                    name, default = row.elts[0], row.elts[1]
                    if isinstance(default, ast.Attribute | ast.Name):
                        out[const(name)] = "array"   # a Parameter.Type: an unset typed array
                    else:
                        out[const(name)] = ast.literal_eval(default)
    return out


def type_ok(default: Any, value: Any) -> bool:
    if default == "array":
        return isinstance(value, list)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, float)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def yaml_path(tree: ast.Module, launch_file: Path) -> Path:
    """The parameter file: a module-level ``X = os.path.join(<dir of __file__>, 'a', 'b.yaml')``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and call_name(node.value) == "join":
            parts = [const(a) for a in node.value.args if isinstance(const(a), str)]
            if parts and parts[-1].endswith(".yaml"):
                return launch_file.parent.joinpath(*parts)
    raise AssertionError(f"{launch_file.name}: no parameter file path found")


def nodes_of(tree: ast.Module) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if call_name(n) == "Node"]


def test_there_are_launch_files_for_recording_and_replay() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"record_humanoid.launch.py", "replay.launch.py"}


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_real_packages_executables_and_parameters(launch_file: Path) -> None:
    tree = ast.parse(launch_file.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body), f"{launch_file.name}: no generate_launch_description()"
    declared_args = {const(n.args[0]) for n in ast.walk(tree)
                     if call_name(n) == "DeclareLaunchArgument" and n.args}
    used_args = {const(n.args[0]) for n in ast.walk(tree)
                 if call_name(n) == "LaunchConfiguration" and n.args}
    assert used_args <= declared_args, f"{launch_file.name}: undeclared {used_args - declared_args}"
    nodes = nodes_of(tree)
    assert nodes, f"{launch_file.name}: starts no Node"
    params_file = yaml_path(tree, launch_file)
    assert params_file.is_file(), f"{launch_file.name}: {params_file} does not exist"
    config = yaml.safe_load(params_file.read_text())
    for call in nodes:
        kw = kwargs(call)
        package, executable, name = const(kw["package"]), const(kw["executable"]), const(kw.get("name"))
        manifest = SRC / package / "package.xml"
        assert manifest.is_file(), f"{launch_file.name}: package {package} has no package.xml"
        assert ET.parse(manifest).getroot().findtext("name") == package
        scripts = console_scripts(package)
        assert executable in scripts, f"{launch_file.name}: {executable} is not an entry point of {package}"
        module, _, func = scripts[executable].partition(":")
        declared = declared_parameters(package, module)
        module_src = (SRC / package / Path(*module.split("."))).with_suffix(".py").read_text()
        assert f"def {func}(" in module_src
        # the parameter file: one section for this node, every key declared, right type
        assert name in config, f"{params_file.name}: no section for node {name}"
        params = config[name]["ros__parameters"]
        for key, value in params.items():
            assert key in declared, f"{params_file.name}: {name} declares no parameter {key!r}"
            assert type_ok(declared[key], value), \
                f"{params_file.name}: {key}={value!r} does not match the declared default {declared[key]!r}"
        # inline parameters (dicts in parameters=[...])
        for item in kw["parameters"].elts:
            if isinstance(item, ast.Dict):
                for key in item.keys:
                    assert const(key) in declared, f"{launch_file.name}: {name} declares no {const(key)!r}"


def test_package_config_files_equal_the_launch_configs() -> None:
    for path in sorted((SRC / "demofab_ros" / "config").glob("*.yaml")):
        assert path.read_text() == (LAUNCH / "config" / path.name).read_text(), path.name


def test_every_ament_package_has_a_manifest_that_names_it() -> None:
    for pkg in sorted(p for p in SRC.iterdir() if p.is_dir()):
        root = ET.parse(pkg / "package.xml").getroot()
        assert root.findtext("name") == pkg.name
        build_type = root.find("export/build_type").text
        assert build_type == ("ament_python" if (pkg / "setup.py").exists() else "ament_cmake")


def test_episode_event_in_demofab_msgs_is_the_recorders() -> None:
    ours = (ROOT / "recorder" / "msg" / "EpisodeEvent.msg").read_bytes()
    assert (SRC / "demofab_msgs" / "msg" / "EpisodeEvent.msg").read_bytes() == ours


def test_demofab_msgs_generates_every_interface_file() -> None:
    cmake = (SRC / "demofab_msgs" / "CMakeLists.txt").read_text()
    files = sorted(str(p.relative_to(SRC / "demofab_msgs"))
                   for p in (SRC / "demofab_msgs").glob("*/*") if p.suffix in (".msg", ".srv"))
    assert files == ["msg/EpisodeEvent.msg", "srv/Seek.srv", "srv/StopEpisode.srv"]
    for f in files:
        assert f'"{f}"' in cmake, f"{f} is not in rosidl_generate_interfaces"


CPP_KEYWORDS = {
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break",
    "case", "catch", "char", "class", "compl", "concept", "const", "consteval", "constexpr",
    "constinit", "const_cast", "continue", "co_await", "co_return", "co_yield", "decltype",
    "default", "delete", "do", "double", "dynamic_cast", "else", "enum", "explicit", "export",
    "extern", "false", "float", "for", "friend", "goto", "if", "inline", "int", "long",
    "mutable", "namespace", "new", "noexcept", "not", "not_eq", "nullptr", "operator", "or",
    "or_eq", "private", "protected", "public", "register", "reinterpret_cast", "requires",
    "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast", "struct",
    "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid",
    "typename", "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while",
    "xor", "xor_eq",
}


def test_interface_field_names_are_not_cpp_keywords() -> None:
    for path in sorted((SRC / "demofab_msgs").glob("*/*")):
        if path.suffix not in (".msg", ".srv"):
            continue
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line == "---" or "=" in line:
                continue
            field = line.split()[1]
            assert field not in CPP_KEYWORDS, f"{path.name}: field {field!r} is a C++ keyword"
