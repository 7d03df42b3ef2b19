#!/usr/bin/env bash
# The test suite: the main venv's tests, then (when present) the ROS 2 tests in their
# own venv. pytest's "no tests collected" (exit 5) is a failure here, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "run-tests: pytest collected no tests" >&2; rc=1; fi
[ $rc -ne 0 ] && status=$rc
exit $status
