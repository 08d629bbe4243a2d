#!/usr/bin/env bash
# Create or refresh our environment on a Debian/Ubuntu machine with no system ROS:
#   1. .venv with ROS 2 (PyPI wheels), colcon, torch (CPU), transformers, opencv, test tools;
#   2. the CMake path repair the wheels need (ci/fix_cmake_paths.py);
#   3. colcon build of n3d_ros, plus our wire-compatible vision_msgs when no real one is on AMENT_PREFIX_PATH.
# Idempotent: each step is skipped when a stamp keyed on the hash of its inputs is present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${N3D_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"

die() { echo "setup: error: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- 1+2. venv and packages
req_hash="$(cat requirements.txt ci/requirements-ros.txt ci/requirements-test.txt ci/fix_cmake_paths.py | hash_of)"
venv_stamp="$VENV/.n3d-setup-$req_hash"
if [ ! -f "$venv_stamp" ]; then
  start=$SECONDS
  if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found; the ROS 2 wheels are built for CPython 3.11 (set PYTHON=...)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
      || die "$PYTHON is not Python 3.11; the ROS 2 wheels are built for CPython 3.11 (set PYTHON=...)"
    command -v cmake >/dev/null || die "cmake not found (Debian/Ubuntu: apt-get install cmake g++)"
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  echo "setup: installing Python packages into $VENV"
  # (the grep drops pip's notes about local index directories a machine's pip config may name but lack)
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -r requirements.txt -r ci/requirements-ros.txt -r ci/requirements-test.txt 2>&1 \
    | { grep -v '^WARNING: Location .* is ignored' || true; }
  "$VENV/bin/python" ci/fix_cmake_paths.py "$VENV"
  rm -f "$VENV"/.n3d-setup-*
  touch "$venv_stamp"
  echo "setup: packages ready in $((SECONDS - start)) s"
fi

# ---------------------------------------------------------------- 3. colcon build
set +u  # the activate and setup scripts read unset variables
# shellcheck disable=SC1091
. ci/env.sh
set -u

real_vision_msgs=""
IFS=: read -r -a prefixes <<< "${AMENT_PREFIX_PATH:-}"
for prefix in "${prefixes[@]}"; do
  case "$prefix" in "$ROOT/install"*) continue ;; esac  # our own copy does not count
  if [ -e "$prefix/share/ament_index/resource_index/packages/vision_msgs" ]; then real_vision_msgs="$prefix"; fi
done
base_paths=(.)
if [ -z "$real_vision_msgs" ]; then base_paths+=(ci/vision_msgs); fi

# Symlink install links each installed file, so a new or removed file needs a rebuild; edits do not.
build_hash="$( {
  echo "$req_hash ${base_paths[*]}"
  cat package.xml CMakeLists.txt msg/* srv/* action/*
  if [ -z "$real_vision_msgs" ]; then cat ci/vision_msgs/package.xml ci/vision_msgs/CMakeLists.txt ci/vision_msgs/msg/*; fi
  find n3d_ros scripts launch config rviz -type f ! -name '*.pyc' ! -path '*__pycache__*' | LC_ALL=C sort
} | hash_of)"
build_stamp="$ROOT/install/.n3d-build-$build_hash"
if [ ! -f "$build_stamp" ]; then
  start=$SECONDS
  mkdir -p "$ROOT/log"
  echo "setup: colcon build (${base_paths[*]}; vision_msgs from ${real_vision_msgs:-ci/vision_msgs})"
  colcon build --symlink-install --base-paths "${base_paths[@]}" \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
    > "$ROOT/log/colcon-build.txt" 2>&1 || { tail -n 60 "$ROOT/log/colcon-build.txt" >&2; die "colcon build failed (full log: log/colcon-build.txt)"; }
  rm -f "$ROOT"/install/.n3d-build-*
  touch "$build_stamp"
  echo "setup: built in $((SECONDS - start)) s"
fi

# Commands on the venv's PATH: each runs the installed script inside our environment.
for name in n3d n3d-query n3d_node synthetic_camera n3d-demo; do
  wrapper="$VENV/bin/$name"
  want="#!/usr/bin/env bash
# n3d_ros: $name in our environment (written by ci/setup.sh)
. \"$ROOT/ci/env.sh\" && exec \"$ROOT/install/n3d_ros/lib/n3d_ros/$name\" \"\$@\""
  if [ ! -f "$wrapper" ] || [ "$(cat "$wrapper")" != "$want" ]; then
    printf '%s\n' "$want" > "$wrapper"
    chmod +x "$wrapper"
  fi
done
