"""The admission core imports only the standard library and itself.

Checked on the source (ast), not by importing, so an import inside a function or
behind TYPE_CHECKING counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "app" / "admission"


def imported_modules(source: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def outside_the_core(module: str) -> bool:
    top = module.partition(".")[0]
    in_core = module == "app.admission" or module.startswith("app.admission.")
    return not in_core and top not in sys.stdlib_module_names


def test_the_core_has_modules_to_check() -> None:
    assert len(list(CORE.glob("*.py"))) >= 5


@pytest.mark.parametrize("source", sorted(CORE.glob("*.py")), ids=lambda path: path.name)
def test_a_core_module_imports_only_the_standard_library_and_the_core(source: Path) -> None:
    assert [module for module in imported_modules(source) if outside_the_core(module)] == []


def test_the_rule_catches_an_import_of_the_server_settings(tmp_path: Path) -> None:
    offender = tmp_path / "offender.py"
    offender.write_text("import json\nfrom app.config import ServerConfig\nimport flask\n")

    assert [m for m in imported_modules(offender) if outside_the_core(m)] == ["app.config", "flask"]
