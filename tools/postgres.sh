#!/usr/bin/env bash
# A throwaway PostgreSQL server for the vault's tests, on a Unix socket only (no TCP port):
#
#   tools/postgres.sh start DIR   initdb DIR/data (first time), start the server with its
#                                 socket in DIR/run, print its SQLAlchemy URL
#   tools/postgres.sh url DIR     print the URL of the server in DIR
#   tools/postgres.sh stop DIR    stop it (nothing to do when it is not running)
#
# As root the server runs as user postgres (PostgreSQL refuses to run as root); DIR is
# handed to that user. Otherwise it runs as the calling user. Durability is off (fsync,
# full-page writes): the data is thrown away after the tests. Never a system service.
# The binaries come from PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH;
# tools/system-deps.sh installs them.
set -euo pipefail

usage() { echo "usage: $0 start|stop|url DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m -- "$2")
data="$dir/data"
run="$dir/run"

find_bin() {
  local d=""
  if [ -n "${PG_BIN:-}" ]; then
    d=$PG_BIN
  else
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if { [ -z "$d" ] || [ ! -x "$d/pg_ctl" ]; } && command -v pg_ctl >/dev/null 2>&1; then
      d=$(dirname "$(command -v pg_ctl)")
    fi
  fi
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  echo "postgres.sh: the PostgreSQL server binaries (initdb, pg_ctl) are not installed" \
       "${PG_BIN:+in PG_BIN=$PG_BIN }- run tools/system-deps.sh as root (it installs the" \
       "Debian package postgresql), or set PG_BIN to their directory" >&2
  exit 3
}

if [ "$(id -u)" -eq 0 ]; then
  user=postgres
  id -u postgres >/dev/null 2>&1 || {
    echo "postgres.sh: running as root but there is no user postgres to run the server;" \
         "install PostgreSQL with tools/system-deps.sh" >&2; exit 3; }
  if command -v runuser >/dev/null 2>&1; then
    as() { runuser -u postgres -- "$@"; }
  else
    as() { su -s /bin/bash postgres -c "$(printf '%q ' "$@")"; }
  fi
else
  user=$(id -un)
  as() { "$@"; }
fi

url() { echo "postgresql+psycopg://$user@/postgres?host=$run"; }

running() { [ -f "$data/postmaster.pid" ] && as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
  start)
    bin=$(find_bin)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    chmod 0700 "$dir"
    if running; then url; exit 0; fi
    if [ ! -f "$data/PG_VERSION" ]; then
      as "$bin/initdb" -D "$data" -A trust -U "$user" -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
        echo "postgres.sh: initdb failed; its output:" >&2; cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as mkdir -p "$run"
    as "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
      -o "-k '$run' -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || {
        echo "postgres.sh: the server did not start; its log:" >&2; cat "$dir/server.log" >&2; exit 1; }
    url
    ;;
  url)
    url
    ;;
  stop)
    [ -f "$data/postmaster.pid" ] || exit 0
    bin=$(find_bin)
    if running; then as "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null; fi
    ;;
  *)
    usage
    ;;
esac
