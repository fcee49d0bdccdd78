"""The chart's release under test, and changing it the way an operator would: helm
upgrade, scale, restore. Every change waits until the cluster really behaves the
new way, not just until helm returns."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.cluster import CHART, Cluster, wait_for

RELEASE = os.environ.get("E2E_RELEASE", "webhook")
RELEASE_NAMESPACE = os.environ.get("E2E_RELEASE_NAMESPACE", "pod-labeler")
READY_TIMEOUT = 180.0
# After a rollout, the API server may still reach an old replica for a moment (its
# endpoint cache lags the EndpointSlice); this many labelled Pods in a row show
# that every replica it can reach behaves the new way.
IN_A_ROW = 6


@dataclass(frozen=True)
class Release:
    """The release as the session found it: the values it was installed with (to put
    it back) and the values in effect, defaults included (to know what it does), so
    the suite runs against an install with any label."""

    name: str
    namespace: str
    original_values: dict[str, Any]
    computed_values: dict[str, Any]

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"

    @property
    def label_key(self) -> str:
        return str(self.computed_values["label"]["key"])

    @property
    def label_value(self) -> str:
        return str(self.computed_values["label"]["value"])

    @property
    def other_value(self) -> str:
        """A valid label value that is not the release's."""
        return "staging" if self.label_value != "staging" else "testing"

    @property
    def original_labels(self) -> dict[str, str]:
        extra = self.computed_values.get("extraLabels") or {}
        return {self.label_key: self.label_value, **{k: str(v) for k, v in extra.items()}}

    @property
    def opt_out_label(self) -> str:
        return str(self.computed_values["webhook"]["optOutLabel"])

    @property
    def replicas(self) -> int:
        return int(self.computed_values["replicaCount"])


def find_release(cluster: Cluster) -> Release:
    status = cluster.helm("status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json", check=False)
    assert status.stdout, (
        f"release {RELEASE} not found in namespace {RELEASE_NAMESPACE}: "
        "run `make up` (or install the chart on your cluster) first"
    )

    def values(*all_: str) -> dict[str, Any]:
        got = cluster.helm("get", "values", RELEASE, "-n", RELEASE_NAMESPACE, *all_, "-o", "json")
        return dict(got.json() or {})

    return Release(RELEASE, RELEASE_NAMESPACE, values(), values("--all"))


def webhook_configuration(cluster: Cluster, release: Release) -> dict[str, Any]:
    """The release's one MutatingWebhookConfiguration, as it is live."""
    configurations = cluster.get("mutatingwebhookconfigurations", "-l", release.selector)["items"]
    assert len(configurations) == 1, f"expected one webhook configuration for {release.name}"
    configuration: dict[str, Any] = configurations[0]
    return configuration


def serving_certificate_of(configuration: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the Certificate whose CA cainjector puts in the caBundle."""
    ca_from = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, _, name = ca_from.partition("/")
    return namespace, name


def carries(pod: dict[str, Any] | None, expected: dict[str, str]) -> bool:
    labels = (pod or {}).get("metadata", {}).get("labels") or {}
    return pod is not None and all(labels.get(k) == v for k, v in expected.items())


def render(
    cluster: Cluster, release: Release, *sets: str, templates: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """`helm template` of the chart with the release's own values and `sets`; only the
    named `templates` (file names under templates/) when given."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values:
        json.dump(release.original_values, values)
        values.flush()
        args = [arg for s in sets for arg in ("--set", s)]
        args += [arg for name in templates for arg in ("-s", f"templates/{name}")]
        out = cluster.helm(
            "template", release.name, str(CHART), "-n", release.namespace, "-f", values.name, *args
        ).stdout
    return [obj for obj in yaml.safe_load_all(out) if obj]


def wait_until_labelled(cluster: Cluster, namespace: str, expected: dict[str, str]) -> None:
    """Until IN_A_ROW dry-run Pods in `namespace` all come back carrying `expected`."""

    def all_labelled() -> bool:
        return all(carries(cluster.try_create_pod(namespace)[0], expected) for _ in range(IN_A_ROW))

    wait_for(all_labelled, READY_TIMEOUT, f"{IN_A_ROW} dry-run Pods in a row labelled {expected}")


def wait_for_rollout(cluster: Cluster, release: Release) -> None:
    """Until the webhook Deployment (if the release has one) runs only its new Pods."""
    names = cluster.kubectl(
        "get", "deployment", "-n", release.namespace, "-l", release.selector, "-o", "name"
    ).stdout.split()
    for name in names:
        cluster.kubectl(
            "rollout", "status", name, "-n", release.namespace, f"--timeout={READY_TIMEOUT:.0f}s"
        )


def upgrade(cluster: Cluster, release: Release, *sets: str) -> None:
    args = [arg for s in sets for arg in ("--set", s)]
    cluster.helm(
        "upgrade", release.name, str(CHART), "-n", release.namespace, "--reuse-values", *args
    )
    wait_for_rollout(cluster, release)


def scale(cluster: Cluster, release: Release, replicas: int) -> None:
    cluster.kubectl(
        "scale",
        "deployment",
        "-n",
        release.namespace,
        "-l",
        release.selector,
        f"--replicas={replicas}",
    )


def restore(cluster: Cluster, release: Release) -> None:
    """Put the release back as the session found it, installed and labelling Pods."""
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
    scale(cluster, release, release.replicas)
    wait_for_rollout(cluster, release)
    with cluster.fresh_namespace("e2e-restore") as probe:
        wait_until_labelled(cluster, probe, release.original_labels)
