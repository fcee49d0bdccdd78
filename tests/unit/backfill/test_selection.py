"""LabelSelectors evaluated as the API server evaluates them, and the scope built on them."""

from __future__ import annotations

import pytest

from app.backfill.selection import Scope, SelectorError, check_selector, matches

LABELS = {"team": "payments", "tier": "backend"}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({}, True),
        (None, True),
        ({"matchLabels": {"team": "payments"}}, True),
        ({"matchLabels": {"team": "billing"}}, False),
        ({"matchLabels": {"team": "payments", "tier": "frontend"}}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "payments"]}]},
            True,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, False),
        ({"matchExpressions": [{"key": "owner", "operator": "In", "values": ["a"]}]}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["payments"]}]},
            False,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["billing"]}]}, True),
        # NotIn holds for an absent key: how the chart's opt-out label works.
        ({"matchExpressions": [{"key": "owner", "operator": "NotIn", "values": ["true"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "owner", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "owner", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"team": "payments"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["backend"]}],
            },
            False,
        ),
    ],
)
def test_a_selector_selects_as_the_api_server_does(selector, selected):
    assert matches(selector, LABELS) is selected


def test_an_object_without_labels_is_selected_only_by_absence():
    assert matches({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, None)
    assert not matches({"matchLabels": {"a": "b"}}, None)


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}, "operator"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "at least one"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}, "no values"),
        ({"matchLabels": {"a": 1}}, "matchLabels"),
        ("team=payments", "object"),
    ],
)
def test_a_selector_the_api_server_would_reject_is_an_error(selector, problem):
    with pytest.raises(SelectorError, match=problem):
        check_selector(selector, "the selector")


def test_the_release_namespace_and_kube_system_are_never_in_scope_whatever_the_selector():
    scope = Scope(release_namespace="pod-labeler")

    assert scope.namespace_reason("pod-labeler", {}) == "always excluded"
    assert scope.namespace_reason("kube-system", {}) == "always excluded"
    assert scope.namespace_reason("team-a", {}) is None


def test_the_namespace_selector_sees_the_name_label_even_when_the_object_lacks_it():
    selector = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["legacy"]}
        ]
    }
    scope = Scope(release_namespace="pod-labeler", namespace_selector=selector)

    assert scope.namespace_reason("legacy", {}) is not None
    assert scope.namespace_reason("team-a", {}) is None


def test_only_lists_the_namespaces_asked_for():
    scope = Scope(release_namespace="pod-labeler", only=("team-a",))

    assert scope.namespace_reason("team-a", {}) is None
    assert scope.namespace_reason("team-b", {}) == "not asked for"


def test_asking_for_the_release_namespace_does_not_bring_it_in_scope():
    scope = Scope(release_namespace="pod-labeler", only=("pod-labeler",))

    assert scope.namespace_reason("pod-labeler", {}) == "always excluded"
