"""`helm uninstall` leaves nothing of the release behind, in either mode, and `helm
upgrade` never wipes the certificates cert-manager wrote. Exercises: helm's three-way
merge and its deletion of the Secrets the chart declares (cert-manager fills them in but
does not own-reference them), kube-controller-manager's garbage collector (ReplicaSets,
Pods, CertificateRequests), and the API server verifying the webhook's TLS after an
upgrade."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import CHART, Cluster, wait_for
from tests.e2e.release import Release, upgrade, wait_for_rollout, wait_until_labelled

GONE_TIMEOUT = 120.0
# Records of what happened, not objects of the release; they expire on their own.
NOT_OBJECTS = {"events", "events.events.k8s.io"}


def _resource_types(cluster: Cluster, namespaced: bool) -> str:
    names = cluster.kubectl(
        "api-resources", "--verbs=list", f"--namespaced={str(namespaced).lower()}", "-o", "name"
    ).stdout.split()
    return ",".join(name for name in names if name not in NOT_OBJECTS)


def _list(cluster: Cluster, types: str, *args: str) -> list[dict[str, Any]]:
    # check=False: one type that cannot be listed must not hide all the others.
    result = cluster.kubectl("get", types, *args, "-o", "json", check=False)
    assert result.stdout, f"kubectl get {types} {args} printed nothing: {result.stderr}"
    items: list[dict[str, Any]] = result.json()["items"]
    return items


def _release_objects(cluster: Cluster, release: Release) -> set[tuple[str, str]]:
    """(kind, name) of every object in the release's manifest."""
    manifest = cluster.helm("get", "manifest", release.name, "-n", release.namespace).stdout
    return {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(manifest) if doc}


def _belongs_to(obj: dict[str, Any], release: Release, names: set[str]) -> bool:
    """Tied to the release by name (its objects, and what controllers name after them:
    ReplicaSets, Pods, EndpointSlices, CertificateRequests), label, or annotation."""
    metadata = obj["metadata"]
    name = metadata["name"]
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return (
        any(name == ours or name.startswith(f"{ours}-") for ours in names)
        or labels.get("app.kubernetes.io/instance") == release.name
        or (labels.get("owner") == "helm" and labels.get("name") == release.name)
        or annotations.get("meta.helm.sh/release-name") == release.name
        or annotations.get("cert-manager.io/certificate-name") in names
    )


def _what_remains(cluster: Cluster, release: Release, names: set[str]) -> list[str]:
    """Every object, in the release namespace and cluster-wide, that belongs to it."""
    namespaced = _resource_types(cluster, namespaced=True)
    found = _list(cluster, namespaced, "-n", release.namespace)
    found += _list(cluster, _resource_types(cluster, namespaced=False))
    found += _list(cluster, namespaced, "-A", "-l", release.selector)
    return sorted(
        {
            f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
            for obj in found
            if _belongs_to(obj, release, names)
        }
    )


@pytest.mark.parametrize("mode", ["webhook", "policy"])
def test_helm_uninstall_leaves_nothing_of_the_release_in_the_cluster(
    cluster: Cluster, restore_release: Release, mode: str
) -> None:
    release = restore_release
    if mode != release.computed_values["mode"]:
        upgrade(cluster, release, f"mode={mode}")
    objects = _release_objects(cluster, release)
    if mode == "webhook":
        # What the issue found left behind: the serving Secret and the CA's, with its key.
        secrets = {name for kind, name in objects if kind == "Secret"}
        assert len(secrets) == 2, objects
        assert all(cluster.exists("secret", name, "-n", release.namespace) for name in secrets)
    names = {name for _, name in objects}
    assert _what_remains(cluster, release, names), "the scan finds nothing of a live release"

    cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait")

    def nothing_remains() -> bool:
        left = _what_remains(cluster, release, names)
        assert left == [], f"still in the cluster: {left}"
        return True

    wait_for(nothing_remains, GONE_TIMEOUT, f"nothing of release {release.name} to remain")


@pytest.fixture
def chart_of_next_version(tmp_path: Path) -> Path:
    """A copy of the chart under another version: every object's helm.sh/chart label
    changes, so `helm upgrade` patches every object, the Secrets included."""
    copy = tmp_path / "pod-labeler"
    shutil.copytree(CHART, copy)
    chart_yaml = copy / "Chart.yaml"
    meta = yaml.safe_load(chart_yaml.read_text())
    meta["version"] = f"{meta['version']}-e2e.upgrade"
    chart_yaml.write_text(yaml.safe_dump(meta))
    return copy


def test_helm_upgrade_keeps_the_certificates_and_new_pods_are_labelled_over_verified_tls(
    cluster: Cluster, namespace: str, restore_release: Release, chart_of_next_version: Path
) -> None:
    release = restore_release
    assert release.computed_values["mode"] == "webhook", "run against a webhook-mode release"
    secrets = sorted(name for kind, name in _release_objects(cluster, release) if kind == "Secret")
    before = {name: cluster.get("secret", name, "-n", release.namespace) for name in secrets}
    assert all(secret.get("data", {}).get("tls.crt") for secret in before.values())

    cluster.helm(
        "upgrade", release.name, str(chart_of_next_version), "-n", release.namespace,
        "--reuse-values", "--wait",
    )  # fmt: skip
    wait_for_rollout(cluster, release)

    after = {name: cluster.get("secret", name, "-n", release.namespace) for name in secrets}
    for name in secrets:
        # helm did patch the Secret (its chart label), and left cert-manager's data alone.
        assert after[name]["metadata"]["labels"]["helm.sh/chart"].endswith("-e2e.upgrade")
        assert after[name]["data"] == before[name]["data"], f"helm upgrade changed {name}"
    # A Pod the rolled-out webhook labels: the API server verified its certificate
    # against the caBundle (failurePolicy Fail refuses the Pod otherwise).
    wait_until_labelled(cluster, namespace, release.original_labels)
    created, _ = cluster.create_pod(namespace)
    assert release.label_key in created["metadata"]["labels"]
