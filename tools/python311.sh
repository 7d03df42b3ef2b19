# Sourced by tools/*-venv.sh: find_python311 NAME WHY prints the path of a CPython 3.11
# ($PYTHON first, then python3.11 on PATH, pyenv, /usr), or says NAME needs it, and WHY.
find_python311() {
  local c
  for c in "${PYTHON:-}" python3.11 /root/.pyenv/versions/3.11*/bin/python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11; do
    [[ -n "$c" ]] || continue
    if command -v "$c" >/dev/null 2>&1 && \
       "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  echo "$1: need CPython 3.11 ($2); set PYTHON=" >&2
  return 1
}
