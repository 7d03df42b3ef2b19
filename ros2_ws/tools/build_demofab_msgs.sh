#!/usr/bin/env bash
# ros2_ws/tools/build_demofab_msgs.sh [OUT]
#
# Build demofab_msgs' Python bindings without colcon or ament_cmake (neither is among the
# ROS 2 PyPI wheels of .venv-ros): run the rosidl generators (gen_demofab_msgs.py), then
# compile what rosidl_generate_interfaces would, with gcc/g++ against the headers and
# libraries of the venv:
#   lib/libdemofab_msgs__rosidl_generator_c.so              C structs, functions, type hashes
#   lib/libdemofab_msgs__rosidl_typesupport_introspection_c.so
#   lib/libdemofab_msgs__rosidl_typesupport_fastrtps_c.so   (Fast CDR, the rmw's)
#   lib/libdemofab_msgs__rosidl_typesupport_c.so            dispatch to the two above
#   lib/libdemofab_msgs__rosidl_generator_py.so             Python <-> C conversion
#   site/demofab_msgs/{msg,srv}/*.py + demofab_msgs_s__rosidl_typesupport_*.so
# Use:  PYTHONPATH=OUT/site LD_LIBRARY_PATH=OUT/lib:$LD_LIBRARY_PATH  (and the venv's python)
# On a robot with ROS 2 Jazzy, build ros2_ws with colcon instead (docs/teleoperator-guide.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${DEMOFAB_ROS_VENV:-$root/.venv-ros}"
out="$(mkdir -p "${1:-$root/ros2_ws/build/demofab_msgs}" && cd "${1:-$root/ros2_ws/build/demofab_msgs}" && pwd)"
py="$venv/bin/python"
gen="$out/gen"
rm -rf "$gen" "$out/inc" "$out/lib" "$out/site"
mkdir -p "$out/inc/demofab_msgs" "$out/lib" "$out/site/demofab_msgs"

AMENT_PREFIX_PATH="$venv" ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d)}" \
  "$py" "$here/gen_demofab_msgs.py" "${DEMOFAB_MSGS_SRC:-$root/ros2_ws/src/demofab_msgs}" "$gen" "$venv/share" >/dev/null

# one include tree: demofab_msgs/{msg,srv}/... from every generator
for d in c introspection_c fastrtps_c; do cp -r "$gen/$d/." "$out/inc/demofab_msgs/"; done

inc=(-I"$out/inc" -I"$venv/include")
for d in "$venv"/include/*/; do inc+=(-I"$d"); done
pyinc="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
npinc="$("$py" -c 'import numpy; print(numpy.get_include())')"
L=(-L"$venv/lib" -L"$out/lib" -Wl,-rpath,"$venv/lib" -Wl,-rpath,"$out/lib")
deps_c=(-lstd_msgs__rosidl_generator_c -lbuiltin_interfaces__rosidl_generator_c -lservice_msgs__rosidl_generator_c)
CF=(-shared -fPIC -O2 -w)

cd "$gen"
gcc "${CF[@]}" "${inc[@]}" c/msg/detail/*.c c/srv/detail/*.c \
  "${L[@]}" -lrosidl_runtime_c -lrcutils "${deps_c[@]}" -o "$out/lib/libdemofab_msgs__rosidl_generator_c.so"
gcc "${CF[@]}" "${inc[@]}" introspection_c/msg/detail/*.c introspection_c/srv/detail/*.c \
  "${L[@]}" -ldemofab_msgs__rosidl_generator_c -lrosidl_runtime_c -lrosidl_typesupport_introspection_c \
  -lstd_msgs__rosidl_typesupport_introspection_c -lbuiltin_interfaces__rosidl_typesupport_introspection_c \
  -lservice_msgs__rosidl_typesupport_introspection_c \
  -o "$out/lib/libdemofab_msgs__rosidl_typesupport_introspection_c.so"
g++ "${CF[@]}" -std=c++17 "${inc[@]}" fastrtps_c/msg/detail/*.cpp fastrtps_c/srv/detail/*.cpp \
  "${L[@]}" -ldemofab_msgs__rosidl_generator_c -lrosidl_runtime_c -lrosidl_typesupport_fastrtps_c \
  -lrosidl_typesupport_fastrtps_cpp -lfastcdr -lrmw \
  -lstd_msgs__rosidl_typesupport_fastrtps_c -lbuiltin_interfaces__rosidl_typesupport_fastrtps_c \
  -lservice_msgs__rosidl_typesupport_fastrtps_c \
  -o "$out/lib/libdemofab_msgs__rosidl_typesupport_fastrtps_c.so"
g++ "${CF[@]}" -std=c++17 "${inc[@]}" c/msg/*.cpp c/srv/*.cpp \
  "${L[@]}" -ldemofab_msgs__rosidl_generator_c -lrosidl_runtime_c -lrosidl_typesupport_c -lrcutils -lrcpputils \
  -o "$out/lib/libdemofab_msgs__rosidl_typesupport_c.so"
gcc "${CF[@]}" "${inc[@]}" -I"$pyinc" -I"$npinc" py/msg/*_s.c py/srv/*_s.c \
  "${L[@]}" -ldemofab_msgs__rosidl_generator_c -lrosidl_runtime_c -lrcutils \
  -lstd_msgs__rosidl_generator_py -lbuiltin_interfaces__rosidl_generator_py -lservice_msgs__rosidl_generator_py \
  -lstd_msgs__rosidl_generator_c -lbuiltin_interfaces__rosidl_generator_c -lservice_msgs__rosidl_generator_c \
  -o "$out/lib/libdemofab_msgs__rosidl_generator_py.so"
for ts in rosidl_typesupport_c rosidl_typesupport_introspection_c rosidl_typesupport_fastrtps_c; do
  gcc "${CF[@]}" "${inc[@]}" -I"$pyinc" -I"$npinc" "py/_demofab_msgs_s.ep.$ts.c" \
    "${L[@]}" -ldemofab_msgs__rosidl_generator_py -ldemofab_msgs__rosidl_generator_c \
    -ldemofab_msgs__${ts} -lrosidl_runtime_c -lrcutils \
    -o "$out/site/demofab_msgs/demofab_msgs_s__$ts.so"
done
cp -r py/msg py/srv "$out/site/demofab_msgs/"
touch "$out/site/demofab_msgs/__init__.py"
echo "$out"
