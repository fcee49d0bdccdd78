"""A real Prometheus that scrapes the webhook's Pods as the chart's ServiceMonitor
tells the Prometheus Operator to, and evaluates the chart's own alerting rules.

There is no Operator here (its CRDs and controller are a cluster of their own), so
this writes by hand the scrape configuration the Operator generates from the
ServiceMonitor: discover the EndpointSlices of the Services in the release namespace
that carry the chart's selector labels, keep the port named `metrics`, and label each
target with `namespace`, `service`, `pod` and `job` (the Service's name: the
ServiceMonitor sets no jobLabel). The rules are the chart's PrometheusRule, rendered
from the release's own values. Prometheus runs on the host and reaches the Pods on the
node's bridge.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from typing import Any

import yaml

from localcp import kube, procs
from localcp.layout import BIN, FILES, RELEASE, RELEASE_NAMESPACE, ROOT

ADDRESS = "127.0.0.1:9090"
DATA = FILES.root / "prometheus"
URL = f"http://{ADDRESS}"
# Short, so that a test sees a change within seconds; the chart's default is 30s.
SCRAPE_INTERVAL = "5s"


def _relabel(source: str, target: str) -> dict[str, Any]:
    return {"source_labels": [source], "target_label": target}


def _keep(source: str, value: str) -> dict[str, Any]:
    return {"source_labels": [source], "regex": value, "action": "keep"}


def scrape_config(selector_labels: dict[str, str]) -> dict[str, Any]:
    """What the Operator generates for the chart's ServiceMonitor (one endpoint)."""
    keep_selected = [
        _keep(f"__meta_kubernetes_service_label_{_label_name(key)}", value)
        for key, value in sorted(selector_labels.items())
    ]
    return {
        "job_name": f"serviceMonitor/{RELEASE_NAMESPACE}/{RELEASE}-pod-labeler/0",
        "metrics_path": "/metrics",
        "scheme": "http",
        "scrape_interval": SCRAPE_INTERVAL,
        "kubernetes_sd_configs": [
            {
                "role": "endpointslice",
                "kubeconfig_file": str(FILES.kubeconfig),
                "namespaces": {"names": [RELEASE_NAMESPACE]},
            }
        ],
        "relabel_configs": [
            *keep_selected,
            _keep("__meta_kubernetes_endpointslice_port_name", "metrics"),
            _relabel("__meta_kubernetes_namespace", "namespace"),
            _relabel("__meta_kubernetes_service_name", "service"),
            _relabel("__meta_kubernetes_pod_name", "pod"),
            _relabel("__meta_kubernetes_service_name", "job"),
            _relabel("__meta_kubernetes_endpointslice_port_name", "endpoint"),
        ],
    }


def _label_name(key: str) -> str:
    """Prometheus's name for a Kubernetes label in discovery meta labels."""
    return "".join(c if c.isalnum() else "_" for c in key)


def _rendered(values: dict[str, Any], *sets: str) -> list[dict[str, Any]]:
    """The chart rendered with the release's values, the PrometheusRule switched on."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(values, file)
        file.flush()
        out = kube.helm(
            "template", RELEASE, str(ROOT / "chart"), "-n", RELEASE_NAMESPACE,
            "-f", file.name, "--set", "metrics.prometheusRule.enabled=true",
            *(arg for s in sets for arg in ("--set", s)),
        )  # fmt: skip
    return [obj for obj in yaml.safe_load_all(out) if obj]


def write_config() -> None:
    values = json.loads(kube.helm("get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json"))
    objects = _rendered(values or {})
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    (service,) = [
        obj for obj in objects if obj["kind"] == "Service" and obj["spec"].get("selector")
    ]
    rules = FILES.config / "prometheus-rules.yaml"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [scrape_config(service["spec"]["selector"])],
    }
    (FILES.config / "prometheus.yaml").write_text(yaml.safe_dump(config))


def _ready() -> bool:
    with urllib.request.urlopen(f"{URL}/-/ready", timeout=2) as response:
        return bool(response.status == 200)


def start() -> None:
    write_config()
    procs.start(
        "prometheus",
        [
            str(BIN / "prometheus"),
            f"--config.file={FILES.config / 'prometheus.yaml'}",
            f"--storage.tsdb.path={DATA}",
            f"--web.listen-address={ADDRESS}",
            # POST /-/reload: a test re-renders the rules (a shorter `for`) and reloads.
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
        ],
    )
    procs.wait_until("prometheus", _ready, 60, "Prometheus /-/ready")
