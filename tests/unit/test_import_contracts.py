"""The project's own import-linter contract type (tests/import_contracts.py) catches what
it must: pyproject.toml's contracts are only as good as it is. `lint-imports` (make lint)
runs the contracts on the project itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from grimp import ImportGraph

from tests.import_contracts import StandardLibraryOnlyContract

Check = Callable[..., list[tuple[str, str]]]


@pytest.fixture
def graph() -> ImportGraph:
    """app.admission (the core), app.config beside it, and the imports given to `check`."""
    built = ImportGraph()
    for module in ("app", "app.admission", "app.admission.review", "app.config"):
        built.add_module(module)
    return built


@pytest.fixture
def check(graph: ImportGraph) -> Check:
    """check(importer -> imported, ..., allowed=[...]) -> the imports the contract reports."""

    def _check(
        *imports: str, allowed: tuple[str, ...] = ("app.admission",)
    ) -> list[tuple[str, str]]:
        for line, expression in enumerate(imports, start=1):
            importer, imported = expression.split(" -> ")
            if imported not in graph.modules:
                graph.add_module(imported, is_squashed=True)  # a third-party package
            graph.add_import(
                importer=importer, imported=imported, line_number=line, line_contents=expression
            )
        contract = StandardLibraryOnlyContract(
            name="the core",
            session_options={"root_packages": ["app"], "include_external_packages": True},
            contract_options={
                "source_modules": ["app.admission"],
                "allowed_modules": list(allowed),
            },
        )
        result = contract.check(graph, verbose=False)
        found = [(v["importer"], v["imported"]) for v in result.metadata.get("violations", [])]
        assert result.kept == (not found)
        return found

    return _check


def test_the_standard_library_and_the_allowed_package_pass(check: Check) -> None:
    reported = check(
        "app.admission.review -> json",
        "app.admission.review -> __future__",
        "app.admission -> app.admission.review",
    )

    assert reported == []


def test_a_third_party_package_and_the_rest_of_the_app_are_reported(check: Check) -> None:
    assert check(
        "app.admission.review -> json",
        "app.admission.review -> app.config",
        "app.admission.review -> flask",
    ) == [("app.admission.review", "app.config"), ("app.admission.review", "flask")]


def test_an_allowed_module_allows_its_submodules_and_nothing_beside_it(check: Check) -> None:
    assert check(
        "app.admission.review -> cryptography",
        "app.admission.review -> app.config",
        allowed=("app.admission", "cryptography"),
    ) == [("app.admission.review", "app.config")]


def test_only_the_source_modules_are_held_to_it(check: Check) -> None:
    assert check("app.config -> flask") == []
