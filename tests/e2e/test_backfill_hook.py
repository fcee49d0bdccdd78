"""The chart's backfill hook Job (backfill.onInstall), short of running its Pod: the
local control plane has no kubelet to run a Job, so this runs the Job's exact command
line under the Job's own ServiceAccount. Exercises: kube-apiserver's validation of the
hook's objects, its RBAC authorizer against the chart's ClusterRole (list namespaces;
list, get and patch Pods: nothing else), and a TokenRequest for that account."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import CHART, ROOT, Cluster
from tests.e2e.release import Release

HOOK_TEMPLATES = (
    "backfill-serviceaccount.yaml",
    "backfill-clusterrole.yaml",
    "backfill-clusterrolebinding.yaml",
    "backfill-job.yaml",
)


def render_hook(cluster: Cluster, release: Release) -> list[dict[str, Any]]:
    """The hook's objects, rendered from the release's own values."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values:
        json.dump(release.original_values, values)
        values.flush()
        shown = [arg for name in HOOK_TEMPLATES for arg in ("-s", f"templates/{name}")]
        rendered = cluster.helm(
            "template", release.name, str(CHART), "-n", release.namespace,
            "-f", values.name, "--set", "backfill.onInstall=true", *shown,
        ).stdout  # fmt: skip
    return [obj for obj in yaml.safe_load_all(rendered) if obj]


@pytest.fixture(scope="module")
def hook(cluster: Cluster, release: Release) -> Iterator[dict[str, dict[str, Any]]]:
    """The hook's RBAC created for real (the Job only server-side dry run), by kind."""
    objects = {obj["kind"]: obj for obj in render_hook(cluster, release)}
    rbac = [objects[kind] for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    cluster.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        yield objects
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "-f", "-", stdin=manifest, check=False)


def kubeconfig_as(cluster: Cluster, release: Release, account: str, directory: Path) -> Path:
    """The cluster's kubeconfig with a token of `account` instead of the admin's."""
    token = cluster.kubectl("create", "token", account, "-n", release.namespace).stdout.strip()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_api_server_accepts_the_hook_job(cluster: Cluster, hook: dict[str, Any]) -> None:
    job = json.dumps(hook["Job"])

    cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=job)


def test_the_jobs_command_labels_the_pods_with_only_the_jobs_own_permissions(
    cluster: Cluster,
    release: Release,
    hook: dict[str, Any],
    namespace: str,
    tmp_path: Path,
) -> None:
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}=true")
    for name in ("first", "second"):
        cluster.create_pod(namespace, name=name, labels={"app": "shop"})
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}-")
    (container,) = hook["Job"]["spec"]["template"]["spec"]["containers"]
    account = hook["ServiceAccount"]["metadata"]["name"]
    config = kubeconfig_as(cluster, release, account, tmp_path)

    # The Job's command, limited to this test's namespace, as the Job's ServiceAccount.
    command = [*container["command"][1:], *container["args"], "--in", namespace]
    ran = subprocess.run(
        [sys.executable, *command, "--kubeconfig", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "patched 2," in ran.stdout
    pods = cluster.get("pods", "-n", namespace)["items"]
    for pod in pods:
        assert pod["metadata"]["labels"] == {"app": "shop", **release.original_labels}


def test_the_jobs_account_cannot_read_secrets(
    cluster: Cluster, release: Release, hook: dict[str, Any]
) -> None:
    account = hook["ServiceAccount"]["metadata"]["name"]
    who = f"system:serviceaccount:{release.namespace}:{account}"

    allowed = cluster.kubectl(
        "auth", "can-i", "get", "secrets", "-A", "--as", who, check=False
    ).stdout.strip()

    assert allowed == "no"
