#!/usr/bin/env bash
# tools/ros-venv.sh [--selftest] [--force]
#
# Create (idempotently) the second virtualenv `.venv-ros` that holds ROS 2 Jazzy
# from PyPI wheels (rclpy + Fast DDS + common_interfaces messages) next to the
# test tools (pytest, numpy, mcap, rosbags, cyclonedds, ...). All versions are
# pinned in tools/ros-requirements.txt. A stamp file inside the venv holds the
# sha256 of that file (and of the interpreter version); when it matches, the
# script returns at once (~10 ms). Prints the venv path as its last stdout line:
#
#     PY="$(tools/ros-venv.sh)/bin/python"
#     tools/netns-run.sh "$PY" -m pytest -m ros tests/...
#
# --selftest  also run tools/ros_selftest.py inside tools/netns-run.sh
#             (rclpy init, pub/sub in one and two processes, raw CDR, cyclonedds
#             <-> rclpy both ways).
# --force     rebuild even when the stamp matches.
#
# Env: DEMOFAB_ROS_VENV (venv dir, default <repo>/.venv-ros),
#      PYTHON (a CPython 3.11 interpreter; default: python3.11 on PATH, then pyenv).
#
# How these unofficial wheels bootstrap (read from ros-wheels-bootstrapper 0.1.2):
#   * ROS C/C++ libraries live in <venv>/lib (librcl*.so, libfastrtps.so,
#     lib<pkg>__rosidl_typesupport_*.so ...) and in site-packages/ros_*.libs
#     (auditwheel-vendored libssl/libcrypto/tinyxml2/lttng/yaml, hash-suffixed
#     names, so they do not clash with system libraries).
#   * site-packages/ros_wheels_bootstrapper.pth runs at *every* interpreter start
#     in this venv (python, pytest, pip alike). If _ROS_WHEELS_BOOTSTRAP_COMPLETE is
#     not set, it prepends <venv>/lib and every site-packages/ros_*.libs dir to
#     LD_LIBRARY_PATH, sets _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 and os.execve()s
#     sys.executable with sys.orig_argv: every interpreter starts twice (+~0.1 s;
#     exec keeps the PID, so Popen.pid stays valid).
#     Children inherit both variables and skip the re-exec.
#   * rmw and type supports are found through LD_LIBRARY_PATH (rcpputils
#     find_library_path), not through the ament index: AMENT_PREFIX_PATH is NOT
#     needed for rclpy. Set AMENT_PREFIX_PATH=<venv> only for code that calls
#     ament_index_python (share/ament_index is at <venv>/share).
#   * RMW_IMPLEMENTATION: unset = rmw_fastrtps_cpp (the only rmw installed;
#     rmw_cyclonedds_cpp has no wheel and rcl exits with code 102 if asked for it).
#   * Other variables that matter: ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE
#     (Jazzy: LOCALHOST|SUBNET|OFF|SYSTEM_DEFAULT), ROS_STATIC_PEERS,
#     ROS_LOCALHOST_ONLY (deprecated in Jazzy, still honoured),
#     FASTDDS_DEFAULT_PROFILES_FILE, ROS_LOG_DIR (rclpy writes a log file per
#     process to ~/.ros/log unless ROS_LOG_DIR points elsewhere; set it in tests).
#   * To start a venv-ros process from a process of another venv without the
#     re-exec, you may export LD_LIBRARY_PATH yourself plus
#     _ROS_WHEELS_BOOTSTRAP_COMPLETE=1; simplest is to just run <venv>/bin/python.
#     Conversely a non-ROS python started *from* a venv-ros process inherits that
#     LD_LIBRARY_PATH (harmless so far; ROS libs only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${DEMOFAB_ROS_VENV:-$root/.venv-ros}"
req="$here/ros-requirements.txt"
stamp="$venv/.demofab-ros-stamp"

selftest=0
force=0
for a in "$@"; do
  case "$a" in
    --selftest) selftest=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "ros-venv: unknown argument $a" >&2; exit 2 ;;
  esac
done

# shellcheck source=python311.sh
source "$here/python311.sh"
find_python() { find_python311 ros-venv "the ROS Jazzy wheels are cp311 only"; }

want_stamp() {
  # hash of the pin list + this script's bootstrap logic version
  { cat "$req"; echo "ros-venv v1"; } | sha256sum | cut -d' ' -f1
}

want="$(want_stamp)"
if [[ $force -eq 0 && -f "$stamp" && -x "$venv/bin/python" && "$(cat "$stamp")" == "$want" ]]; then
  :  # up to date
else
  py="$(find_python)"
  echo "ros-venv: building $venv with $py (pins: ${req#$root/})" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # --no-cache-dir is not used on purpose: a warm pip cache makes rebuilds ~25 s.
  # (grep drops the pip warnings about this machine's missing local file:// indexes)
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  # smoke: libraries resolve, rmw loads, messages import
  ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d)}" "$venv/bin/python" - >&2 <<'PY'
import rclpy, cyclonedds, rosbags, mcap, numpy, yaml, zstandard, lz4, rich  # noqa: F401
from rclpy.experimental import EventsExecutor  # noqa: F401
from sensor_msgs.msg import JointState, CompressedImage, Imu  # noqa: F401
from geometry_msgs.msg import PoseStamped  # noqa: F401
from trajectory_msgs.msg import JointTrajectory  # noqa: F401
from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401
from std_srvs.srv import Trigger  # noqa: F401
from rclpy.utilities import get_rmw_implementation_identifier
ctx = rclpy.Context()
rclpy.init(context=ctx)
assert get_rmw_implementation_identifier() == "rmw_fastrtps_cpp"
rclpy.shutdown(context=ctx)
PY
  echo "$want" > "$stamp"
  echo "ros-venv: ready" >&2
fi

if [[ $selftest -eq 1 ]]; then
  ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d)}" "$here/netns-run.sh" "$venv/bin/python" "$here/ros_selftest.py" >&2
fi

echo "$venv"
