"""New Pods get the release's label. Exercises: kube-apiserver calling the webhook
through its Service over TLS, and the webhook server's JSONPatch."""

from __future__ import annotations

from tests.e2e.cluster import Cluster

DEFAULT_KEY, DEFAULT_VALUE = "environment", "production"


def test_a_new_pod_gets_the_configured_label(cluster: Cluster, namespace: str) -> None:
    created, _ = cluster.create_pod(namespace)

    stored = cluster.get("pod", created["metadata"]["name"], "-n", namespace)
    assert stored["metadata"]["labels"][DEFAULT_KEY] == DEFAULT_VALUE


def test_a_new_pod_keeps_its_other_labels(cluster: Cluster, namespace: str) -> None:
    created, _ = cluster.create_pod(namespace, labels={"app": "shop", "example.com/owner": "ann"})

    assert created["metadata"]["labels"] == {
        "app": "shop",
        "example.com/owner": "ann",
        DEFAULT_KEY: DEFAULT_VALUE,
    }


def test_a_pod_without_any_labels_is_labelled(cluster: Cluster, namespace: str) -> None:
    created, _ = cluster.create_pod(namespace, labels=None, name="bare")

    assert created["metadata"]["labels"] == {DEFAULT_KEY: DEFAULT_VALUE}


def test_kubectl_shows_a_warning_when_an_existing_label_is_overwritten(
    cluster: Cluster, namespace: str
) -> None:
    created, stderr = cluster.create_pod(namespace, labels={DEFAULT_KEY: "staging"})

    assert created["metadata"]["labels"][DEFAULT_KEY] == DEFAULT_VALUE
    warning = next(line for line in stderr.splitlines() if line.startswith("Warning:"))
    assert DEFAULT_KEY in warning
    assert "staging" in warning
    assert DEFAULT_VALUE in warning


def test_a_pod_already_carrying_the_label_gets_no_warning(cluster: Cluster, namespace: str) -> None:
    _, stderr = cluster.create_pod(namespace, labels={DEFAULT_KEY: DEFAULT_VALUE})

    assert "Warning:" not in stderr


def test_a_server_side_dry_run_returns_the_labelled_pod_and_stores_nothing(
    cluster: Cluster, namespace: str
) -> None:
    answered, _ = cluster.create_pod(namespace, labels={"app": "dry"}, name="dry", dry_run=True)

    assert answered["metadata"]["labels"] == {"app": "dry", DEFAULT_KEY: DEFAULT_VALUE}
    assert not cluster.exists("pod", "dry", "-n", namespace)
