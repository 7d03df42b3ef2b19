#!/usr/bin/env bash
# The test suite: ruff, mypy (strict, configured in pyproject.toml), the main venv's
# tests, then the ROS 2 tests in their own venv (tools/run-ros-tests.sh builds it from
# pinned wheels and runs them on loopback only). Each step runs even when an earlier one
# failed, and any failure fails the run. pytest's "no tests collected" (exit 5) is a
# failure here, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/mypy || status=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "run-tests: pytest collected no tests" >&2; rc=1; fi
[ $rc -ne 0 ] && status=$rc
if [ -x tools/run-ros-tests.sh ] && [ -z "${DEMOFAB_SKIP_ROS:-}" ]; then
  tools/run-ros-tests.sh
  rc=$?
  [ $rc -ne 0 ] && status=$rc
fi
exit $status
