"""Reading the webhook server's metrics the way Prometheus does: plain HTTP on the
`metrics` port, here through the API server's proxy so that it works wherever the
tests run. The Service proxy reaches one replica; the Pod proxy reaches each."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import Cluster
from tests.e2e.release import Release, render
from tests.promql import series_in

REVIEWS = "pod_labeler_reviews_total"
# The chart's values that render its alerts and its dashboard.
ALERTS_AND_DASHBOARD = ("metrics.prometheusRule.enabled=true", "metrics.dashboard.enabled=true")
OVERWRITTEN = "pod_labeler_labels_overwritten_total"


def alert_expressions(objects: list[dict[str, Any]]) -> list[str]:
    rules = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    return [r["expr"] for rule in rules for g in rule["spec"]["groups"] for r in g["rules"]]


def panel_expressions(objects: list[dict[str, Any]]) -> list[str]:
    boards = [
        json.loads(board)
        for obj in objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-dashboard")
        for board in obj["data"].values()
    ]
    return [t["expr"] for board in boards for panel in board["panels"] for t in panel["targets"]]


def series_the_chart_reads(cluster: Cluster, release: Release) -> set[str]:
    """Every series the chart's alerts and dashboard read, as the release renders them,
    less one the release never counts (overwrites, with `overwrite: false`)."""
    objects = render(cluster, release, *ALERTS_AND_DASHBOARD)
    expressions = alert_expressions(objects) + panel_expressions(objects)
    assert expressions, "the chart rendered no alert or dashboard query"
    names = {name for expression in expressions for name in series_in(expression)}
    if not release.computed_values["overwrite"]:
        names.discard(OVERWRITTEN)
    return names


def samples(text: str) -> dict[str, float]:
    """Each sample name in a scrape, with its values summed over their label sets."""
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return dict(totals)


def service(cluster: Cluster, release: Release) -> str:
    (found,) = cluster.get("services", "-n", release.namespace, "-l", release.selector)["items"]
    return str(found["metadata"]["name"])


def through_service(cluster: Cluster, release: Release, path: str = "/metrics") -> str:
    """GET `path` on the Service's `metrics` port over plain HTTP (one replica answers)."""
    name = service(cluster, release)
    proxy = f"/api/v1/namespaces/{release.namespace}/services/http:{name}:metrics/proxy{path}"
    return cluster.kubectl("get", "--raw", proxy).stdout


def per_replica(cluster: Cluster, release: Release) -> dict[str, dict[str, float]]:
    """{Pod name: its samples}, for every ready webhook replica, each on its metrics port."""
    pods = cluster.get("pods", "-n", release.namespace, "-l", release.selector)["items"]
    scraped = {}
    for pod in pods:
        if not _ready(pod) or pod["metadata"].get("deletionTimestamp"):
            continue
        (container,) = pod["spec"]["containers"]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
        name = pod["metadata"]["name"]
        proxy = f"/api/v1/namespaces/{release.namespace}/pods/http:{name}:{port}/proxy/metrics"
        scraped[name] = samples(cluster.kubectl("get", "--raw", proxy).stdout)
    return scraped


def reviews_answered(cluster: Cluster, release: Release) -> float:
    """Reviews answered so far, over every outcome and every ready replica."""
    return sum(replica.get(REVIEWS, 0.0) for replica in per_replica(cluster, release).values())


def _ready(pod: dict[str, object]) -> bool:
    status = pod.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
