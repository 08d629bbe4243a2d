"""Check that our Python code runs on Python 3.10 (ROS 2 Humble, JetPack 6).

Two checks over every Python file (``*.py`` and the scripts with a python shebang):
1. syntax: ``ast.parse(..., feature_version=(3, 10))``, CPython's own parser refusing newer grammar
   (``except*``, PEP 695 ``def f[T]``, 3.12 f-string quoting, ...);
2. standard library: vermin (``-t=3.10-``) reports modules, functions and members newer than 3.10
   (``tomllib``, ``typing.Self``, ``datetime.UTC``, ``enum.StrEnum``, ``asyncio.TaskGroup``, ...).
   Third-party packages are not its business: their own metadata says which Pythons they support
   (ci/check_requirements.sh).

Usage: python ci/check_py310.py [path ...]   (default: n3d_ros scripts launch bench test ci)
Needs vermin (ci/requirements-tools.txt, installed in .venv-tools by ci/setup_tools.sh). Exit 1 on a finding.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterable, List

TARGET = (3, 10)
DEFAULT_PATHS = ("n3d_ros", "scripts", "launch", "bench", "test", "ci")
ROOT = Path(__file__).resolve().parent.parent


def is_python(path: Path) -> bool:
    if path.suffix == ".py":
        return True
    if path.suffix or not path.is_file():
        return False
    with path.open("rb") as handle:
        first = handle.readline(200)
    return first.startswith(b"#!") and b"python" in first


def python_files(paths: Iterable[Path]) -> List[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*"))
                         if "__pycache__" not in p.parts and p.is_file() and is_python(p))
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"check_py310: {path} does not exist")
    return found


def syntax_errors(files: Iterable[Path]) -> List[str]:
    errors = []
    for path in files:
        try:
            ast.parse(path.read_bytes(), filename=str(path), feature_version=TARGET)
        except SyntaxError as exc:
            errors.append(f"{path}:{exc.lineno}: {exc.msg} (not Python {TARGET[0]}.{TARGET[1]} syntax)")
    return errors


def stdlib_report(files: List[Path]) -> subprocess.CompletedProcess:
    try:
        import vermin  # noqa: F401
    except ImportError:
        raise SystemExit("check_py310: vermin is not installed in this Python; run it with .venv-tools/bin/python "
                         "(ci/setup_tools.sh creates it) or pip install -r ci/requirements-tools.txt")
    # vermin has no __main__ module; its console script calls vermin.main() with sys.argv
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", f"--target={TARGET[0]}.{TARGET[1]}-", "--violations", "--no-tips",
               "--no-make-paths-absolute", *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True)


def main(argv: List[str]) -> int:
    paths = [Path(a) for a in argv] if argv else [ROOT / p for p in DEFAULT_PATHS]
    files = python_files(paths)
    if not files:
        raise SystemExit(f"check_py310: no Python files under {' '.join(map(str, paths))}")
    failed = False
    errors = syntax_errors(files)
    for line in errors:
        print(line)
    failed |= bool(errors)
    report = stdlib_report(files)
    if report.returncode != 0:
        failed = True
        print(report.stdout.strip())
        print(report.stderr.strip())
    verdict = "FAILED" if failed else "ok"
    print(f"check_py310: {verdict}: {len(files)} files checked for Python {TARGET[0]}.{TARGET[1]} "
          f"(syntax: {len(errors)} error(s); stdlib: vermin exit {report.returncode})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
