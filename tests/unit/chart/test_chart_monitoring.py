"""metrics.serviceMonitor, metrics.prometheusRule and metrics.dashboard: what Prometheus
scrapes, what it alerts on, what Grafana shows, and that every series they name is one the
server really exports (its Metrics registry) or Prometheus's own `up`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.metrics import Metrics
from tests.promql import PROMETHEUS_SERIES, series_in

EVERYTHING_ON = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
)
SELECTOR = {"app.kubernetes.io/name": "pod-labeler", "app.kubernetes.io/instance": "webhook"}
# What each metric type exports in the text format, after its family name.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def exported_series() -> set[str]:
    """Every series name the server's registry can export, labelled children or not."""
    registry = CollectorRegistry()
    Metrics(registry)
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def alert_rules(manifests: Any) -> dict[str, dict[str, Any]]:
    (group,) = manifests.one("PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def dashboard(manifests: Any) -> dict[str, Any]:
    configmap = manifests.get("ConfigMap", "webhook-pod-labeler-dashboard")
    loaded: dict[str, Any] = json.loads(configmap["data"]["pod-labeler.json"])
    return loaded


def panel_queries(board: dict[str, Any]) -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in board["panels"]}


def variable_queries(board: dict[str, Any]) -> list[str]:
    """The series inside each `label_values(series, label)` of the dashboard's variables."""
    found = []
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), *\w+\)", variable["query"]["query"])
            assert match, variable["query"]
            found.append(match[1])
    return found


@pytest.fixture(scope="module")
def everything(render) -> Any:
    return render(*EVERYTHING_ON)


# --- what the test checks against ---------------------------------------------------


def test_the_registry_exports_the_review_histogram_and_the_certificate_expiry():
    assert {
        "pod_labeler_review_duration_seconds_bucket",
        "pod_labeler_reviews_total",
        "pod_labeler_certificate_expiry_timestamp_seconds",
    } <= exported_series()


def test_series_are_read_from_the_parse_tree_not_from_label_names_or_functions():
    expression = (
        'sum by (outcome) (rate(a_total{job="up"}[5m])) / ignoring(x) b '
        "or absent(up == 1) > histogram_quantile(0.5, rate(c_bucket[$__rate_interval]))"
    )
    assert series_in(expression) == {"a_total", "b", "up", "c_bucket"}


# --- the ServiceMonitor -------------------------------------------------------------


def test_nothing_for_prometheus_or_grafana_by_default(render):
    manifests = render()

    assert manifests.of_kind("ServiceMonitor") == []
    assert manifests.of_kind("PrometheusRule") == []
    assert manifests.of_kind("ConfigMap") == []


