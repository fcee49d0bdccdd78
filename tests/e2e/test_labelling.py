"""New Pods get the release's labels. Exercises: kube-apiserver calling the webhook
through its Service over TLS, and the webhook server's JSONPatch."""

from __future__ import annotations

from tests.e2e.cluster import Cluster
from tests.e2e.release import Release


def test_a_new_pod_gets_the_configured_label(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    created, _ = cluster.create_pod(namespace)

    stored = cluster.get("pod", created["metadata"]["name"], "-n", namespace)
    assert stored["metadata"]["labels"][release.label_key] == release.label_value


def test_a_new_pod_keeps_its_other_labels(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    created, _ = cluster.create_pod(namespace, labels={"app": "shop", "example.com/owner": "ann"})

    assert created["metadata"]["labels"] == {
        "app": "shop",
        "example.com/owner": "ann",
        **release.original_labels,
    }


def test_a_pod_without_any_labels_is_labelled(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    created, _ = cluster.create_pod(namespace, labels=None, name="bare")

    assert created["metadata"]["labels"] == release.original_labels


def test_kubectl_shows_a_warning_when_an_existing_label_is_overwritten(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    created, stderr = cluster.create_pod(namespace, labels={release.label_key: release.other_value})

    assert created["metadata"]["labels"][release.label_key] == release.label_value
    warning = next(line for line in stderr.splitlines() if line.startswith("Warning:"))
    assert release.label_key in warning
    assert release.other_value in warning
    assert release.label_value in warning


def test_a_pod_already_carrying_the_labels_gets_no_warning(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    _, stderr = cluster.create_pod(namespace, labels=release.original_labels)

    assert "Warning:" not in stderr


def test_a_server_side_dry_run_returns_the_labelled_pod_and_stores_nothing(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    answered, _ = cluster.create_pod(namespace, labels={"app": "dry"}, name="dry", dry_run=True)

    assert answered["metadata"]["labels"] == {"app": "dry", **release.original_labels}
    assert not cluster.exists("pod", "dry", "-n", namespace)
