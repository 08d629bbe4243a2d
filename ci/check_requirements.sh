#!/usr/bin/env bash
# Check that requirements.txt resolves, binaries only, for the Pythons and machines robots run, with the
# "numpy<2" that apt-installed ROS 2 needs (its message modules are built against numpy 1.x, requirements.txt):
#   Python 3.10 aarch64 and x86_64: Jetson on JetPack 6 and ROS 2 Humble (Ubuntu 22.04, glibc 2.35);
#   Python 3.12 x86_64: ROS 2 Jazzy and Kilted (Ubuntu 24.04, glibc 2.39);
# and, without the cap, the newest versions for Python 3.10 and 3.12 (a venv without apt's ROS).
# pip's resolver runs for the target (--python-version/--platform), reads only package metadata and installs
# nothing (--target only satisfies pip 23, which wants one with --platform). Needs the network to PyPI. Prints what each target resolved to.
# Usage: ci/check_requirements.sh [python]   (whose pip to run; default: .venv-tools/bin/python, pip 26:
#        pip 23 reads whole wheels where PyPI serves metadata files, minutes instead of seconds per target)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$ROOT/.venv-tools/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pip does not widen manylinux_2_X to older glibc tags by itself, so name each one up to the distribution's.
platforms() {  # arch glibc_minor
  local arch=$1 top=$2 minor args=()
  for ((minor = top; minor >= 17; minor--)); do args+=(--platform "manylinux_2_${minor}_${arch}"); done
  args+=(--platform "manylinux2014_${arch}")
  if [ "$arch" = x86_64 ]; then args+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64); fi
  printf '%s\n' "${args[@]}"
}

resolve() {  # label python_version arch glibc_minor [extra requirement...]
  local label=$1 version=$2 arch=$3 glibc=$4
  shift 4
  local report="$work/$label.json" log="$work/$label.log"
  mapfile -t plat < <(platforms "$arch" "$glibc")
  echo "check_requirements: $label: Python $version, $arch, glibc 2.$glibc: requirements.txt $*"
  if ! "$PY" -m pip install --disable-pip-version-check --dry-run --ignore-installed --quiet \
      --only-binary :all: --python-version "$version" --implementation cp "${plat[@]}" \
      --target "$work/target" --report "$report" -r "$ROOT/requirements.txt" "$@" > "$log" 2>&1; then
    grep -v '^WARNING: Location .* is ignored' "$log" >&2 || true
    echo "check_requirements: FAILED: requirements.txt does not resolve for $label" >&2
    return 1
  fi
  # Our own requirements with the versions picked, then how many packages they pulled in.
  "$PY" - "$report" "$ROOT/requirements.txt" <<'PYEOF'
import json, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
ours = [norm(re.split(r"[<>=!~; \[]", line, maxsplit=1)[0]) for line in open(sys.argv[2])
        if line.strip() and not line.startswith("#")]
picked = {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}
missing = [name for name in ours if name not in picked]
if missing:
    sys.exit(f"  the resolve left out {missing}")
print("  " + " ".join(f"{name}=={picked[name]}" for name in ours) + f"  (+{len(picked) - len(ours)} dependencies)")
PYEOF
}

# The targets resolve in parallel (each mostly waits on the network); results print in order.
targets=(
  "jetpack6-humble-aarch64 3.10 aarch64 35 numpy<2"
  "humble-x86_64 3.10 x86_64 35 numpy<2"
  "jazzy-kilted-x86_64 3.12 x86_64 39 numpy<2"
  "newest-py310-x86_64 3.10 x86_64 35"
  "newest-py312-x86_64 3.12 x86_64 39"
)
pids=()
for i in "${!targets[@]}"; do
  # shellcheck disable=SC2086  # each target is a word list on purpose
  resolve ${targets[$i]} > "$work/out$i" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!targets[@]}"; do
  wait "${pids[$i]}" || failed=1
  cat "$work/out$i"
done
[ $failed -eq 0 ] && echo "check_requirements: ok: requirements.txt resolves for every target"
exit $failed
