"""The MutatingWebhookConfiguration: what it sends to the server, and what it never sends."""

from __future__ import annotations

import re
from typing import Any

import pytest

FULLNAME = "webhook-pod-labeler"


def webhook_of(manifests: Any) -> dict[str, Any]:
    configuration = manifests.one("MutatingWebhookConfiguration")
    assert len(configuration["webhooks"]) == 1
    webhook: dict[str, Any] = configuration["webhooks"][0]
    return webhook


def expressions_by_key(webhook: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in webhook["namespaceSelector"]["matchExpressions"]}


def test_webhook_is_called_only_for_pod_creation(render):
    assert webhook_of(render())["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]


def test_webhook_calls_the_service_on_the_mutate_path(render):
    manifests = render()
    service = manifests.one("Service")
    assert webhook_of(manifests)["clientConfig"] == {
        "service": {
            "name": service["metadata"]["name"],
            "namespace": "pod-labeler",
            "path": "/mutate",
            "port": service["spec"]["ports"][0]["port"],
        }
    }


def test_webhook_speaks_admission_review_v1_without_side_effects(render):
    webhook = webhook_of(render())
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["sideEffects"] == "None"


def test_webhook_also_gets_pods_sent_through_an_equivalent_api_version(render):
    assert webhook_of(render())["matchPolicy"] == "Equivalent"


def test_webhook_name_is_a_qualified_dns_name_unique_to_release_and_namespace(render):
    name = webhook_of(render(namespace="team-a"))["name"]
    assert name == "label.pods.webhook-pod-labeler.team-a.svc"
    assert len(name) <= 253
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?){2,}", name)


def test_configuration_is_named_after_the_release(render):
    assert render().names("MutatingWebhookConfiguration") == {FULLNAME}


def find_key(tree: Any, key: str) -> bool:
    if isinstance(tree, dict):
        return key in tree or any(find_key(v, key) for v in tree.values())
    if isinstance(tree, list):
        return any(find_key(v, key) for v in tree)
    return False


@pytest.mark.parametrize(
    "set_args",
    [(), ("certManager.issuerRef.name=corp-ca", "certManager.issuerRef.kind=ClusterIssuer")],
    ids=["chart CA", "existing issuer"],
)
def test_ca_bundle_is_never_in_the_rendered_chart(render, set_args):
    assert not any(find_key(obj, "caBundle") for obj in render(*set_args))


@pytest.mark.parametrize("namespace", ["pod-labeler", "platform-system"])
def test_inject_ca_from_names_the_serving_certificate_and_its_namespace(render, namespace):
    manifests = render(namespace=namespace)
    annotation = manifests.one("MutatingWebhookConfiguration")["metadata"]["annotations"][
        "cert-manager.io/inject-ca-from"
    ]
    cert_namespace, cert_name = annotation.split("/")
    certificate = manifests.get("Certificate", cert_name)
    assert cert_namespace == namespace == certificate["metadata"]["namespace"]
    assert not certificate["spec"].get("isCA", False)


def test_inject_ca_from_follows_an_existing_issuer(render):
    manifests = render("certManager.issuerRef.name=corp-ca")
    annotation = manifests.one("MutatingWebhookConfiguration")["metadata"]["annotations"][
        "cert-manager.io/inject-ca-from"
    ]
    assert annotation == f"pod-labeler/{manifests.one('Certificate')['metadata']['name']}"


@pytest.mark.parametrize("namespace", ["pod-labeler", "platform-system"])
def test_release_namespace_and_kube_system_are_never_sent_to_the_webhook(render, namespace):
    expression = expressions_by_key(webhook_of(render(namespace=namespace)))[
        "kubernetes.io/metadata.name"
    ]
    assert expression["operator"] == "NotIn"
    assert expression["values"] == [namespace, "kube-system"]


def test_excluded_namespaces_are_added_to_the_chart_exclusions(render):
    expression = expressions_by_key(
        webhook_of(render("webhook.excludedNamespaces={monitoring,kube-system}"))
    )["kubernetes.io/metadata.name"]
    assert expression["values"] == ["pod-labeler", "kube-system", "monitoring"]


def test_namespaces_with_the_opt_out_label_are_skipped(render):
    expression = expressions_by_key(webhook_of(render()))["pod-labeler/skip"]
    assert expression == {"key": "pod-labeler/skip", "operator": "NotIn", "values": ["true"]}


def test_opt_out_label_key_is_configurable(render):
    keys = expressions_by_key(webhook_of(render("webhook.optOutLabel=example.com/no-labels")))
    assert keys["example.com/no-labels"]["values"] == ["true"]
    assert "pod-labeler/skip" not in keys


def test_user_namespace_selector_is_merged_and_the_chart_expressions_are_kept(render):
    webhook = webhook_of(
        render(
            values={
                "webhook": {
                    "namespaceSelector": {
                        "matchLabels": {"team": "payments"},
                        "matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["web"]},
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": ["a"],
                            },
                        ],
                    }
                }
            }
        )
    )
    selector = webhook["namespaceSelector"]
    assert selector["matchLabels"] == {"team": "payments"}
    assert selector["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["pod-labeler", "kube-system"],
        },
        {"key": "pod-labeler/skip", "operator": "NotIn", "values": ["true"]},
        {"key": "tier", "operator": "In", "values": ["web"]},
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a"]},
    ]


