"""Chart.yaml carries what Artifact Hub and users look for, and the top README's GitOps
snippet names the webhook configuration the chart really renders."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.tooling import ROOT

README = ROOT / "README.md"
# https://artifacthub.io/docs/topics/annotations/helm/
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def dockerfile_label(name: str) -> str:
    match = re.search(
        rf'org\.opencontainers\.image\.{name}="([^"]+)"', (ROOT / "Dockerfile").read_text()
    )
    assert match, f"the Dockerfile has no org.opencontainers.image.{name} label"
    return match.group(1)


@pytest.mark.parametrize("field", ["home", "sources", "maintainers", "description", "kubeVersion"])
def test_chart_yaml_says_where_the_chart_comes_from_and_who_keeps_it(chart_meta, field):
    assert chart_meta.get(field)


def test_home_and_sources_are_the_repository_the_image_names_as_its_source(chart_meta):
    source = dockerfile_label("source")
    assert chart_meta["home"] == source
    assert source in chart_meta["sources"]


def test_artifact_hub_license_is_the_image_license(chart_meta):
    assert chart_meta["annotations"]["artifacthub.io/license"] == dockerfile_label("licenses")


def test_artifact_hub_lists_the_image_the_chart_runs_by_default(render, chart_meta):
    images = yaml.safe_load(chart_meta["annotations"]["artifacthub.io/images"])
    container = render().one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [image["image"] for image in images] == [container["image"]]
    assert all({"linux/amd64", "linux/arm64"} <= set(image["platforms"]) for image in images)


def test_artifact_hub_changes_use_its_kinds(chart_meta):
    changes = yaml.safe_load(chart_meta["annotations"]["artifacthub.io/changes"])
    assert changes
    for change in changes:
        assert change["kind"] in CHANGE_KINDS, change
        assert change["description"]


# ---- the top README's GitOps section -----------------------------------------------------


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def yaml_blocks(text: str) -> list[Any]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def readme_install() -> tuple[str, str]:
    """(release, namespace) of the README's `helm install ... oci://` command."""
    match = re.search(r"helm install (\S+) oci://\S+ .*?-n (\S+)", README.read_text(), re.S)
    assert match, "the README has no helm install from the OCI chart"
    return match.group(1), match.group(2)


@pytest.fixture(scope="module")
def argo_rule() -> dict[str, Any]:
    (application,) = [
        block
        for block in yaml_blocks(readme_section("GitOps"))
        if block.get("kind") == "Application"
    ]
    (rule,) = application["spec"]["ignoreDifferences"]
    assert "RespectIgnoreDifferences=true" in application["spec"]["syncPolicy"]["syncOptions"]
    return dict(rule)


def test_readme_argo_cd_rule_names_the_webhook_configuration_the_chart_renders(render, argo_rule):
    release, namespace = readme_install()
    configuration = render(release=release, namespace=namespace).one("MutatingWebhookConfiguration")
    assert (argo_rule["group"], argo_rule["kind"], argo_rule["name"]) == (
        configuration["apiVersion"].split("/")[0],
        configuration["kind"],
        configuration["metadata"]["name"],
    )


def test_readme_argo_cd_rule_ignores_the_ca_bundle_of_every_webhook(render, argo_rule):
    configuration = render().one("MutatingWebhookConfiguration")
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]  # cainjector's
    assert argo_rule["jqPathExpressions"] == [".webhooks[]?.clientConfig.caBundle"]
