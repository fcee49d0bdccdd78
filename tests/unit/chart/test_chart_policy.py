"""The MutatingAdmissionPolicy and its binding: the webhook's behaviour, from the same values."""

from __future__ import annotations

import json
from typing import Any

import pytest

FULLNAME = "webhook-pod-labeler"


@pytest.fixture(scope="session")
def render_policy(render, policy_api):
    """render_policy(*"--set" args, **options) -> the MutatingAdmissionPolicy."""

    def _render_policy(*set_args: str, **options: Any) -> dict[str, Any]:
        manifests = render("mode=policy", *set_args, api_versions=policy_api, **options)
        policy: dict[str, Any] = manifests.one("MutatingAdmissionPolicy")
        return policy

    return _render_policy


@pytest.fixture(scope="session")
def render_both(render, policy_api):
    """render_both(**options) -> (the webhook's entry, the policy's spec) for the same values."""

    def _render_both(**options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        webhook = render("mode=webhook", **options).one("MutatingWebhookConfiguration")
        policy = render("mode=policy", api_versions=policy_api, **options).one(
            "MutatingAdmissionPolicy"
        )
        return webhook["webhooks"][0], policy["spec"]

    return _render_both


def variables_of(policy: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in policy["spec"]["variables"]}


def labels_of(policy: dict[str, Any]) -> dict[str, str]:
    """The labels CEL map literal. Its keys and values are JSON strings, so it parses as JSON."""
    labels: dict[str, str] = json.loads(variables_of(policy)["labels"])
    return labels


def mutation_of(policy: dict[str, Any]) -> str:
    mutations = policy["spec"]["mutations"]
    assert len(mutations) == 1
    assert mutations[0]["patchType"] == "JSONPatch"
    expression: str = mutations[0]["jsonPatch"]["expression"]
    return expression


def test_policy_matches_only_pod_creation(render_policy):
    constraints = render_policy()["spec"]["matchConstraints"]
    assert constraints["resourceRules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert "excludeResourceRules" not in constraints


def test_policy_matches_pods_sent_through_an_equivalent_api_version_as_the_webhook_does(
    render_both,
):
    webhook, policy = render_both()
    assert policy["matchConstraints"]["matchPolicy"] == webhook["matchPolicy"] == "Equivalent"


SELECTOR_VALUES = {
    "defaults": {},
    "excluded namespaces": {"webhook": {"excludedNamespaces": ["monitoring", "kube-system"]}},
    "own opt-out label": {"webhook": {"optOutLabel": "example.com/no-labels"}},
    "user namespace selector": {
        "webhook": {
            "namespaceSelector": {
                "matchLabels": {"team": "payments"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}],
            }
        }
    },
}


@pytest.mark.parametrize("namespace", ["pod-labeler", "platform-system"])
@pytest.mark.parametrize("values", SELECTOR_VALUES.values(), ids=SELECTOR_VALUES.keys())
def test_policy_namespace_selector_is_the_webhooks_for_the_same_values(
    render_both, values, namespace
):
    webhook, policy = render_both(values=values, namespace=namespace)
    assert policy["matchConstraints"]["namespaceSelector"] == webhook["namespaceSelector"]
    names = policy["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]
    assert names["key"] == "kubernetes.io/metadata.name"
    assert names["values"][:2] == [namespace, "kube-system"]


def test_policy_object_selector_is_the_webhooks_for_the_same_values(render_both):
    values = {"webhook": {"objectSelector": {"matchLabels": {"labelled-by": "pod-labeler"}}}}
    webhook, policy = render_both(values=values)
    assert policy["matchConstraints"]["objectSelector"] == webhook["objectSelector"]


def test_policy_selects_every_pod_by_default(render_policy):
    assert "objectSelector" not in render_policy()["spec"]["matchConstraints"]


@pytest.mark.parametrize("failure_policy", ["Fail", "Ignore"])
def test_policy_failure_policy_follows_the_webhook_value(render_policy, failure_policy):
    policy = render_policy(f"webhook.failurePolicy={failure_policy}")
    assert policy["spec"]["failurePolicy"] == failure_policy


def test_policy_failure_policy_defaults_to_fail(render_policy):
    assert render_policy()["spec"]["failurePolicy"] == "Fail"


@pytest.mark.parametrize("reinvocation", ["IfNeeded", "Never"])
def test_policy_reinvocation_policy_follows_the_webhook_value(render_policy, reinvocation):
    policy = render_policy(f"webhook.reinvocationPolicy={reinvocation}")
    assert policy["spec"]["reinvocationPolicy"] == reinvocation


def test_policy_is_cluster_scoped_and_takes_no_parameters(render_policy):
    policy = render_policy()
    assert "namespace" not in policy["metadata"]
    assert "paramKind" not in policy["spec"]


def test_binding_names_the_policy(render, policy_api):
    manifests = render("mode=policy", api_versions=policy_api)
    policy = manifests.one("MutatingAdmissionPolicy")
    binding = manifests.one("MutatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == FULLNAME


def test_binding_leaves_matching_to_the_policy(render, policy_api):
    binding = render("mode=policy", api_versions=policy_api).one("MutatingAdmissionPolicyBinding")
    assert set(binding["spec"]) == {"policyName"}


def test_binding_follows_a_fullname_override(render, policy_api):
    manifests = render("mode=policy", "fullnameOverride=labeller", api_versions=policy_api)
    binding = manifests.one("MutatingAdmissionPolicyBinding")
    assert binding["metadata"]["name"] == binding["spec"]["policyName"] == "labeller"
    assert manifests.names("MutatingAdmissionPolicy") == {"labeller"}


def test_policy_sets_label_key_and_value(render_policy):
    assert labels_of(render_policy()) == {"environment": "production"}
    assert labels_of(render_policy("label.key=team", "label.value=payments")) == {
        "team": "payments"
    }


def test_policy_sets_every_extra_label_after_the_main_one(render_policy):
    policy = render_policy(
        values={"extraLabels": {"example.com/team": "payments", "tier": "web", "empty": ""}}
    )
    assert list(labels_of(policy).items()) == [
        ("environment", "production"),
        ("empty", ""),
        ("example.com/team", "payments"),
        ("tier", "web"),
    ]


@pytest.mark.parametrize(
    ("set_arg", "expected"),
    [("label.value=123", "123"), ("label.value=true", "true"), ("label.value=0", "0")],
)
def test_label_values_that_are_not_plain_words_are_cel_strings(render_policy, set_arg, expected):
    assert labels_of(render_policy(set_arg)) == {"environment": expected}


def test_extra_label_repeating_the_main_key_fails_the_render_in_policy_mode(
    render_error, policy_api
):
    message = render_error("mode=policy", "extraLabels.environment=x", api_versions=policy_api)
    assert 'extraLabels: "environment" repeats label.key' in message


def test_patch_paths_escape_every_label_key_through_jsonpatch_escape_key(render_policy):
    policy = render_policy(values={"extraLabels": {"example.com/team": "payments"}})
    mutation = mutation_of(policy)
    assert '"/metadata/labels/" + jsonpatch.escapeKey(key)' in mutation
    assert "variables.keysToSet.map(key," in mutation
    # Every label, and nothing else, is in the map the keys come from.
    assert labels_of(policy) == {"environment": "production", "example.com/team": "payments"}
    assert "variables.labels.filter(key," in variables_of(policy)["keysToSet"]


def test_a_pod_without_labels_gets_the_whole_map_in_one_op(render_policy):
    mutation = mutation_of(render_policy())
    assert '[JSONPatch{op: "add", path: "/metadata/labels", value: variables.labels}]' in mutation
    assert variables_of(render_policy())["podHasLabels"] == (
        "has(object.metadata.labels) && size(object.metadata.labels) > 0"
    )


def test_with_overwrite_only_keys_missing_or_with_another_value_are_set(render_policy):
    keys_to_set = variables_of(render_policy())["keysToSet"]
    assert "key in object.metadata.labels" in keys_to_set
    assert "object.metadata.labels[key] == variables.labels[key]" in keys_to_set


def test_without_overwrite_keys_the_pod_already_has_are_skipped(render_policy):
    keys_to_set = variables_of(render_policy("overwrite=false"))["keysToSet"]
    assert keys_to_set == (
        "variables.labels.filter(key, !(variables.podHasLabels && key in object.metadata.labels))"
    )


def test_the_patch_expression_is_the_same_with_and_without_overwrite(render_policy):
    assert mutation_of(render_policy()) == mutation_of(render_policy("overwrite=false"))
