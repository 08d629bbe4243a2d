#!/usr/bin/env bash
# Everything CI runs (`make test`, .ci/run), stage by stage; each stage runs even when an earlier one failed,
# and the script exits non-zero if any failed. Stages:
#   1. setup         .venv + install/ (ci/setup.sh); .venv-tools, .overlay-oldest, .venv-numpy1 (ci/setup_tools.sh)
#   2. requirements  requirements.txt resolves for Python 3.10 (x86_64, aarch64) and 3.12 (ci/check_requirements.sh)
#   3. python 3.10   syntax and standard library of all our Python (ci/check_py310.py)
#   4. test suite    every test, ROS 2 Kilted and the exact pins of ci/constraints.txt
#   5. oldest        the model tests again under the oldest transformers/tokenizers/tiktoken we claim
#   6. numpy1        the ROS-free core tests under numpy 1.26 / OpenCV 4.11 / Pillow 12 (apt ROS 2's numpy<2)
#   7. jazzy         the ROS tests again under ROS 2 Jazzy's rclpy 7 and messages (.venv-jazzy, install-jazzy/)
# The last line adds up the pytest counts of stages 4-7.
# Usage: ci/ci.sh [stage ...]   stages: requirements py310 suite oldest numpy1 jazzy (default: all; setup always runs)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# Every test file that runs transformers (the tiny model, the tokenizer, the image processor).
OLDEST_TESTS=(test/test_engine_*.py test/test_pipeline*.py test/test_cli.py test/test_pixel_values_*.py
              test/test_hispatial_*.py)
ROS_TESTS=(test/test_ros_*.py)
# Tests of the ROS-free, torch-free core (numpy, OpenCV, Pillow), run from the source tree.
NUMPY1_TESTS=(test/test_core_*.py test/test_reasoning_*.py test/test_tabletop_*.py test/test_refine_*.py)
names=() results=() times=()

stage() {  # name command...: run one stage with a header, record its result and time
  local name=$1 start=$SECONDS rc
  shift
  echo
  echo "================ ci: $name ================"
  "$@" 2>&1 | tee "$logs/${#names[@]}.log"
  rc=${PIPESTATUS[0]}
  names+=("$name") results+=("$rc") times+=("$((SECONDS - start))")
  echo "---------------- ci: $name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - start)) s"
  return "$rc"
}

setup_all() { ci/setup.sh && ci/setup_tools.sh; }
numpy1() {
  (cd / && PYTHONPATH="$ROOT" "$ROOT/.venv-numpy1/bin/python" - <<'PYEOF'
import cv2, numpy, PIL
print(f"numpy1: numpy {numpy.__version__}, opencv {cv2.__version__}, pillow {PIL.__version__}")
PYEOF
  ) || return 1
  (cd / && PYTHONPATH="$ROOT" "$ROOT/.venv-numpy1/bin/python" -m pytest -q -p no:cacheprovider "${NUMPY1_TESTS[@]/#/$ROOT/}")
}
jazzy() {
  ci/setup.sh jazzy || return 1
  N3D_VENV="$ROOT/.venv-jazzy" N3D_INSTALL="$ROOT/install-jazzy" ci/run_tests.sh "${ROS_TESTS[@]}"
}

if ! stage "setup" setup_all; then
  echo "ci: setup failed; no test can run" >&2
  exit 1
fi
ALL_STAGES=(requirements py310 suite oldest numpy1 jazzy)
wanted=("${@:-${ALL_STAGES[@]}}")
for want in "${wanted[@]}"; do
  [[ " ${ALL_STAGES[*]} " == *" $want "* ]] || { echo "ci: unknown stage '$want' (${ALL_STAGES[*]})" >&2; exit 2; }
done
selected() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

selected requirements && stage "requirements resolve (Python 3.10, 3.12)" ci/check_requirements.sh "$ROOT/.venv-tools/bin/python"
selected py310 && stage "Python 3.10 syntax and stdlib" .venv-tools/bin/python ci/check_py310.py
selected suite && stage "test suite (ROS 2 Kilted, newest pins)" ci/run_tests.sh
selected oldest && stage "model tests under the oldest transformers (.overlay-oldest)" \
  env N3D_OVERLAY="$ROOT/.overlay-oldest" ci/run_tests.sh "${OLDEST_TESTS[@]}"
selected numpy1 && stage "core tests under numpy 1.26 (.venv-numpy1)" numpy1
selected jazzy && stage "ROS tests under ROS 2 Jazzy (.venv-jazzy)" jazzy

echo
echo "================ ci: summary ================"
failed=0 passed_total=0 failed_total=0
for i in "${!names[@]}"; do
  printf '  %-62s %-8s %5s s\n' "${names[$i]}" "$([ "${results[$i]}" -eq 0 ] && echo ok || echo FAILED)" "${times[$i]}"
  [ "${results[$i]}" -eq 0 ] || failed=1
  # pytest's closing line, e.g. "2 failed, 88 passed, 3 warnings in 293.41s"
  summary="$(grep -E '^[0-9]+ (passed|failed|error)|^=+ .*[0-9]+ (passed|failed)' "$logs/$i.log" | tail -n 1 || true)"
  if [ -n "$summary" ]; then
    p="$(grep -oE '[0-9]+ passed' <<< "$summary" | awk '{n += $1} END {print n + 0}')"
    f="$(grep -oE '[0-9]+ (failed|errors?)' <<< "$summary" | awk '{n += $1} END {print n + 0}')"
    passed_total=$((passed_total + p)) failed_total=$((failed_total + f))
  fi
done
echo "ci: $passed_total passed, $failed_total failed"
exit $failed
