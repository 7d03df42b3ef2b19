#!/usr/bin/env bash
# tools/run-ros-tests.sh [PYTEST ARGS...]
#
# The ROS 2 tests (tests/ros): builds or refreshes the ROS venv (tools/ros-venv.sh),
# installs demofab into it (pip install --no-deps -e ., skipped when already there),
# and runs `python -m pytest tests/ros -q` inside tools/netns-run.sh (a private network
# namespace with only loopback: no DDS traffic leaves the machine). rclpy logs go to a
# temporary ROS_LOG_DIR. pytest's "no tests collected" (exit 5) is a failure here.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$(tools/ros-venv.sh | tail -n 1)" || { echo "run-ros-tests: building the ROS venv failed" >&2; exit 1; }
py="$venv/bin/python"

# demofab itself, editable, without its dependencies (the venv pins what it needs)
if ! "$py" - "$root" <<'PY' 2>/dev/null
import pathlib, sys
import recorder
sys.exit(0 if pathlib.Path(recorder.__file__).resolve().parent.parent == pathlib.Path(sys.argv[1]) else 1)
PY
then
  echo "run-ros-tests: installing demofab (editable, --no-deps) into $venv" >&2
  "$py" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root" >&2 \
    || { echo "run-ros-tests: pip install -e . failed" >&2; exit 1; }
fi

logdir="$(mktemp -d -t demofab-ros-log.XXXXXX)"
trap 'rm -rf "$logdir"' EXIT
export ROS_LOG_DIR="$logdir"

# default to tests/ros unless a test path (file, dir or node id) is given
args=("$@")
has_path=0
for a in "$@"; do [ -e "${a%%::*}" ] && has_path=1; done
[ $has_path -eq 0 ] && args+=(tests/ros)
tools/netns-run.sh "$py" -m pytest -q -p no:cacheprovider "${args[@]}"
rc=$?
if [ $rc -eq 5 ]; then echo "run-ros-tests: pytest collected no tests" >&2; rc=1; fi
exit $rc
