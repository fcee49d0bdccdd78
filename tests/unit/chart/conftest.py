"""Fixtures for the chart tests: render the chart with the real helm and parse the output.

`render(...)` runs `helm template` and returns the manifests indexed by kind and name;
`render_error(...)` runs it expecting a failure and returns helm's message. Renders are
cached for the whole session, so tests that share a set of values share one helm run.
`helm template` knows only the API versions it is told: pass `api_versions=POLICY_API` to
render for a cluster that serves MutatingAdmissionPolicy (Kubernetes 1.36 and later).
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.tooling import ROOT, find_helm, pinned

CHART = ROOT / "chart"
RELEASE = "webhook"
NAMESPACE = "pod-labeler"
# What helm's Capabilities list on a cluster that serves the policy API.
POLICY_API = ("admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",)


@dataclass(frozen=True)
class Manifests:
    """The objects of one render, by (kind, name), plus the template each came from."""

    objects: dict[tuple[str, str], dict[str, Any]]
    sources: dict[tuple[str, str], str]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        assert (kind, name) in self.objects, f"no {kind} {name!r}; rendered: {sorted(self.objects)}"
        return self.objects[(kind, name)]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for (k, _), obj in sorted(self.objects.items()) if k == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {name for (k, name) in self.objects if k == kind}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.objects.values())


def parse(stdout: str) -> Manifests:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    sources: dict[tuple[str, str], str] = {}
    for document in stdout.split("\n---\n"):
        source = ""
        for line in document.splitlines():
            if line.startswith("# Source: "):
                source = line.removeprefix("# Source: ").split("/", 1)[1]
        obj = yaml.safe_load(document)
        if not obj:
            continue
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in objects, f"{key} rendered twice"
        objects[key] = obj
        sources[key] = source
    return Manifests(objects, sources)


class HelmTemplateError(AssertionError):
    pass


@pytest.fixture(scope="session")
def helm_binary() -> str:
    return find_helm()


@pytest.fixture(scope="session")
def helm_template(
    helm_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., subprocess.CompletedProcess[str]]:
    helm = helm_binary
    kube_version = pinned("KUBERNETES_VERSION")
    values_dir = tmp_path_factory.mktemp("values")
    counter = itertools.count()

    def run(
        *set_args: str,
        values: dict[str, Any] | None = None,
        namespace: str = NAMESPACE,
        release: str = RELEASE,
        chart: Path = CHART,
        api_versions: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        command = [helm, "template", release, str(chart), "--namespace", namespace]
        command += ["--kube-version", kube_version]
        for api_version in api_versions:
            command += ["--api-versions", api_version]
        for arg in set_args:
            command += ["--set", arg]
        if values is not None:
            path = values_dir / f"values-{next(counter)}.json"
            path.write_text(json.dumps(values))
            command += ["--values", str(path)]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    return run


@pytest.fixture(scope="session")
def render(
    helm_template: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[..., Manifests]:
    """render(*"--set" args, values=dict, namespace=..., release=..., api_versions=...)."""
    cache: dict[str, Manifests] = {}

    def _render(*set_args: str, **options: Any) -> Manifests:
        key = json.dumps([set_args, options], sort_keys=True, default=str)
        if key not in cache:
            result = helm_template(*set_args, **options)
            if result.returncode != 0:
                raise HelmTemplateError(f"helm template failed:\n{result.stderr}")
            cache[key] = parse(result.stdout)
        # A copy: a test that edits what it got must not change what the next one gets.
        return copy.deepcopy(cache[key])

    return _render


@pytest.fixture(scope="session")
def render_error(
    helm_template: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[..., str]:
    """render_error(*"--set" args, values=dict) -> helm's error message; fails if helm succeeds."""

    def _render_error(*set_args: str, **options: Any) -> str:
        result = helm_template(*set_args, **options)
        assert result.returncode != 0, f"helm template accepted {set_args} {options}"
        return result.stderr

    return _render_error


@pytest.fixture(scope="session")
def render_notes(
    helm_template: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., str]:
    """render_notes(*"--set" args, api_versions=...) -> the rendered NOTES.txt.

    `helm template` never prints NOTES.txt and `helm install --dry-run` needs a cluster,
    so a copy of the chart renders the same text through `tpl` into a ConfigMap.
    """
    copy = tmp_path_factory.mktemp("notes") / "chart"
    shutil.copytree(CHART, copy)
    shutil.copy(CHART / "templates" / "NOTES.txt", copy / "notes.txt")
    (copy / "templates" / "notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-under-test\ndata:\n"
        '  notes: |\n    {{- tpl (.Files.Get "notes.txt") . | nindent 4 }}\n'
    )

    def _render_notes(*set_args: str, **options: Any) -> str:
        result = helm_template(*set_args, chart=copy, **options)
        if result.returncode != 0:
            raise HelmTemplateError(f"helm template failed:\n{result.stderr}")
        notes: str = parse(result.stdout).get("ConfigMap", "notes-under-test")["data"]["notes"]
        return notes

    return _render_notes


@pytest.fixture(scope="session")
def policy_api() -> tuple[str, ...]:
    """`api_versions=` for a cluster that serves MutatingAdmissionPolicy (1.36 and later)."""
    return POLICY_API


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART


@pytest.fixture(scope="session")
def chart_meta() -> dict[str, Any]:
    """Chart.yaml: tests compare with its version and appVersion rather than copy them."""
    loaded: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return loaded


@pytest.fixture(scope="session")
def app_version(chart_meta: dict[str, Any]) -> str:
    return str(chart_meta["appVersion"])


@pytest.fixture(scope="session")
def values_text() -> str:
    return (CHART / "values.yaml").read_text()


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


@dataclass(frozen=True)
class ValueKey:
    """A key of values.yaml that users set: its dotted path, `# -- ` text and default."""

    path: str
    comment: list[str]
    default: Any


def value_keys(values_text: str, schema: dict[str, Any]) -> list[ValueKey]:
    """The keys of values.yaml, as helm-docs lists them.

    A mapping whose schema has inline `properties` is the chart's own group (`image`,
    `webhook`, ...): its children are keys. Anything else is one key, whatever its
    default holds (`resources`, `podSecurityContext`: Kubernetes objects passed through).
    """
    lines = values_text.splitlines()
    keys: list[ValueKey] = []

    def comment_above(line: int) -> list[str]:
        block: list[str] = []
        index = line - 1
        while index >= 0 and lines[index].lstrip().startswith("#"):
            block.insert(0, lines[index].strip())
            index -= 1
        return block

    def walk(node: yaml.MappingNode, node_schema: dict[str, Any], prefix: str) -> None:
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            child_schema = node_schema.get("properties", {}).get(key_node.value, {})
            if isinstance(value_node, yaml.MappingNode) and "properties" in child_schema:
                walk(value_node, child_schema, f"{path}.")
                continue
            default = yaml.safe_load(yaml.serialize(value_node))
            keys.append(ValueKey(path, comment_above(key_node.start_mark.line), default))

    root = yaml.compose(values_text)
    assert isinstance(root, yaml.MappingNode)
    walk(root, schema, "")
    return keys


@pytest.fixture(scope="session")
def documented_keys(values_text: str, schema: dict[str, Any]) -> list[ValueKey]:
    return value_keys(values_text, schema)
