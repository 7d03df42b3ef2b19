#!/usr/bin/env bash
# System packages the product and its tests need, installed by the repo itself (CI runs as
# root on a clean machine): Mesa's EGL and OSMesa for MuJoCo's offscreen rendering on the
# CPU, and PostgreSQL for the vault's shared-catalog tests (started by tools/postgres.sh,
# never as a system service), Debian's Chromium for the review page's browser tests
# (Playwright drives /usr/bin/chromium; no browser download), and bubblewrap for the
# clean room's sandbox. Without root it only says what is missing.
set -euo pipefail
need=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 postgresql chromium bubblewrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${need[*]} (install them: apt-get install -y ${need[*]})" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
