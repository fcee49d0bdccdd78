"""The rule the packages' docstrings state that import-linter cannot: how long a function
may be (about 60 lines, unless its docstring says why it is longer). What each package
may import is stated as import-linter contracts in pyproject.toml (`lint-imports`,
`make lint`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 60
# The phrase a docstring uses to say why its function is longer than that.
LONG_BECAUSE = "longer than 60 lines because"
# The packages the length rule covers.
LENGTH_RULED = ("localcp", "app")


def python_files(*parts: str) -> list[Path]:
    return sorted(ROOT.joinpath(*parts).rglob("*.py"))


def long_functions(package: str) -> Iterator[str]:
    for path in python_files(package):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            reason = LONG_BECAUSE in (ast.get_docstring(node) or "").lower()
            if length > MAX_FUNCTION_LINES and not reason:
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"


@pytest.mark.parametrize("package", LENGTH_RULED)
def test_no_function_is_longer_than_60_lines_without_saying_why(package: str) -> None:
    assert list(long_functions(package)) == []