def test_namespace_selector_has_no_match_labels_by_default(render):
    assert "matchLabels" not in webhook_of(render())["namespaceSelector"]


def test_object_selector_is_passed_through(render):
    webhook = webhook_of(render("webhook.objectSelector.matchLabels.labelled-by=pod-labeler"))
    assert webhook["objectSelector"] == {"matchLabels": {"labelled-by": "pod-labeler"}}


def test_every_pod_is_selected_by_default(render):
    assert "objectSelector" not in webhook_of(render())


def test_a_bad_label_selector_fails_the_render(render_error):
    message = render_error("webhook.objectSelector.matchExpressions[0].key=tier")
    assert "/webhook/objectSelector/matchExpressions/0" in message
    assert "operator" in message


def test_failure_policy_defaults_to_fail(render):
    assert webhook_of(render())["failurePolicy"] == "Fail"


def test_failure_policy_ignore_is_rendered(render):
    assert webhook_of(render("webhook.failurePolicy=Ignore"))["failurePolicy"] == "Ignore"


def test_timeout_defaults_to_five_seconds_and_is_configurable(render):
    assert webhook_of(render())["timeoutSeconds"] == 5
    assert webhook_of(render("webhook.timeoutSeconds=12"))["timeoutSeconds"] == 12


def test_webhook_is_reinvoked_if_a_later_webhook_changes_the_pod(render):
    assert webhook_of(render())["reinvocationPolicy"] == "IfNeeded"
    assert webhook_of(render("webhook.reinvocationPolicy=Never"))["reinvocationPolicy"] == "Never"


@pytest.mark.parametrize(
    ("set_arg", "field"),
    [
        ("webhook.failurePolicy=Retry", "/webhook/failurePolicy"),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        ("webhook.timeoutSeconds=0", "/webhook/timeoutSeconds"),
        ("webhook.reinvocationPolicy=Always", "/webhook/reinvocationPolicy"),
        ("webhook.excludedNamespaces={Not_A_Namespace}", "/webhook/excludedNamespaces/0"),
    ],
)
def test_webhook_settings_outside_what_kubernetes_accepts_fail_the_render(
    render_error, set_arg, field
):
    assert f"at '{field}'" in render_error(set_arg)


# ---- webhook.annotations -------------------------------------------------------------

INJECT_CA_FROM = "cert-manager.io/inject-ca-from"
EXTRA_ANNOTATIONS = {"argocd.argoproj.io/sync-wave": "5", "example.com/owner": "platform"}
# The chart's own, on every admission object: what audit and backfill read.
LABEL_ANNOTATIONS = {
    "pod-labeler/labels": '{"environment": "production"}',
    "pod-labeler/overwrite": "true",
}


def test_webhook_annotations_are_added_to_the_chart_own_inject_ca_from(render):
    configuration = render(values={"webhook": {"annotations": EXTRA_ANNOTATIONS}}).one(
        "MutatingWebhookConfiguration"
    )
    assert configuration["metadata"]["annotations"] == {
        INJECT_CA_FROM: f"pod-labeler/{FULLNAME}-tls",
        **LABEL_ANNOTATIONS,
        **EXTRA_ANNOTATIONS,
    }


def test_without_webhook_annotations_only_the_chart_own_are_set(render):
    configuration = render().one("MutatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"] == {
        INJECT_CA_FROM: f"pod-labeler/{FULLNAME}-tls",
        **LABEL_ANNOTATIONS,
    }


@pytest.mark.parametrize(
    "key",
    [
        INJECT_CA_FROM,
        "cert-manager.io/inject-ca-from-secret",
        "cert-manager.io/inject-apiserver-ca",
    ],
)
def test_webhook_annotations_cannot_override_or_compete_with_the_ca_injection(render_error, key):
    error = render_error(values={"webhook": {"annotations": {key: "elsewhere/other"}}})
    assert "webhook.annotations" in error
    assert key in error


@pytest.mark.parametrize("kind", ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"])
def test_webhook_annotations_go_on_the_policy_and_its_binding_in_policy_mode(
    render, policy_api, kind
):
    manifests = render(
        "mode=policy",
        values={"webhook": {"annotations": EXTRA_ANNOTATIONS}},
        api_versions=policy_api,
    )
    assert manifests.one(kind)["metadata"]["annotations"] == {
        **LABEL_ANNOTATIONS,
        **EXTRA_ANNOTATIONS,
    }


@pytest.mark.parametrize("kind", ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"])
def test_policy_objects_carry_only_the_label_annotations_by_default(render, policy_api, kind):
    manifests = render("mode=policy", api_versions=policy_api)
    assert manifests.one(kind)["metadata"]["annotations"] == LABEL_ANNOTATIONS


@pytest.mark.parametrize("key", ["pod-labeler/labels", "pod-labeler/overwrite"])
def test_webhook_annotations_cannot_override_the_labels_audit_reads(render_error, key):
    error = render_error(values={"webhook": {"annotations": {key: "x"}}})
    assert "webhook.annotations" in error
    assert key in error


@pytest.mark.parametrize("key", ["bad key", "-x", "a/b/c"])
def test_an_invalid_webhook_annotation_key_fails_naming_the_field(render_error, key):
    error = render_error(values={"webhook": {"annotations": {key: "v"}}})
    assert "at '/webhook/annotations'" in error
