"""Fixtures for the e2e suite: the cluster (the one KUBECONFIG names), the installed
release, a fresh namespace per test, and restoring the release after a test that
changes it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.release import RELEASE, RELEASE_NAMESPACE, Release, find_release, restore


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    assert kubeconfig, "KUBECONFIG must name the cluster under test"
    return Cluster(kubeconfig)


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Release:
    return find_release(cluster)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, deleted afterwards; on failure, the events and webhook logs."""
    with cluster.fresh_namespace() as name:
        yield name
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            _print_diagnostics(cluster, name)


@pytest.fixture
def restore_release(cluster: Cluster, release: Release) -> Iterator[Release]:
    """For tests that upgrade, stop or uninstall the release: restore it afterwards."""
    yield release
    restore(cluster, release)


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
