"""Running it in production: metrics on a plain-HTTP port of their own, no webhook call
for a Pod already labelled (matchConditions), host networking and a custom port.
Exercises: the API server's matchConditions (CEL) and Service and Pod proxies, the
EndpointSlice controller publishing both ports, and the server's metrics listener."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e import metrics
from tests.e2e.cluster import Cluster, unique, wait_for
from tests.e2e.release import Release, scale, upgrade, wait_until_labelled, webhook_configuration
from tests.e2e.test_modes import CASES
from tests.promql import PROMETHEUS_SERIES

WAIT = 120.0
CHART_CONDITION = "pod-lacks-a-release-label"
# Ports nothing else on a node uses, for the host-network test.
HOST_PORTS = {"https": 18443, "metrics": 18080}


def _labels(pod: dict[str, Any] | None) -> dict[str, str]:
    return dict((pod or {}).get("metadata", {}).get("labels") or {})


# --- metrics ------------------------------------------------------------------------


def test_the_metrics_port_answers_plain_http_through_the_service(
    cluster: Cluster, release: Release
) -> None:
    scraped = metrics.samples(metrics.through_service(cluster, release))

    assert metrics.REVIEWS in scraped
    assert "pod_labeler_certificate_expiry_timestamp_seconds" in scraped


def test_the_admission_port_does_not_serve_metrics(cluster: Cluster, release: Release) -> None:
    name = metrics.service(cluster, release)
    path = f"/api/v1/namespaces/{release.namespace}/services/https:{name}:https/proxy/metrics"

    answer = cluster.kubectl("get", "--raw", path, check=False)

    assert "pod_labeler_reviews_total" not in answer.stdout
    assert "NotFound" in answer.stderr or "404" in answer.stderr, answer.stderr


def test_the_replicas_export_every_series_the_alerts_and_dashboard_read(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    wanted = metrics.series_the_chart_reads(cluster, release) - PROMETHEUS_SERIES

    def exported_by_some_replica() -> set[str] | None:
        # A label set and a label overwritten, so that their counters have samples; the
        # API server picks the replica, so create until every series has shown up.
        cluster.create_pod(namespace, dry_run=True)
        cluster.create_pod(namespace, labels={release.label_key: release.other_value}, dry_run=True)
        seen = {
            name for replica in metrics.per_replica(cluster, release).values() for name in replica
        }
        return None if wanted - seen else seen

    wait_for(exported_by_some_replica, WAIT, f"the webhook replicas to export {sorted(wanted)}")


# --- Pods already labelled skip the webhook -----------------------------------------


def _rendered_webhook(cluster: Cluster, release: Release) -> dict[str, Any]:
    """The webhook as helm rendered it for this cluster (`helm get manifest`)."""
    manifest = cluster.helm("get", "manifest", release.name, "-n", release.namespace).stdout
    (configuration,) = [
        obj
        for obj in yaml.safe_load_all(manifest)
        if obj and obj["kind"] == "MutatingWebhookConfiguration"
    ]
    (webhook,) = configuration["webhooks"]
    return dict(webhook)


def test_helm_renders_the_skip_condition_for_a_cluster_that_serves_match_conditions(
    cluster: Cluster, release: Release
) -> None:
    names = [c["name"] for c in _rendered_webhook(cluster, release).get("matchConditions", [])]

    assert CHART_CONDITION in names, "install with webhook.skipLabelledPods=true"


@pytest.fixture
def skipping_namespace(cluster: Cluster, release: Release, namespace: str) -> Iterator[str]:
    """`namespace`, served by a copy of the release's webhook exactly as helm rendered it,
    matchConditions included, with failurePolicy Fail.

    A copy, because cert-manager's cainjector before v1.12 (the local control plane runs
    v1.11.5) rewrites the release's configuration with a client that predates
    matchConditions, which drops them from the live object; the copy carries no
    inject-ca-from annotation, so it keeps them, and takes the injected caBundle as it is.
    The namespace opts out of the release's own webhook, so that only the copy is called.
    """
    live = webhook_configuration(cluster, release)
    name = unique("e2e-skip")
    webhook = {
        **_rendered_webhook(cluster, release),
        "name": f"{name}.e2e.pod-labeler.test",
        "failurePolicy": "Fail",
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "clientConfig": live["webhooks"][0]["clientConfig"],
    }
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}=true")
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(configuration))
    try:
        assert _match_conditions(cluster, name), "the API server dropped the matchConditions"
        wait_until_labelled(cluster, namespace, release.original_labels)
        yield namespace
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)


def _match_conditions(cluster: Cluster, configuration: str) -> list[dict[str, str]]:
    (webhook,) = cluster.get("mutatingwebhookconfiguration", configuration)["webhooks"]
    return list(webhook.get("matchConditions", []))


def test_a_pod_already_carrying_the_labels_is_admitted_without_a_webhook_call(
    cluster: Cluster, skipping_namespace: str, release: Release
) -> None:
    before = metrics.reviews_answered(cluster, release)

    created, _ = cluster.create_pod(
        skipping_namespace, labels={"app": "x", **release.original_labels}
    )

    assert _labels(created) == {"app": "x", **release.original_labels}
    assert metrics.reviews_answered(cluster, release) == before
    # The counter does move for a Pod that needs the labels: the measure can see a call.
    cluster.create_pod(skipping_namespace, labels={"app": "x"})
    wait_for(
        lambda: metrics.reviews_answered(cluster, release) > before,
        30,
        "the review counter to count the unlabelled Pod's review",
    )


def test_the_shared_case_table_gets_the_same_labels_with_and_without_the_skip_condition(
    cluster: Cluster, skipping_namespace: str, release: Release
) -> None:
    # The modes table, plus a Pod with the release's own labels (the one the condition skips).
    befores = [case.labels for case in CASES] + [{"app": "x", **release.original_labels}]
    with cluster.fresh_namespace("e2e-always") as always_called:
        wait_until_labelled(cluster, always_called, release.original_labels)
        for before in befores:
            called, _ = cluster.create_pod(always_called, labels=before, dry_run=True)
            skipped, _ = cluster.create_pod(skipping_namespace, labels=before, dry_run=True)

            assert _labels(skipped) == _labels(called), before


def test_with_the_webhook_scaled_to_zero_a_labelled_pod_is_admitted_and_an_unlabelled_one_refused(
    cluster: Cluster, skipping_namespace: str, restore_release: Release
) -> None:
    release = restore_release
    scale(cluster, release, 0)

    def refused() -> str | None:
        pod, error = cluster.try_create_pod(skipping_namespace, dry_run=False)
        return error if pod is None else None

    error = wait_for(refused, WAIT, "an unlabelled Pod to be refused once the webhook is down")
    created, _ = cluster.create_pod(skipping_namespace, labels=release.original_labels)

    assert "failed calling webhook" in error
    assert _labels(created) == release.original_labels
    assert cluster.exists("pod", created["metadata"]["name"], "-n", skipping_namespace)


# --- host network and a custom port -------------------------------------------------


def test_on_the_host_network_with_custom_ports_new_pods_are_still_labelled(
    cluster: Cluster, namespace: str, restore_release: Release
) -> None:
    release = restore_release
    # One replica: two replicas on the host network of one node would want the same ports.
    upgrade(
        cluster,
        release,
        "hostNetwork=true",
        f"containerPort={HOST_PORTS['https']}",
        f"metrics.port={HOST_PORTS['metrics']}",
        "replicaCount=1",
    )

    wait_until_labelled(cluster, namespace, release.original_labels)
    created, _ = cluster.create_pod(namespace, labels={"app": "x"})
    assert _labels(created) == {"app": "x", **release.original_labels}

    pods = cluster.get("pods", "-n", release.namespace, "-l", release.selector)["items"]
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]  # the old ones go
    assert pod["spec"]["hostNetwork"] is True
    assert pod["status"]["podIP"] == pod["status"]["hostIP"]
    selector = f"kubernetes.io/service-name={metrics.service(cluster, release)}"

    def published() -> dict[str, int]:
        slices = cluster.get("endpointslices", "-n", release.namespace, "-l", selector)["items"]
        return {port["name"]: port["port"] for s in slices for port in s.get("ports") or []}

    # Until the old Pods are gone, their slice still lists the old ports.
    wait_for(lambda: published() == HOST_PORTS, WAIT, f"EndpointSlices publishing {HOST_PORTS}")
    assert metrics.REVIEWS in metrics.samples(metrics.through_service(cluster, release))
