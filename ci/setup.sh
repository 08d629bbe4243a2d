#!/usr/bin/env bash
# Create or refresh our environment on a Debian/Ubuntu machine with no system ROS:
#   1. a venv with ROS 2 (PyPI wheels), colcon, torch (CPU), transformers, opencv, test tools, at the exact
#      versions of ci/constraints*.txt;
#   2. the CMake path repair the wheels need (ci/fix_cmake_paths.py);
#   3. colcon build of n3d_ros, plus our wire-compatible vision_msgs when no real one is on AMENT_PREFIX_PATH.
# Usage: ci/setup.sh [kilted|jazzy]   (default kilted: .venv, build/, install/, the commands on .venv's PATH;
#        jazzy: .venv-jazzy, build-jazzy/, install-jazzy/, for the ROS tests against ROS 2 Jazzy, see
#        ci/run_ros_jazzy.sh)
# Idempotent: each step is skipped when a stamp keyed on the hash of its inputs is present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DISTRO="${1:-kilted}"
case "$DISTRO" in
  kilted) suffix=""; ros_files=(ci/requirements-ros.txt); extra_files=(ci/requirements-llamacpp.txt) ;;
  jazzy) suffix="-jazzy"; ros_files=(ci/requirements-ros-jazzy.txt ci/constraints-jazzy.txt); extra_files=() ;;
  *) echo "setup: error: unknown ROS 2 distribution '$DISTRO' (kilted or jazzy)" >&2; exit 2 ;;
esac
VENV="${N3D_VENV:-$ROOT/.venv$suffix}"
BUILD="$ROOT/build$suffix"
INSTALL="$ROOT/install$suffix"
LOGS="$ROOT/log$suffix"
PYTHON="${PYTHON:-python3.11}"
export N3D_VENV="$VENV" N3D_INSTALL="$INSTALL"  # for ci/env.sh below

die() { echo "setup: error: $*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- 1+2. venv and packages
req_hash="$(cat requirements.txt ci/constraints.txt "${ros_files[@]}" ${extra_files[@]+"${extra_files[@]}"} \
  ci/requirements-test.txt ci/fix_cmake_paths.py | hash_of)"
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
  ros_args=(-r "${ros_files[0]}")
  if [ ${#ros_files[@]} -gt 1 ]; then ros_args+=(-c "${ros_files[1]}"); fi
  for file in ${extra_files[@]+"${extra_files[@]}"}; do ros_args+=(-r "$file"); done
  # llama-cpp-python builds from its sdist (CPU backend) unless pip has the wheel cached.
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=off -DLLAMA_BUILD_EXAMPLES=off}"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c ci/constraints.txt \
    -r requirements.txt "${ros_args[@]}" -r ci/requirements-test.txt 2>&1 \
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
  case "$prefix" in "$ROOT/install"*) continue ;; esac  # our own copies do not count
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
build_stamp="$INSTALL/.n3d-build-$build_hash"
if [ ! -f "$build_stamp" ]; then
  start=$SECONDS
  mkdir -p "$LOGS"
  echo "setup: colcon build for $DISTRO into ${INSTALL#"$ROOT"/} (${base_paths[*]}; vision_msgs from ${real_vision_msgs:-ci/vision_msgs})"
  colcon --log-base "$LOGS" build --symlink-install --base-paths "${base_paths[@]}" \
    --build-base "$BUILD" --install-base "$INSTALL" \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
    > "$LOGS/colcon-build.txt" 2>&1 || { tail -n 60 "$LOGS/colcon-build.txt" >&2; die "colcon build failed (full log: ${LOGS#"$ROOT"/}/colcon-build.txt)"; }
  rm -f "$INSTALL"/.n3d-build-*
  touch "$build_stamp"
  echo "setup: built in $((SECONDS - start)) s"
fi

# Commands on the venv's PATH: each runs the installed script inside our environment (main one only).
if [ "$DISTRO" != kilted ]; then exit 0; fi
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