def test_the_service_monitor_scrapes_the_metrics_port_of_the_service_over_http(everything):
    monitor = everything.one("ServiceMonitor")
    service = everything.one("Service")

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert SELECTOR.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["pod-labeler"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_the_service_monitor_takes_its_interval_and_extra_labels(render):
    monitor = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.interval=1m",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    ).one("ServiceMonitor")

    assert monitor["spec"]["endpoints"][0]["interval"] == "1m"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == "webhook"


def test_a_bad_scrape_interval_fails_naming_the_field(render_error):
    message = render_error("metrics.serviceMonitor.interval=soon")

    assert "at '/metrics/serviceMonitor/interval'" in message


def test_policy_mode_has_nothing_to_scrape_or_show(render, policy_api):
    manifests = render("mode=policy", *EVERYTHING_ON, api_versions=policy_api)

    assert {obj["kind"] for obj in manifests} == {
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    }


# --- the PrometheusRule -------------------------------------------------------------


def test_the_rule_alerts_on_expiry_errors_and_absence(everything):
    assert set(alert_rules(everything)) == {
        "PodLabelerCertificateExpiresSoon",
        "PodLabelerReviewErrors",
        "PodLabelerDown",
    }


def test_the_certificate_alert_fires_under_7_days_before_expiry(everything):
    rule = alert_rules(everything)["PodLabelerCertificateExpiresSoon"]

    assert "pod_labeler_certificate_expiry_timestamp_seconds" in series_in(rule["expr"])
    assert rule["expr"].endswith("- time() < 7 * 24 * 3600")


def test_the_error_alert_needs_10_minutes_of_reviews_answered_with_errors(everything):
    rule = alert_rules(everything)["PodLabelerReviewErrors"]

    assert rule["for"] == "10m"
    assert series_in(rule["expr"]) == {"pod_labeler_reviews_total"}
    assert 'outcome=~"error|invalid"' in rule["expr"]


def test_the_down_alert_fires_when_no_replica_has_been_scraped_for_5_minutes(everything):
    rule = alert_rules(everything)["PodLabelerDown"]

    assert rule["for"] == "5m"
    assert rule["expr"] == 'absent(up{job="webhook-pod-labeler",namespace="pod-labeler"} == 1)'


def test_every_alert_selects_the_job_the_service_monitor_gives_its_targets(everything):
    # Without a jobLabel, the Prometheus Operator names the job after the Service.
    service = everything.one("Service")["metadata"]["name"]
    assert "jobLabel" not in everything.one("ServiceMonitor")["spec"]
    for rule in alert_rules(everything).values():
        assert f'job="{service}",namespace="pod-labeler"' in rule["expr"]


def test_every_alert_has_a_summary_and_a_description_naming_what_to_check(everything):
    for name, rule in alert_rules(everything).items():
        assert rule["annotations"]["summary"], name
        assert "Check" in rule["annotations"]["description"], name
        assert "kubectl -n pod-labeler" in rule["annotations"]["description"], name


def test_the_certificate_alert_names_the_certificate_to_describe(everything):
    rule = alert_rules(everything)["PodLabelerCertificateExpiresSoon"]

    assert "describe certificate webhook-pod-labeler-tls" in rule["annotations"]["description"]


def test_prometheus_templates_in_the_descriptions_reach_prometheus_unrendered(everything):
    description = alert_rules(everything)["PodLabelerCertificateExpiresSoon"]["annotations"]
    assert "{{ $value | humanizeDuration }}" in description["description"]


def test_alerts_are_critical_when_a_failing_webhook_refuses_pods(render):
    fail = alert_rules(render("metrics.prometheusRule.enabled=true"))
    ignore = alert_rules(
        render("metrics.prometheusRule.enabled=true", "webhook.failurePolicy=Ignore")
    )

    assert fail["PodLabelerDown"]["labels"]["severity"] == "critical"
    assert ignore["PodLabelerDown"]["labels"]["severity"] == "warning"


def test_alert_labels_and_rule_labels_are_added(render):
    manifests = render(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "metrics.prometheusRule.alertLabels.team=platform",
    )

    assert manifests.one("PrometheusRule")["metadata"]["labels"]["release"] == (
        "kube-prometheus-stack"
    )
    for rule in alert_rules(manifests).values():
        assert rule["labels"]["team"] == "platform"


# --- the dashboard ------------------------------------------------------------------


def test_the_dashboard_configmap_carries_the_grafana_sidecar_label(everything):
    configmap = everything.get("ConfigMap", "webhook-pod-labeler-dashboard")

    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_sidecar_label_is_configurable(render):
    configmap = render(
        "metrics.dashboard.enabled=true",
        "metrics.dashboard.label=dashboards",
        "metrics.dashboard.labelValue=pod-labeler",
        "metrics.dashboard.annotations.grafana_folder=Platform",
    ).get("ConfigMap", "webhook-pod-labeler-dashboard")

    assert configmap["metadata"]["labels"]["dashboards"] == "pod-labeler"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Platform"}


def test_the_dashboard_has_the_panels_the_issue_asks_for(everything):
    queries = panel_queries(dashboard(everything))

    assert set(queries) == {
        "Reviews/s by outcome",
        "Review latency",
        "Labels set and overwritten /s",
        "Certificate expires in",
        "Replicas up",
    }
    assert "sum by (outcome)" in queries["Reviews/s by outcome"][0]
    assert [q.split(",")[0] for q in queries["Review latency"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
    ]
    assert series_in(" + ".join(queries["Labels set and overwritten /s"])) == {
        "pod_labeler_labels_set_total",
        "pod_labeler_labels_overwritten_total",
    }
    assert series_in(queries["Replicas up"][0]) == {"up"}


def test_every_panel_query_parses_and_selects_the_dashboard_job(everything):
    for title, queries in panel_queries(dashboard(everything)).items():
        for query in queries:
            assert series_in(query), title
            assert 'namespace="$namespace",job="$job"' in query, title


# --- every series is real -----------------------------------------------------------


def test_every_series_the_alerts_name_is_exported_by_the_server(everything):
    known = exported_series() | PROMETHEUS_SERIES
    named = {name for rule in alert_rules(everything).values() for name in series_in(rule["expr"])}

    assert named
    assert named - known == set()


def test_every_series_the_dashboard_queries_is_exported_by_the_server(everything):
    board = dashboard(everything)
    queries = [q for qs in panel_queries(board).values() for q in qs] + variable_queries(board)
    named = {name for query in queries for name in series_in(query)}

    assert named
    assert named - (exported_series() | PROMETHEUS_SERIES) == set()
