"""The rules the packages' docstrings state hold: what each may import, and how long a
function may be (about 60 lines, unless its docstring says why it is longer)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDARD_LIBRARY = frozenset(sys.stdlib_module_names) | {"__future__"}
MAX_FUNCTION_LINES = 60
# The phrase a docstring uses to say why its function is longer than that.
LONG_BECAUSE = "longer than 60 lines because"
# The packages the length rule covers.
LENGTH_RULED = ("localcp", "app")


def python_files(*parts: str) -> list[Path]:
    return sorted(ROOT.joinpath(*parts).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every import statement in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def offending(paths: list[Path], allowed: set[str]) -> list[str]:
    """Imports whose top-level package is neither the standard library nor `allowed`."""
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in paths
        for line, module in imports(path)
        if module.split(".")[0] not in STANDARD_LIBRARY | allowed
    ]


def test_localcp_imports_only_the_standard_library_cryptography_and_itself() -> None:
    assert offending(python_files("localcp"), {"localcp", "cryptography"}) == []


# The one part of the product that is itself a cluster client: the backfill e2e test
# calls it in-process to put a hook between listing a Pod and patching it, which a
# command cannot offer. It still reaches the cluster only through its own API client.
E2E_MAY_IMPORT = ("app.backfill",)


def test_the_e2e_suite_imports_neither_app_nor_localcp_nor_bench() -> None:
    modules = {module for path in python_files("tests", "e2e") for _, module in imports(path)}

    assert {
        m
        for m in modules
        if m.split(".")[0] in {"app", "localcp", "bench"} and not m.startswith(E2E_MAY_IMPORT)
    } == set()


def test_only_localcps_own_tests_import_localcp() -> None:
    elsewhere = [p for p in python_files("tests") if "localcp" not in p.relative_to(ROOT).parts]

    assert [
        f"{path.relative_to(ROOT)}:{line}"
        for path in elsewhere
        for line, module in imports(path)
        if module.split(".")[0] == "localcp"
    ] == []


def test_no_test_imports_bench() -> None:
    assert [
        f"{path.relative_to(ROOT)}:{line}"
        for path in python_files("tests")
        for line, module in imports(path)
        if module.split(".")[0] == "bench"
    ] == []


def test_the_shared_certificates_import_only_the_standard_library_and_cryptography() -> None:
    assert offending([ROOT / "tests" / "certs.py"], {"cryptography"}) == []


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
