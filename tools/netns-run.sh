#!/usr/bin/env bash
# netns-run.sh CMD [ARGS...]
#
# Run CMD in a fresh, private network namespace whose only interface is the
# loopback device `lo` (brought up, with the MULTICAST flag on so DDS SPDP
# multicast discovery works on it). Nothing CMD sends can leave the machine,
# and nothing outside can see CMD's DDS participants: use it for every ROS 2 /
# DDS test and benchmark. All processes that must talk to each other have to be
# started *inside the same* CMD (e.g. a pytest run, or a shell script that
# starts a publisher and a subscriber).
#
# Needs root (or CAP_SYS_ADMIN): uses `unshare --net`. Filesystem, PIDs and
# /dev/shm are shared with the host, so Fast DDS' shared-memory transport still
# works between processes inside the namespace.
#
# Environment it sets for CMD (override by exporting your own before calling):
#   ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  (Jazzy; Fast DDS/rclpy stays on lo)
#   ROS_DOMAIN_ID=0 unless set
#   CYCLONEDDS_URI=file://<tools>/cyclonedds-lo.xml unless set (pins Cyclone DDS,
#     e.g. the python `cyclonedds` package, to `lo` with multicast allowed)
#   DEMOFAB_NETNS=1 (so tests can tell they run isolated)
#
# Options (before CMD):
#   --no-env   do not set the ROS/Cyclone variables above
#   --check    only print `ip addr` inside the namespace and exit
#
# Exit status: CMD's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

set_env=1
if [[ "${1:-}" == "--no-env" ]]; then set_env=0; shift; fi
if [[ "${1:-}" == "--check" ]]; then set -- ip -brief addr; fi
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [--no-env] [--check] CMD [ARGS...]" >&2
  exit 2
fi

# Inner stage: we are already inside the new namespace.
if [[ "${_DEMOFAB_NETNS_INNER:-}" == "1" ]]; then
  unset _DEMOFAB_NETNS_INNER
  ip link set lo up
  ip link set lo multicast on
  exec "$@"
fi

if ! command -v ip >/dev/null 2>&1; then
  echo "netns-run: 'ip' missing, installing iproute2 via apt-get" >&2
  if [[ $(id -u) -ne 0 ]]; then echo "netns-run: need root to install iproute2" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi
if ! command -v unshare >/dev/null 2>&1; then
  echo "netns-run: 'unshare' (util-linux) missing" >&2; exit 1
fi

if [[ $set_env -eq 1 ]]; then
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-0}"
  export CYCLONEDDS_URI="${CYCLONEDDS_URI:-file://$here/cyclonedds-lo.xml}"
fi
export DEMOFAB_NETNS=1

_DEMOFAB_NETNS_INNER=1 exec unshare --net -- "$BASH" "${BASH_SOURCE[0]}" "$@"
