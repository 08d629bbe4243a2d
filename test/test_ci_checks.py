"""The CI's Python 3.10 check (ci/check_py310.py) catches real 3.11+ code and passes 3.10 code.

The syntax layer runs in-process; the standard-library layer runs vermin from .venv-tools (ci/setup_tools.sh,
part of `make setup`), as CI does.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "ci" / "check_py310.py"
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"

FINE_ON_310 = '''\
from __future__ import annotations
from typing import TypeAlias

Pair: TypeAlias = "tuple[int, int] | None"

def describe(value: int | str) -> str:
    match value:
        case int(n) if n > 0:
            return "positive"
        case str() as text:
            return text.removeprefix("x")
    return "other"

with (open(__file__) as a, open(__file__) as b):
    pass
'''

SYNTAX_311_PLUS = {  # file name: (source, a word of the parser's message)
    "exception_group.py": ("try:\n    pass\nexcept* ValueError:\n    pass\n", "Exception groups"),
    "type_params.py": ("def first[T](items: list[T]) -> T:\n    return items[0]\n", "expected '('"),
    "fstring_quotes.py": ('row = {"a": 1}\nprint(f"{row["a"]}")\n', "f-string"),
}

STDLIB_311_PLUS = '''\
import datetime
import enum
import tomllib
from typing import Self

class Colour(enum.StrEnum):
    RED = "red"

def stamp() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
'''


def _load_check():
    spec = importlib.util.spec_from_file_location("check_py310", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_check(*paths: Path) -> subprocess.CompletedProcess:
    if not TOOLS_PYTHON.exists():
        pytest.fail(f"{TOOLS_PYTHON} is missing: run `make setup` (ci/setup_tools.sh creates it)", pytrace=False)
    return subprocess.run([str(TOOLS_PYTHON), str(CHECK), *map(str, paths)], capture_output=True, text=True,
                          timeout=300)


def test_syntax_layer_names_each_newer_construct_with_file_and_line(tmp_path):
    check = _load_check()
    for name, (source, _) in SYNTAX_311_PLUS.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "fine.py").write_text(FINE_ON_310)
    errors = check.syntax_errors(check.python_files([tmp_path]))
    assert len(errors) == len(SYNTAX_311_PLUS), errors
    for name, (_, words) in SYNTAX_311_PLUS.items():
        assert any(re.match(re.escape(f"{tmp_path / name}:") + r"\d+: .*" + re.escape(words), e) for e in errors), \
            (name, errors)
    assert not any("fine.py" in e for e in errors)


def test_scripts_without_suffix_are_checked_when_they_are_python(tmp_path):
    check = _load_check()
    (tmp_path / "tool").write_text("#!/usr/bin/env python3\nprint('hi')\n")
    (tmp_path / "shell").write_text("#!/bin/sh\necho hi\n")
    assert [p.name for p in check.python_files([tmp_path])] == ["tool"]


def test_stdlib_layer_fails_on_311_names_and_lists_them(tmp_path):
    (tmp_path / "new_stdlib.py").write_text(STDLIB_311_PLUS)
    result = _run_check(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    for name in ("tomllib", "typing.Self", "enum.StrEnum", "datetime.UTC"):
        assert f"'{name}'" in result.stdout, (name, result.stdout)
    assert "check_py310: FAILED" in result.stdout


def test_code_that_runs_on_310_passes_both_layers(tmp_path):
    (tmp_path / "fine.py").write_text(FINE_ON_310)
    result = _run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check_py310: ok: 1 files" in result.stdout
