"""Pod-creation latency on the local control plane: no labelling, policy mode, webhook mode,
and webhook mode for a Pod that already carries the labels.

    make up && python -m bench.modes [--pods 1000]

Creates N Pods with a server-side dry run (the whole admission chain runs,
nothing is stored) over one keep-alive HTTPS connection to kube-apiserver, in
four setups of the same release, one after the other in one run:

- none: a namespace labelled `pod-labeler/skip=true`, which neither mode touches;
- policy: `helm upgrade --set mode=policy` (MutatingAdmissionPolicy, CEL in the API server);
- webhook: `helm upgrade --set mode=webhook` (the API server calls our server over TLS);
- webhook, labelled: the same webhook, for Pods that already carry the release's labels,
  which its matchConditions (webhook.skipLabelledPods) let the API server admit without
  calling it. Expected within noise of "none". It runs in a namespace served by a copy of
  the webhook as helm rendered it (see `skipping_webhook`).

Prints p50/p90/p99 per setup side by side, then puts the release back in the mode
it was in. Asserts nothing: these are figures for the README.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import ssl
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".cache" / "bin"
KUBECONFIG = Path(os.environ.get("KUBECONFIG", ROOT / ".cache" / "run" / "kubeconfig"))
RELEASE, RELEASE_NAMESPACE = "webhook", "pod-labeler"
WARM_UP = 30
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "bench-", "labels": {"app": "bench"}},
    "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
}


def run(*argv: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


class CreateRefusedError(RuntimeError):
    """The API server answered a Pod create with something other than 201."""


class ApiServer:
    """One keep-alive HTTPS connection to kube-apiserver, as the kubeconfig's admin."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.token = config["users"][0]["user"]["token"]
        host_port = cluster["server"].removeprefix("https://")
        host, port = host_port.rsplit(":", 1)
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self.connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)

    def create_pod_dry_run(
        self, namespace: str, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        pod = POD if labels is None else {**POD, "metadata": {**POD["metadata"], "labels": labels}}
        self.connection.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods?dryRun=All",
            body=json.dumps(pod),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        response = self.connection.getresponse()
        body = json.loads(response.read())
        if response.status != 201:
            raise CreateRefusedError(f"create refused ({response.status}): {body.get('message')}")
        return dict(body)


@dataclass(frozen=True)
class Figures:
    setup: str
    latencies_ms: list[float]

    def quantile(self, q: float) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


def measure(
    api: ApiServer, namespace: str, pods: int, setup: str, labels: dict[str, str] | None = None
) -> Figures:
    for _ in range(WARM_UP):
        api.create_pod_dry_run(namespace, labels)
    latencies = []
    for _ in range(pods):
        started = time.perf_counter()
        api.create_pod_dry_run(namespace, labels)
        latencies.append((time.perf_counter() - started) * 1000)
    return Figures(setup, latencies)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def switch_mode(api: ApiServer, mode: str, namespace: str) -> None:
    run(
        str(BIN / "helm"),
        "upgrade",
        RELEASE,
        str(ROOT / "chart"),
        "-n",
        RELEASE_NAMESPACE,
        "--reuse-values",
        "--set",
        f"mode={mode}",
        "--wait",
        "--timeout=3m",
    )
    other = "mutatingwebhookconfigurations" if mode == "policy" else "mutatingadmissionpolicies"

    def only_this_mode_labels() -> bool:
        left = run(
            str(BIN / "kubectl"),
            "get",
            other,
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "-o",
            "name",
        )
        try:
            pod = api.create_pod_dry_run(namespace)
        except CreateRefusedError:
            return False  # e.g. a webhook whose caBundle cainjector has not filled yet
        return "environment" in pod["metadata"]["labels"] and not left.strip()

    wait_for(only_this_mode_labels, f"{mode} mode to label Pods")


def labels_a_pod(api: ApiServer, namespace: str) -> bool:
    try:
        return "environment" in api.create_pod_dry_run(namespace)["metadata"]["labels"]
    except CreateRefusedError:
        return False


def has_default_service_account(namespace: str) -> bool:
    found = run(str(BIN / "kubectl"), "get", "sa", "default", "-n", namespace, "--ignore-not-found")
    return bool(found.strip())


def current_mode() -> str:
    values = json.loads(
        run(str(BIN / "helm"), "get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json")
    )
    return str((values or {}).get("mode", "webhook"))


def already_labelled() -> dict[str, str]:
    """A Pod's labels that need nothing from the release: the bench Pod's own, plus
    every label the release sets, with its value."""
    values = json.loads(
        run(
            str(BIN / "helm"),
            "get",
            "values",
            RELEASE,
            "-n",
            RELEASE_NAMESPACE,
            "--all",
            "-o",
            "json",
        )
    )
    ours = {values["label"]["key"]: str(values["label"]["value"])}
    ours |= {key: str(value) for key, value in (values.get("extraLabels") or {}).items()}
    return {**POD["metadata"]["labels"], **ours}


def skipping_webhook(namespace: str) -> str:
    """Serve `namespace` with a copy of the release's webhook as helm rendered it,
    matchConditions included; returns the copy's name.

    A copy, because cert-manager's cainjector before v1.12 (the local control plane runs
    v1.11.5) rewrites the release's own configuration with a client that predates
    matchConditions and so drops them. The copy has no inject-ca-from annotation and takes
    the injected caBundle as it is. `namespace` must opt out of the release's webhook.
    """
    kubectl = str(BIN / "kubectl")
    manifest = run(str(BIN / "helm"), "get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE)
    (rendered,) = [
        obj
        for obj in yaml.safe_load_all(manifest)
        if obj and obj["kind"] == "MutatingWebhookConfiguration"
    ]
    (webhook,) = rendered["webhooks"]
    if not webhook.get("matchConditions"):
        raise SystemExit("the release renders no matchConditions: set webhook.skipLabelledPods")
    live = json.loads(
        run(
            kubectl,
            "get",
            "mutatingwebhookconfiguration",
            rendered["metadata"]["name"],
            "-o",
            "json",
        )
    )
    name = f"bench-skip-{uuid.uuid4().hex[:5]}"
    webhook |= {
        "name": f"{name}.bench.pod-labeler.test",
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "clientConfig": live["webhooks"][0]["clientConfig"],
    }
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    subprocess.run(
        [kubectl, "create", "-f", "-"],
        input=json.dumps(configuration),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description="Pod-creation latency per labelling mode.")
    parser.add_argument("--pods", type=int, default=1000, help="dry-run creates per setup")
    args = parser.parse_args()

    api = ApiServer(KUBECONFIG)
    kubectl = str(BIN / "kubectl")
    setups = ("none", "labelled", "skipping")
    namespaces = {name: f"bench-{name}-{uuid.uuid4().hex[:5]}" for name in setups}
    for namespace in namespaces.values():
        run(kubectl, "create", "namespace", namespace)
    for name in ("none", "skipping"):
        run(kubectl, "label", "namespace", namespaces[name], "pod-labeler/skip=true")
    for namespace in namespaces.values():
        wait_for(partial(has_default_service_account, namespace), f"the default SA in {namespace}")

    original = current_mode()
    results = []
    try:
        results.append(measure(api, namespaces["none"], args.pods, "none"))
        for mode in ("policy", "webhook"):
            switch_mode(api, mode, namespaces["labelled"])
            results.append(measure(api, namespaces["labelled"], args.pods, mode))
        copy = skipping_webhook(namespaces["skipping"])
        try:
            wait_for(
                partial(labels_a_pod, api, namespaces["skipping"]),
                "the copy of the webhook to label Pods",
            )
            setup = "webhook, labelled"
            labels = already_labelled()
            results.append(measure(api, namespaces["skipping"], args.pods, setup, labels))
        finally:
            run(kubectl, "delete", "mutatingwebhookconfiguration", copy)
    finally:
        if original != "webhook":
            switch_mode(api, original, namespaces["labelled"])
        for namespace in namespaces.values():
            run(kubectl, "delete", "namespace", namespace, "--wait=false")

    print(f"Pod create (server-side dry run), {args.pods} per setup, one keep-alive connection")
    print(f"{'setup':<20}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for figures in results:
        print(
            f"{figures.setup:<20}{figures.quantile(50):>10.2f}{figures.quantile(90):>10.2f}"
            f"{figures.quantile(99):>10.2f}{statistics.fmean(figures.latencies_ms):>10.2f}"
        )


if __name__ == "__main__":
    main()
