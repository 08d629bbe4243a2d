#!/usr/bin/env bash
# Set up what the CI checks need besides .venv (ci/setup.sh), each stamped on the hash of its inputs:
#   .venv-tools      pip and vermin for ci/check_requirements.sh and ci/check_py310.py (ci/requirements-tools.txt);
#   .overlay-oldest  the oldest transformers/tokenizers/tiktoken we claim (ci/requirements-oldest.txt), for
#                    ci/ci.sh's oldest stage; installed --no-deps next to .venv and verified with `pip check`;
#   .venv-numpy1     numpy 1.26 / OpenCV 4.11 / Pillow 12, what apt-installed ROS 2 gets (ci/requirements-numpy1.txt).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
TOOLS="$ROOT/.venv-tools"
OVERLAY="$ROOT/.overlay-oldest"
hash_of() { sha256sum | cut -c1-16; }
quiet_pip() { grep -v '^WARNING: Location .* is ignored' || true; }  # notes about absent local index dirs

tools_stamp="$TOOLS/.n3d-tools-$(cat ci/requirements-tools.txt | hash_of)"
if [ ! -f "$tools_stamp" ]; then
  start=$SECONDS
  [ -x "$TOOLS/bin/python" ] || "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --disable-pip-version-check -q -r ci/requirements-tools.txt 2>&1 | quiet_pip
  rm -f "$TOOLS"/.n3d-tools-*
  touch "$tools_stamp"
  echo "setup_tools: .venv-tools ready in $((SECONDS - start)) s"
fi

[ -x .venv/bin/python ] || { echo "setup_tools: error: no .venv; run ci/setup.sh first" >&2; exit 1; }
overlay_stamp="$OVERLAY/.n3d-overlay-$(cat ci/requirements-oldest.txt ci/constraints.txt | hash_of)"
if [ ! -f "$overlay_stamp" ]; then
  start=$SECONDS
  rm -rf "$OVERLAY"
  .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --target "$OVERLAY" \
    -r ci/requirements-oldest.txt 2>&1 | quiet_pip
  # Every requirement of every package, overlay first and then .venv, must be met.
  PYTHONPATH="$OVERLAY" .venv/bin/python -m pip check --disable-pip-version-check \
    || { echo "setup_tools: error: .overlay-oldest does not fit .venv; add what pip check names to ci/requirements-oldest.txt" >&2; exit 1; }
  touch "$overlay_stamp"
  echo "setup_tools: .overlay-oldest ready in $((SECONDS - start)) s"
fi

NUMPY1="$ROOT/.venv-numpy1"
numpy1_stamp="$NUMPY1/.n3d-numpy1-$(cat ci/requirements-numpy1.txt | hash_of)"
if [ ! -f "$numpy1_stamp" ]; then
  start=$SECONDS
  [ -x "$NUMPY1/bin/python" ] || "$PYTHON" -m venv "$NUMPY1"
  "$NUMPY1/bin/python" -m pip install --disable-pip-version-check -q -r ci/requirements-numpy1.txt 2>&1 | quiet_pip
  rm -f "$NUMPY1"/.n3d-numpy1-*
  touch "$numpy1_stamp"
  echo "setup_tools: .venv-numpy1 ready in $((SECONDS - start)) s"
fi
