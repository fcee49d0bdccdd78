"""The chart's backfill hook Job (backfill.onInstall), run in the cluster as a user's
would be: `helm upgrade` creates the hook's ServiceAccount, ClusterRole, binding and
Job; the Job controller, the scheduler and the kubelet run its Pod from the
release's own image; that Pod reaches the API server through the `kubernetes`
Service (kube-proxy) with its ServiceAccount token, and labels the Pods that were
running before; helm waits for it and deletes the hook's objects on success.
Exercises RBAC against the chart's ClusterRole, and TokenRequest for that account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.release import Release, render, upgrade

HOOK_TEMPLATES = (
    "backfill-serviceaccount.yaml",
    "backfill-clusterrole.yaml",
    "backfill-clusterrolebinding.yaml",
    "backfill-job.yaml",
)


def render_hook(cluster: Cluster, release: Release) -> list[dict[str, Any]]:
    """The hook's objects, rendered from the release's own values."""
    return render(cluster, release, "backfill.onInstall=true", templates=HOOK_TEMPLATES)


@pytest.fixture(scope="module")
def hook(cluster: Cluster, release: Release) -> Iterator[dict[str, dict[str, Any]]]:
    """The hook's RBAC created for real, by kind (for questions about its permissions)."""
    objects = {obj["kind"]: obj for obj in render_hook(cluster, release)}
    rbac = [objects[kind] for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    cluster.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        yield objects
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "-f", "-", stdin=manifest, check=False)


def test_the_hook_job_labels_the_pods_that_were_already_running(
    cluster: Cluster, restore_release: Release, namespace: str
) -> None:
    release = restore_release
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}=true")
    for name in ("first", "second"):
        cluster.create_pod(namespace, name=name, labels={"app": "shop"})
    before = cluster.ready_pods(namespace, 2)
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}-")
    assert all(p["metadata"]["labels"] == {"app": "shop"} for p in before)

    # helm runs the post-upgrade hook and waits for its Job to complete.
    upgrade(cluster, release, "backfill.onInstall=true")

    after = cluster.get("pods", "-n", namespace)["items"]
    assert sorted(p["metadata"]["name"] for p in after) == ["first", "second"]
    for pod in after:
        assert pod["metadata"]["labels"] == {"app": "shop", **release.original_labels}
        assert pod["status"]["phase"] == "Running"  # labelled in place, not recreated


def test_the_hook_job_and_its_permissions_are_gone_once_it_succeeded(
    cluster: Cluster, restore_release: Release
) -> None:
    release = restore_release
    objects = render_hook(cluster, release)
    upgrade(cluster, release, "backfill.onInstall=true")

    left = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in objects
        if cluster.exists(
            obj["kind"], obj["metadata"]["name"], "-n", obj["metadata"].get("namespace", "default")
        )
    ]

    assert left == []


def test_the_jobs_account_cannot_read_secrets(
    cluster: Cluster, release: Release, hook: dict[str, Any]
) -> None:
    account = hook["ServiceAccount"]["metadata"]["name"]
    who = f"system:serviceaccount:{release.namespace}:{account}"

    allowed = cluster.kubectl(
        "auth", "can-i", "get", "secrets", "-A", "--as", who, check=False
    ).stdout.strip()

    assert allowed == "no"
