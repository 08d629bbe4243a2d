"""Point the CMake files shipped in the ROS 2 PyPI wheels at this machine's Python.

The wheels were built in a manylinux image whose interpreter lives in /opt/python/cp311-cp311, and their
exported rosidl_generator_py targets name its include directory and numpy's include directory. CMake then
refuses to configure any interface package here ("non-existent path"). Rewriting those two paths to the
running interpreter's include dir and the venv's numpy fixes it. Idempotent: a second run finds nothing.

Usage: python ci/fix_cmake_paths.py <venv prefix>
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PYTHON = "/opt/python/cp311-cp311"


def replacements() -> dict:
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        sys.exit(f"fix_cmake_paths: {include}/Python.h is missing; install the Python headers "
                 "(Debian/Ubuntu: apt-get install python3.11-dev) and run setup again")
    return {
        f"{BUILD_PYTHON}/include/python3.11": include,
        f"{BUILD_PYTHON}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    }


def fix(prefix: Path) -> int:
    changed = 0
    pairs = replacements()
    for path in sorted((prefix / "share").glob("*/cmake/*.cmake")):
        text = path.read_text()
        new = text
        for old, fresh in pairs.items():
            new = new.replace(old, fresh)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    count = fix(Path(sys.argv[1]))
    print(f"fix_cmake_paths: rewrote {count} CMake file(s)")
