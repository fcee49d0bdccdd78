"""The release workflow, the chart and the image agree: the workflow pushes the image the
chart pulls by default, pins actions by commit, asks for no more permissions than it
uses, and the lines of values.yaml it rewrites exist exactly once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.tooling import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yaml"
CHART = ROOT / "chart"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return load(RELEASE)


@pytest.fixture(scope="module")
def steps(release: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = release["jobs"].values()
    return list(job["steps"])


def step_using(steps: list[dict[str, Any]], action: str) -> dict[str, Any]:
    found = [step for step in steps if step.get("uses", "").startswith(f"{action}@")]
    assert len(found) == 1, f"expected one step using {action}"
    return found[0]


def chart_meta() -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta


def image_source_owner() -> str:
    """The GitHub owner in the Dockerfile's org.opencontainers.image.source label."""
    match = re.search(
        r'org\.opencontainers\.image\.source="https://github\.com/([^/]+)/',
        (ROOT / "Dockerfile").read_text(),
    )
    assert match, "the Dockerfile names no github.com source"
    return match.group(1)


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_action_is_pinned_by_full_commit_with_its_version_in_a_comment(workflow: Path):
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", workflow.read_text(), re.MULTILINE)
    assert uses
    for action, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action
        assert re.match(r"\s+# v\d+(\.\d+)*\s*$", rest), f"{action}: no `# vX.Y.Z` comment"


def test_release_runs_on_version_tags_only(release: dict[str, Any]):
    assert release["on"] == {"push": {"tags": ["v*"]}}


def test_release_asks_only_for_the_permissions_it_uses(release: dict[str, Any]):
    assert release["permissions"] == {}
    (job,) = release["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}


def test_the_image_is_built_for_amd64_and_arm64_with_sbom_and_provenance(steps):
    build = step_using(steps, "docker/build-push-action")["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True
    assert build["sbom"] is True
    assert build["provenance"] == "mode=max"


def test_the_image_and_the_chart_are_signed_by_digest(steps):
    signing = [step["run"] for step in steps if "cosign sign" in step.get("run", "")]
    assert len(signing) == 2
    assert all("--yes" in run and "@${DIGEST}" in run for run in signing)


def test_the_chart_default_image_is_where_the_release_pushes_it(values_yaml: dict[str, Any]):
    owner = image_source_owner()
    assert values_yaml["image"]["repository"] == f"ghcr.io/{owner.lower()}/pod-labeler"
    assert 'image="ghcr.io/${owner}/pod-labeler"' in RELEASE.read_text()


def test_the_chart_is_pushed_to_the_charts_repository_the_readme_installs_from():
    owner = image_source_owner().lower()
    assert "charts=oci://ghcr.io/${owner}/charts" in RELEASE.read_text()
    assert f"oci://ghcr.io/{owner}/charts/pod-labeler" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("line", ['  tag: ""', '  digest: ""'])
def test_the_values_lines_the_release_pins_exist_exactly_once(line: str):
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert lines.count(line) == 1


def test_the_chart_is_releasable_its_version_and_app_version_agree():
    meta = chart_meta()
    assert str(meta["version"]) == str(meta["appVersion"])


def test_the_readme_installs_the_chart_version_of_this_commit():
    version = chart_meta()["version"]
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"oci://\S+/pod-labeler --version {re.escape(version)}\b", readme)


@pytest.fixture(scope="module")
def values_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded
