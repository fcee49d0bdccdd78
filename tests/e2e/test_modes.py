"""Webhook mode and policy mode label Pods identically. Exercises: kube-apiserver's
in-tree MutatingAdmissionPolicy (admissionregistration.k8s.io/v1, CEL) against the
webhook, through real `helm upgrade`s of the same release between the two modes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.cluster import CHART, Cluster
from tests.e2e.release import Release, restore, upgrade, wait_until_labelled

MODES = ("webhook", "policy")
# The table sets its own labels, whatever the release was installed with.
LABEL = {"environment": "production"}
EXTRA_LABELS = {"example.com/team": "payments", "tier": "backend"}
OURS = {**LABEL, **EXTRA_LABELS}


@dataclass(frozen=True)
class Case:
    name: str
    labels: dict[str, str] | None
    expected: dict[str, str]


# One table for both modes: what a new Pod carries before, and after admission.
CASES = (
    Case("no labels", None, OURS),
    Case("other labels", {"app": "shop"}, {"app": "shop", **OURS}),
    Case("our label with another value", {"environment": "staging"}, OURS),
    Case("our label already right", {"environment": "production"}, OURS),
    Case(
        "a key with a slash",
        {"example.com/owner": "ann", "example.com/team": "billing"},
        {"example.com/owner": "ann", **OURS},
    ),
    Case("every extra label already set", dict(EXTRA_LABELS), OURS),
)


@dataclass(frozen=True)
class Outcome:
    labels: dict[str, str]
    warnings: list[str]


def _switch(cluster: Cluster, release: Release, mode: str, probe_namespace: str) -> None:
    extra = [
        f"extraLabels.{key.replace('.', chr(92) + '.')}={value}"
        for key, value in EXTRA_LABELS.items()
    ]
    extra += [f"label.key={key}" for key in LABEL] + [f"label.value={v}" for v in LABEL.values()]
    upgrade(cluster, release, f"mode={mode}", *extra)
    webhooks = ("mutatingwebhookconfigurations", "-l", release.selector)
    policies = ("mutatingadmissionpolicies", "-l", release.selector)
    ours, other = (policies, webhooks) if mode == "policy" else (webhooks, policies)
    assert cluster.get(*ours)["items"], f"{mode} mode created no {ours[0]}"
    assert cluster.get(*other)["items"] == [], f"{mode} mode left a {other[0]}"
    wait_until_labelled(cluster, probe_namespace, OURS)


@pytest.fixture(scope="module")
def outcomes(cluster: Cluster, release: Release) -> Iterator[dict[str, dict[str, Outcome]]]:
    """Every case of the table, created in each mode: {mode: {case name: outcome}}."""
    with cluster.fresh_namespace("e2e-modes") as namespace:
        try:
            yield {mode: _run_table(cluster, release, mode, namespace) for mode in MODES}
        finally:
            restore(cluster, release)


def _run_table(cluster: Cluster, release: Release, mode: str, namespace: str) -> dict[str, Outcome]:
    _switch(cluster, release, mode, namespace)
    results = {}
    for case in CASES:
        pod, stderr = cluster.create_pod(namespace, labels=case.labels)
        warnings = [line for line in stderr.splitlines() if line.startswith("Warning:")]
        results[case.name] = Outcome(pod["metadata"].get("labels", {}), warnings)
    return results


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_mode_gives_the_labels_the_table_expects(
    outcomes: dict[str, dict[str, Outcome]], mode: str, case: Case
) -> None:
    assert outcomes[mode][case.name].labels == case.expected


def test_both_modes_give_identical_labels_for_every_case(
    outcomes: dict[str, dict[str, Outcome]],
) -> None:
    webhook = {name: o.labels for name, o in outcomes["webhook"].items()}
    policy = {name: o.labels for name, o in outcomes["policy"].items()}

    assert webhook == policy


def test_only_the_webhook_warns_when_it_overwrites_a_label(
    outcomes: dict[str, dict[str, Outcome]],
) -> None:
    # Where the two modes must differ: an admission webhook can return warnings,
    # which kubectl prints; a MutatingAdmissionPolicy has no way to.
    overwritten = "our label with another value"

    assert any("staging" in w for w in outcomes["webhook"][overwritten].warnings)
    assert outcomes["policy"][overwritten].warnings == []


def test_auto_mode_picks_the_policy_on_a_cluster_that_serves_it(
    cluster: Cluster, release: Release
) -> None:
    served = cluster.kubectl(
        "api-resources", "--api-group=admissionregistration.k8s.io", "-o", "name"
    )
    assert "mutatingadmissionpolicies.admissionregistration.k8s.io" in served.stdout

    rendered = cluster.helm(
        "upgrade",
        release.name,
        str(CHART),
        "-n",
        release.namespace,
        "--reuse-values",
        "--set",
        "mode=auto",
        "--dry-run=server",
    ).stdout

    assert "kind: MutatingAdmissionPolicy\n" in rendered
    assert "kind: MutatingWebhookConfiguration" not in rendered
