"""Names, labels and helpers follow `helm create`; one kind per template file."""

from __future__ import annotations

import re

import pytest

FULLNAME = "webhook-pod-labeler"
NAMESPACED_KINDS = {
    "Certificate",
    "ConfigMap",
    "Deployment",
    "Issuer",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "PrometheusRule",
    "Secret",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
}
# Every optional object on, so that every template renders in one mode or the other.
EVERYTHING_ON = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
    "networkPolicy.enabled=true",
)


@pytest.mark.parametrize("mode", ["webhook", "policy"])
def test_every_object_carries_the_standard_labels_with_its_mode_as_component(
    render, policy_api, mode, chart_meta
):
    for obj in render(f"mode={mode}", *EVERYTHING_ON, api_versions=policy_api):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "pod-labeler", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == "webhook"
        assert labels["app.kubernetes.io/version"] == chart_meta["appVersion"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/component"] == mode
        assert labels["helm.sh/chart"] == f"pod-labeler-{chart_meta['version']}"


def test_selectors_use_only_name_and_instance(render):
    manifests = render()
    selector = {"app.kubernetes.io/name": "pod-labeler", "app.kubernetes.io/instance": "webhook"}
    assert manifests.one("Deployment")["spec"]["selector"]["matchLabels"] == selector
    assert manifests.one("Service")["spec"]["selector"] == selector
    assert manifests.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector


def test_objects_are_named_after_release_and_chart(render):
    manifests = render()
    for kind in ("Deployment", "Service", "ServiceAccount", "MutatingWebhookConfiguration"):
        assert manifests.names(kind) == {FULLNAME}, kind
    assert manifests.names("Certificate") == {f"{FULLNAME}-ca", f"{FULLNAME}-tls"}
    assert manifests.names("Issuer") == {f"{FULLNAME}-selfsigned", f"{FULLNAME}-ca"}


def test_policy_and_binding_are_named_after_release_and_chart(render, policy_api):
    manifests = render("mode=policy", api_versions=policy_api)
    assert manifests.names("MutatingAdmissionPolicy") == {FULLNAME}
    assert manifests.names("MutatingAdmissionPolicyBinding") == {FULLNAME}


def test_fullname_override_names_every_object(render):
    for obj in render("fullnameOverride=labeller"):
        assert obj["metadata"]["name"].startswith("labeller"), obj["kind"]


def test_release_name_containing_the_chart_name_is_used_alone(render):
    assert render(release="pod-labeler").names("Deployment") == {"pod-labeler"}


def test_name_override_replaces_the_chart_name(render):
    manifests = render("nameOverride=labels")
    assert manifests.names("Deployment") == {"webhook-labels"}
    assert manifests.one("Service")["spec"]["selector"]["app.kubernetes.io/name"] == "labels"


def test_fullname_is_cut_to_63_characters(render):
    release = "r" * 53  # the longest release name helm accepts
    name = render(release=release).one("Service")["metadata"]["name"]
    assert name == f"{release}-pod-label"


def test_fullname_cut_never_ends_with_a_dash(render):
    name = render(f"fullnameOverride={'a' * 62}-b").one("Service")["metadata"]["name"]
    assert name == "a" * 62


@pytest.mark.parametrize("mode", ["webhook", "policy"])
@pytest.mark.parametrize("namespace", ["pod-labeler", "platform-system"])
def test_namespaced_objects_are_in_the_release_namespace(render, policy_api, namespace, mode):
    manifests = render(f"mode={mode}", *EVERYTHING_ON, namespace=namespace, api_versions=policy_api)
    for obj in manifests:
        if obj["kind"] in NAMESPACED_KINDS:
            assert obj["metadata"]["namespace"] == namespace, obj["kind"]
        else:
            assert "namespace" not in obj["metadata"], obj["kind"]


def test_every_helper_is_namespaced_with_the_chart_name(chart_dir):
    defined = re.findall(
        r'define "([^"]+)"', (chart_dir / "templates" / "_helpers.tpl").read_text()
    )
    assert defined
    assert [name for name in defined if not name.startswith("pod-labeler.")] == []
    expected = {"name", "fullname", "chart", "labels", "selectorLabels", "serviceAccountName"}
    assert {f"pod-labeler.{name}" for name in expected} <= set(defined)


def test_each_template_file_renders_only_the_kind_it_is_named_after(render, policy_api, chart_dir):
    # The backfill hook's objects are in backfill-<kind>.yaml, beside the webhook's own.
    sources: set[str] = set()
    for mode in ("webhook", "policy"):
        manifests = render(
            f"mode={mode}", *EVERYTHING_ON, "backfill.onInstall=true", api_versions=policy_api
        )
        for key, source in manifests.sources.items():
            kind = key[0].lower()
            assert source in (f"templates/{kind}.yaml", f"templates/backfill-{kind}.yaml"), key
        sources |= set(manifests.sources.values())
    assert {f"templates/{p.name}" for p in (chart_dir / "templates").glob("*.yaml")} == sources
