"""`make up`'s readiness check: a new Pod carries the labels of the installed release,
whatever labels it was installed with."""

from __future__ import annotations

import json

from localcp.controlplane import carries, labels_of

DEFAULTS = {"label": {"key": "environment", "value": "production"}, "extraLabels": {}}


def created(labels: dict[str, str] | None) -> str:
    """kubectl's `-o json` output for a created Pod."""
    metadata = {"name": "localcp-probe-x"} | ({} if labels is None else {"labels": labels})
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": metadata})


def test_the_check_expects_the_release_label_it_was_installed_with() -> None:
    values = DEFAULTS | {"label": {"key": "team", "value": "payments"}}

    assert labels_of(values) == {"team": "payments"}


def test_the_check_expects_the_extra_labels_too() -> None:
    values = DEFAULTS | {"extraLabels": {"example.com/tier": "backend", "cost": 12}}

    assert labels_of(values) == {
        "environment": "production",
        "example.com/tier": "backend",
        "cost": "12",
    }


def test_a_pod_with_the_release_labels_passes() -> None:
    assert carries(created({"team": "payments", "app": "x"}), {"team": "payments"})


def test_a_pod_labelled_only_environment_does_not_pass_for_another_label() -> None:
    assert not carries(created({"environment": "production"}), {"team": "payments"})


def test_a_pod_with_another_value_does_not_pass() -> None:
    assert not carries(created({"team": "search"}), {"team": "payments"})


def test_a_pod_without_labels_does_not_pass() -> None:
    assert not carries(created(None), {"team": "payments"})


def test_a_refused_pod_does_not_pass() -> None:
    assert not carries("", {"team": "payments"})
