"""An import-linter contract type the built-in ones cannot state: "imports only the
standard library and these modules".

`forbidden` lists what may not be imported, so a package that must stay on the standard
library would need every third-party package named, and a new dependency would slip
through. This contract lists what may be imported instead. Registered in pyproject.toml
(`contract_types`), run by `lint-imports` (`make lint`); kopf registers its own contract
type the same way (https://import-linter.readthedocs.io/en/stable/custom_contract_types.html).

Direct imports only, as the packages' docstrings state their rules: a module the source
may import is free to import others. Imports inside functions and behind TYPE_CHECKING
count (grimp reads every import statement); relative imports are resolved.
"""

from __future__ import annotations

import sys
from typing import Any, cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.imports import Module

STANDARD_LIBRARY = frozenset(sys.stdlib_module_names)


class StandardLibraryOnlyContract(Contract):
    """Each of `source_modules` (with its submodules) imports nothing but the standard
    library and `allowed_modules` (each with its submodules).

    The top level configuration needs `include_external_packages = true`, so that the
    graph holds the third-party packages a source module imports.
    """

    type_name = "standard_library_only"

    source_modules = fields.SetField(subfield=fields.ModuleField())
    allowed_modules = fields.SetField(subfield=fields.ModuleField(), required=False)

    def modules(self, field: str) -> set[Module]:
        """A field's parsed value: the class holds the field, the instance its value."""
        return cast(set[Module], getattr(self, field) or set())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = self.modules("allowed_modules")
        importers: set[str] = set()
        for source in self.modules("source_modules"):
            if source.name not in graph.modules:
                raise ValueError(f"Module '{source.name}' does not exist.")
            importers |= {source.name} | graph.find_descendants(source.name)

        def may_import(name: str) -> bool:
            imported = Module(name)
            return imported.root_package_name in STANDARD_LIBRARY or any(
                imported.is_in_package(module) for module in allowed
            )

        violations = []
        for importer in sorted(importers):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if may_import(imported):
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = sorted(detail["line_number"] for detail in details)
                output.verbose_print(verbose, f"{importer} imports {imported} (l. {lines})")
                violations.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = sorted(module.name for module in self.modules("allowed_modules"))
        output.print_error(
            "Allowed: the standard library" + "".join(f", {name}" for name in allowed) + "."
        )
        output.new_line()
        violation: dict[str, Any]
        for violation in check.metadata["violations"]:
            lines = ", ".join(f"l.{line}" for line in violation["lines"])
            output.print_error(
                f"-   {violation['importer']} -> {violation['imported']} ({lines})", bold=False
            )
        output.new_line()
