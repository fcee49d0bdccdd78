"""The local Prometheus scrapes what the chart's ServiceMonitor selects, labelled as the
Prometheus Operator labels it, so that the chart's alerts (which select `job` and
`namespace`) read the same series there as on a cluster with the Operator."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from localcp.layout import RELEASE, RELEASE_NAMESPACE
from localcp.prometheus import scrape_config
from tests.unit.tooling import ROOT, find_helm


@pytest.fixture(scope="module")
def service_monitor() -> dict[str, Any]:
    rendered = subprocess.run(
        [
            find_helm(), "template", RELEASE, str(ROOT / "chart"), "-n", RELEASE_NAMESPACE,
            "--set", "metrics.serviceMonitor.enabled=true",
            "-s", "templates/servicemonitor.yaml",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[str, Any] = yaml.safe_load(rendered)
    return found


@pytest.fixture(scope="module")
def config(service_monitor: dict[str, Any]) -> dict[str, Any]:
    return scrape_config(service_monitor["spec"]["selector"]["matchLabels"])


def kept(config: dict[str, Any]) -> dict[str, str]:
    return {
        rule["source_labels"][0]: rule["regex"]
        for rule in config["relabel_configs"]
        if rule.get("action") == "keep"
    }


def target_label(config: dict[str, Any], target: str) -> str:
    (rule,) = [r for r in config["relabel_configs"] if r.get("target_label") == target]
    source: str = rule["source_labels"][0]
    return source


def test_only_services_with_the_service_monitors_selector_labels_are_scraped(
    service_monitor: dict[str, Any], config: dict[str, Any]
) -> None:
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    expected = {
        f"__meta_kubernetes_service_label_{key.replace('.', '_').replace('/', '_')}": value
        for key, value in selector.items()
    }

    assert expected.items() <= kept(config).items()


def test_only_the_service_monitors_port_is_scraped(
    service_monitor: dict[str, Any], config: dict[str, Any]
) -> None:
    (endpoint,) = service_monitor["spec"]["endpoints"]

    assert kept(config)["__meta_kubernetes_endpointslice_port_name"] == endpoint["port"]


def test_the_path_and_scheme_are_the_service_monitors(
    service_monitor: dict[str, Any], config: dict[str, Any]
) -> None:
    (endpoint,) = service_monitor["spec"]["endpoints"]

    assert (config["metrics_path"], config["scheme"]) == (endpoint["path"], endpoint["scheme"])


def test_only_the_release_namespace_is_discovered(
    service_monitor: dict[str, Any], config: dict[str, Any]
) -> None:
    (discovery,) = config["kubernetes_sd_configs"]

    assert (
        discovery["namespaces"]["names"]
        == service_monitor["spec"]["namespaceSelector"]["matchNames"]
    )


def test_the_job_is_the_services_name_as_without_a_job_label(config: dict[str, Any]) -> None:
    assert target_label(config, "job") == "__meta_kubernetes_service_name"


@pytest.mark.parametrize(
    ("label", "source"),
    [
        ("namespace", "__meta_kubernetes_namespace"),
        ("pod", "__meta_kubernetes_pod_name"),
        ("service", "__meta_kubernetes_service_name"),
    ],
)
def test_each_target_carries_the_operators_labels(
    config: dict[str, Any], label: str, source: str
) -> None:
    assert target_label(config, label) == source
