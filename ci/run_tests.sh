#!/usr/bin/env bash
# Run the whole test suite against the colcon install space (real rclpy, generated interfaces).
# Usage: ci/run_tests.sh [pytest args...]   (default: the test/ directory)
# Environment: N3D_VENV / N3D_INSTALL pick another venv and install space (ci/env.sh; the Jazzy ones for
# ci/ci.sh's Jazzy stage); N3D_OVERLAY is a directory of packages put first on PYTHONPATH (.overlay-oldest).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
set +u
# shellcheck disable=SC1091
. ci/env.sh
set -u
if [ -n "${N3D_OVERLAY:-}" ]; then
  [ -d "$N3D_OVERLAY" ] || { echo "run_tests: N3D_OVERLAY=$N3D_OVERLAY is not a directory; run ci/setup_tools.sh" >&2; exit 1; }
  export PYTHONPATH="$(cd "$N3D_OVERLAY" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fi
# Which versions this run tests (the overlay, when set, wins over the venv).
(cd / && python - <<'PYEOF'
import importlib.metadata as md, sys
names = ("ros-rclpy", "transformers", "tokenizers", "huggingface-hub", "torch", "numpy", "pillow")
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        found.append(f"{name} -")
print(f"run_tests: Python {sys.version.split()[0]}; " + ", ".join(found))
PYEOF
)

# `python -m pytest` would put the repository root, whose source n3d_ros lacks the generated msg/srv/action
# subpackages, first on sys.path; the pytest executable does not, so n3d_ros comes from the install space.
(cd / && python -c 'import n3d_ros.srv, n3d_ros.action, n3d_ros.msg') \
  || { echo "run_tests: the generated n3d_ros interfaces do not import from ${N3D_INSTALL:-install}; run 'make setup' (Jazzy: ci/setup.sh jazzy)" >&2; exit 1; }

if [ $# -eq 0 ]; then set -- test; fi
# -p no:dash: a pytest plugin that plotly/dash installs bring along; it only adds warnings.
pytest -q -p no:cacheprovider -p no:dash "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "run_tests: pytest collected no tests from: $*" >&2
  exit 1
fi
exit $rc
