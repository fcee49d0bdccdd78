"""The chart's alerts and dashboard against a real Prometheus that scrapes the real
webhook Pods the way the chart's ServiceMonitor selects them (`make up` starts it).

Exercises: Prometheus's Kubernetes discovery (EndpointSlices through the API server),
its scrapes of each replica's `metrics` port, and its rule evaluation of the chart's
PrometheusRule, re-rendered here with a shorter `for` through the chart's values
(never its defaults) and loaded with Prometheus's /-/reload.

Only where that Prometheus runs (the local cluster): elsewhere these tests skip.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import metrics
from tests.e2e.cluster import Cluster, wait_for
from tests.e2e.release import Release, render, restore, scale

PROMETHEUS_URL = os.environ.get("E2E_PROMETHEUS_URL", "http://127.0.0.1:9090")
# The local Prometheus scrapes and evaluates every 5 s.
INTERVAL = 5.0
SHORT_DOWN_FOR = "20s"
DOWN_ALERT = "PodLabelerDown"


def api(path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{PROMETHEUS_URL}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body.startswith(b"{") else body


def query(expression: str) -> list[dict[str, Any]]:
    result = api(f"/api/v1/query?query={urllib.parse.quote(expression)}")
    assert result["status"] == "success", result
    found: list[dict[str, Any]] = result["data"]["result"]
    return found


@pytest.fixture(scope="module")
def prometheus() -> str:
    try:
        api("/-/ready")
    except OSError:
        pytest.skip(f"no Prometheus at {PROMETHEUS_URL} (it runs on the local cluster)")
    return PROMETHEUS_URL


def load_rules(cluster: Cluster, release: Release, *sets: str) -> None:
    """Write the re-rendered rules where Prometheus reads them, and reload it."""
    config = yaml.safe_load(api("/api/v1/status/config")["data"]["yaml"])
    (rules_file,) = config["rule_files"]
    objects = render(cluster, release, *metrics.ALERTS_AND_DASHBOARD, *sets)
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    Path(rules_file).write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    api("/-/reload", method="POST")


def test_every_series_the_alerts_and_the_dashboard_read_has_data_once_pods_were_created(
    cluster: Cluster, release: Release, namespace: str, prometheus: str
) -> None:
    cluster.create_pod(namespace)
    cluster.create_pod(namespace, labels={release.label_key: release.other_value})  # overwritten
    names = metrics.series_the_chart_reads(cluster, release)
    matchers = f'job="{metrics.service(cluster, release)}",namespace="{release.namespace}"'

    def without_data() -> list[str]:
        return sorted(n for n in names if not query(f'{{__name__="{n}",{matchers}}}'))

    wait_for(lambda: not without_data(), 60, f"data for every series: {names}")


@pytest.fixture
def short_down_alert(
    cluster: Cluster, restore_release: Release, prometheus: str
) -> Iterator[Release]:
    load_rules(cluster, restore_release, f"metrics.prometheusRule.pendingFor.down={SHORT_DOWN_FOR}")
    try:
        yield restore_release
    finally:
        restore(cluster, restore_release)
        load_rules(cluster, restore_release)


def _down_alert_state() -> str | None:
    alerts = query(f'ALERTS{{alertname="{DOWN_ALERT}"}}')
    return alerts[0]["metric"]["alertstate"] if alerts else None


def test_no_replica_fires_the_down_alert_within_its_for_window_and_back_resolves_it(
    cluster: Cluster, short_down_alert: Release
) -> None:
    release = short_down_alert
    assert _down_alert_state() is None

    scale(cluster, release, 0)
    started = time.monotonic()
    # The targets go when the Pods do; then `for`, give or take a scrape and an evaluation.
    window = 20 + 4 * INTERVAL + 50  # the Pods' own termination (drain) is in it too
    wait_for(lambda: _down_alert_state() == "firing", window, f"{DOWN_ALERT} firing")
    assert time.monotonic() - started >= 20  # not before its `for`

    scale(cluster, release, release.replicas)
    wait_for(lambda: _down_alert_state() is None, 120, f"{DOWN_ALERT} resolved")
