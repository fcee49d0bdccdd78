"""Fixtures for the e2e suite: the cluster (pytest-helm-charts' `kube_cluster`, from
KUBECONFIG), the installed release, a fresh namespace per test, and restoring the
release after a test that changes it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_helm_charts.clusters import Cluster as HelmChartsCluster

from tests.e2e.cluster import CHART, ROOT, Cluster, unique, wait_for

RELEASE = os.environ.get("E2E_RELEASE", "webhook")
RELEASE_NAMESPACE = os.environ.get("E2E_RELEASE_NAMESPACE", "pod-labeler")
READY_TIMEOUT = 180.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass(frozen=True)
class Release:
    """The chart's release under test, and the names of what it created."""

    name: str
    namespace: str
    original_values: dict[str, Any]

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"


@pytest.fixture(scope="module")
def cluster(kube_cluster: HelmChartsCluster) -> Cluster:
    assert kube_cluster.kube_config_path, "KUBECONFIG must name the cluster under test"
    return Cluster(kube_cluster.kube_config_path)


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Release:
    status = cluster.helm("status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json", check=False)
    assert status.stdout, (
        f"release {RELEASE} not found in namespace {RELEASE_NAMESPACE}: "
        "run `make up` (or install the chart on your cluster) first"
    )
    values = cluster.helm("get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").json()
    return Release(RELEASE, RELEASE_NAMESPACE, values or {})


def webhook_labels(cluster: Cluster, namespace: str, key: str, value: str) -> bool:
    pod, _ = cluster.try_create_pod(namespace)
    return pod is not None and pod["metadata"].get("labels", {}).get(key) == value


def wait_until_webhook_labels(cluster: Cluster, namespace: str, key: str, value: str) -> None:
    wait_for(
        lambda: webhook_labels(cluster, namespace, key, value),
        READY_TIMEOUT,
        f"a dry-run Pod in {namespace} to be labelled {key}={value}",
    )


def restore(cluster: Cluster, release: Release) -> None:
    """Put the release back as the session found it, installed and serving."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as values:
        json.dump(release.original_values, values)
    try:
        cluster.helm(
            "upgrade",
            "--install",
            release.name,
            str(CHART),
            "-n",
            release.namespace,
            "--reset-values",
            "-f",
            values.name,
        )
    finally:
        Path(values.name).unlink()
    cluster.kubectl(
        "scale",
        "deployment",
        "-n",
        release.namespace,
        "-l",
        release.selector,
        f"--replicas={release.original_values.get('replicaCount', 2)}",
    )


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, deleted afterwards; on failure, the events and webhook logs."""
    name = unique("e2e")
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: cluster.exists("serviceaccount", "default", "-n", name),
        60,
        f"the default ServiceAccount in {name}",
    )
    yield name
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        _print_diagnostics(cluster, name)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def restore_release(cluster: Cluster, release: Release) -> Iterator[Release]:
    """For tests that upgrade, stop or uninstall the release: restore it afterwards."""
    yield release
    restore(cluster, release)
    probe = unique("e2e-restore")
    cluster.kubectl("create", "namespace", probe)
    try:
        wait_for(lambda: cluster.exists("serviceaccount", "default", "-n", probe), 60, "default SA")
        label = release.original_values.get("label", {})
        wait_until_webhook_labels(
            cluster, probe, label.get("key", "environment"), label.get("value", "production")
        )
    finally:
        cluster.kubectl("delete", "namespace", probe, "--wait=false", check=False)


def _print_diagnostics(cluster: Cluster, namespace: str) -> None:
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False
    )
    print(f"--- events in {namespace} ---\n{events.stdout}{events.stderr}")
    logs = cluster.kubectl(
        "logs",
        "-n",
        RELEASE_NAMESPACE,
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "--tail=40",
        "--prefix",
        check=False,
    )
    print(f"--- webhook logs ---\n{logs.stdout}{logs.stderr}")
    # On the local control plane the "Pods" are processes; their logs are files.
    for path in sorted((ROOT / ".cache" / "run" / "logs").glob("webhook-*.log")):
        print(f"--- {path.name} ---\n" + "\n".join(path.read_text().splitlines()[-40:]))
