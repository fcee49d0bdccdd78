"""What a release does to the cluster over its life: upgrades, outages, exclusions,
uninstall. Exercises: real `helm install/upgrade/uninstall` of ./chart, the API
server's namespaceSelector and failurePolicy handling, and cert-manager issuing for
a reinstalled release."""

from __future__ import annotations

import pytest

from tests.e2e.cluster import CHART, Cluster, unique, wait_for
from tests.e2e.load import STEADY_RATE, PodCreationLoad
from tests.e2e.release import Release, scale, upgrade, wait_until_labelled

WAIT = 120.0


def _labels(pod: dict[str, object]) -> dict[str, str]:
    metadata = pod["metadata"]
    assert isinstance(metadata, dict)
    return dict(metadata.get("labels") or {})


def test_helm_upgrade_changes_the_label_new_pods_get(
    cluster: Cluster, namespace: str, restore_release: Release
) -> None:
    before = restore_release
    key, value = ("team", "payments") if before.label_key != "team" else ("squad", "billing")
    upgrade(cluster, before, f"label.key={key}", f"label.value={value}")

    wait_until_labelled(cluster, namespace, {key: value})
    created, _ = cluster.create_pod(namespace, labels={"app": "x"})
    extra = {k: v for k, v in before.original_labels.items() if k != before.label_key}
    assert _labels(created) == {"app": "x", key: value, **extra}


def test_a_rolling_upgrade_of_the_webhook_refuses_no_pod_creation(
    cluster: Cluster, namespace: str, restore_release: Release
) -> None:
    accepted = {restore_release.label_key: {restore_release.label_value, "rolled"}}
    with PodCreationLoad(cluster.kubeconfig, [namespace], accepted, STEADY_RATE) as creation:
        creation.wait_for_more(3)  # under way before the rollout starts
        upgrade(cluster, restore_release, "label.value=rolled")
        wait_until_labelled(cluster, namespace, {restore_release.label_key: "rolled"})

    assert creation.created > 10, "too few Pods were created during the rollout to show anything"
    assert creation.failures == []


def test_pods_in_kube_system_are_never_sent_to_the_webhook(cluster: Cluster) -> None:
    created, _ = cluster.create_pod("kube-system", labels={"app": "x"}, dry_run=True)

    assert _labels(created) == {"app": "x"}


def test_pods_in_the_release_namespace_are_never_sent_to_the_webhook(
    cluster: Cluster, release: Release
) -> None:
    created, _ = cluster.create_pod(release.namespace, labels={"app": "x"}, dry_run=True)

    assert _labels(created) == {"app": "x"}


def test_a_namespace_labelled_to_opt_out_is_never_sent_to_the_webhook(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}=true")

    def unlabelled() -> bool:
        pod, _ = cluster.create_pod(namespace, labels={"app": "x"}, dry_run=True)
        return _labels(pod) == {"app": "x"}

    wait_for(unlabelled, WAIT, "Pods in an opted-out namespace to be left alone")


@pytest.fixture
def webhook_down_with_failure_policy_fail(
    cluster: Cluster, namespace: str, restore_release: Release
) -> str:
    scale(cluster, restore_release, 0)

    def refused() -> str | None:
        pod, error = cluster.try_create_pod(namespace)
        return error if pod is None else None

    return wait_for(refused, WAIT, "Pod creation to be refused once the webhook is down")


def test_with_the_webhook_down_and_failure_policy_fail_pods_are_refused_with_a_clear_error(
    webhook_down_with_failure_policy_fail: str,
) -> None:
    error = webhook_down_with_failure_policy_fail

    assert "failed calling webhook" in error
    assert "pod-labeler" in error  # names which webhook, so an operator knows where to look


def test_with_the_webhook_down_pods_in_the_release_namespace_are_still_admitted(
    cluster: Cluster, release: Release, webhook_down_with_failure_policy_fail: str
) -> None:
    created, _ = cluster.create_pod(release.namespace, dry_run=True)

    assert created["metadata"]["name"]


def test_with_the_webhook_down_and_failure_policy_ignore_pods_are_admitted_unlabelled(
    cluster: Cluster, namespace: str, restore_release: Release
) -> None:
    upgrade(cluster, restore_release, "webhook.failurePolicy=Ignore")
    scale(cluster, restore_release, 0)

    def admitted_unlabelled() -> bool:
        pod, _ = cluster.try_create_pod(namespace)
        return pod is not None and restore_release.label_key not in _labels(pod)

    wait_for(admitted_unlabelled, WAIT, "an unlabelled Pod to be admitted with the webhook down")


def test_helm_uninstall_removes_the_webhook_and_pod_creation_still_works(
    cluster: Cluster, namespace: str, restore_release: Release
) -> None:
    cluster.helm("uninstall", restore_release.name, "-n", restore_release.namespace, "--wait")

    assert (
        cluster.get("mutatingwebhookconfigurations", "-l", restore_release.selector)["items"] == []
    )
    created, _ = cluster.create_pod(namespace, labels={"app": "x"})
    assert _labels(created) == {"app": "x"}


def test_helm_install_refuses_a_bad_label_value_before_creating_anything(cluster: Cluster) -> None:
    name = unique("bad")
    target_namespace = unique("e2e-bad")

    result = cluster.helm(
        "install",
        name,
        str(CHART),
        "-n",
        target_namespace,
        "--create-namespace",
        "--set",
        "label.value=not ok!",
        check=False,
    )

    assert "/label/value" in result.stderr, result.stderr
    assert cluster.helm("status", name, "-n", target_namespace, check=False).stdout == ""
    assert not cluster.exists("namespace", target_namespace)
    assert (
        cluster.get("mutatingwebhookconfigurations", "-l", f"app.kubernetes.io/instance={name}")[
            "items"
        ]
        == []
    )
