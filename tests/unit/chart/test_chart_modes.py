"""`mode`: which objects the chart installs, decided once, from what the cluster serves."""

from __future__ import annotations

import re

import pytest

WEBHOOK_KINDS = {
    "Certificate",
    "Deployment",
    "Issuer",
    "MutatingWebhookConfiguration",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
}
POLICY_KINDS = {"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"}


def kinds(manifests) -> set[str]:
    return {kind for kind, _ in manifests.objects}


def test_default_mode_is_webhook(values_text):
    assert re.search(r"^mode: webhook$", values_text, re.MULTILINE)


def test_the_default_installs_the_webhook_even_where_the_cluster_serves_the_policy_api(
    render, policy_api
):
    assert kinds(render(api_versions=policy_api)) == WEBHOOK_KINDS


def test_auto_installs_the_policy_where_the_cluster_serves_its_api(render, policy_api):
    assert kinds(render("mode=auto", api_versions=policy_api)) == POLICY_KINDS


def test_auto_installs_the_webhook_where_the_cluster_does_not_serve_the_policy_api(render):
    assert kinds(render()) == WEBHOOK_KINDS
    assert kinds(render("mode=auto")) == WEBHOOK_KINDS


def test_policy_mode_installs_exactly_one_policy_and_its_binding(render, policy_api):
    manifests = render("mode=policy", api_versions=policy_api)
    assert sorted(manifests.objects) == [
        ("MutatingAdmissionPolicy", "webhook-pod-labeler"),
        ("MutatingAdmissionPolicyBinding", "webhook-pod-labeler"),
    ]


@pytest.mark.parametrize(
    "set_args",
    [(), ("certManager.issuerRef.name=corp-ca",), ("replicaCount=1",)],
    ids=["defaults", "existing issuer", "one replica"],
)
def test_policy_mode_installs_none_of_the_webhook_objects(render, policy_api, set_args):
    assert not kinds(render("mode=policy", *set_args, api_versions=policy_api)) & WEBHOOK_KINDS


def test_policy_objects_use_the_ga_admissionregistration_api(render, policy_api):
    for obj in render("mode=policy", api_versions=policy_api):
        assert obj["apiVersion"] == "admissionregistration.k8s.io/v1", obj["kind"]


def test_policy_mode_without_the_api_fails_and_names_webhook_mode(render_error):
    message = render_error("mode=policy")
    assert "mode: policy needs the admissionregistration.k8s.io/v1/MutatingAdmissionPolicy" in (
        message
    )
    assert "this cluster does not serve it" in message
    assert "mode: webhook" in message


def test_webhook_mode_installs_the_webhook_even_where_the_policy_api_is_served(render, policy_api):
    assert kinds(render("mode=webhook", api_versions=policy_api)) == WEBHOOK_KINDS


def test_every_template_asks_the_one_mode_helper(chart_dir):
    # The backfill hook (backfill-*.yaml) is the same in both modes: it asks nothing.
    templates = sorted((chart_dir / "templates").glob("*.yaml"))
    templates = [path for path in templates if not path.name.startswith("backfill-")]
    assert templates
    for template in templates:
        assert 'include "pod-labeler.mode" .' in template.read_text(), template.name
    assert 'include "pod-labeler.mode" .' in (chart_dir / "templates" / "NOTES.txt").read_text()


def test_only_the_mode_helper_asks_which_apis_the_cluster_serves(chart_dir):
    asking = [
        path.name
        for path in (chart_dir / "templates").iterdir()
        if ".Capabilities.APIVersions" in path.read_text()
    ]
    assert asking == ["_helpers.tpl"]
