# Source this file (bash) to use our environment: the venv's ROS 2 wheels plus the colcon install space.
#   . ci/env.sh
# Mirrors what a ROS distribution's setup.bash does: AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH for the venv
# prefix, then the workspace's install/setup.bash (PYTHONPATH, LD_LIBRARY_PATH, PATH of our packages).
# N3D_VENV and N3D_INSTALL choose another venv and install space (the Jazzy ones: .venv-jazzy, install-jazzy).
_n3d_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_n3d_venv="${N3D_VENV:-$_n3d_root/.venv}"
_n3d_install="${N3D_INSTALL:-$_n3d_root/install}"
if [ ! -x "$_n3d_venv/bin/python" ]; then
  echo "ci/env.sh: no venv at $_n3d_venv; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_n3d_venv/bin/activate"
case ":${AMENT_PREFIX_PATH:-}:" in *":$_n3d_venv:"*) ;; *) export AMENT_PREFIX_PATH="$_n3d_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
case ":${CMAKE_PREFIX_PATH:-}:" in *":$_n3d_venv:"*) ;; *) export CMAKE_PREFIX_PATH="$_n3d_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
# The wheels load their shared libraries from the venv's lib directory.
case ":${LD_LIBRARY_PATH:-}:" in *":$_n3d_venv/lib:"*) ;; *) export LD_LIBRARY_PATH="$_n3d_venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}";; esac
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
if [ -f "$_n3d_install/setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$_n3d_install/setup.bash"
fi
unset _n3d_root _n3d_venv _n3d_install
