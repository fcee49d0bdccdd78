"""Pod-creation latency on the local control plane, per labelling setup.

    make up && python -m bench.modes [--pods 1000]

Creates N Pods with a server-side dry run (the whole admission chain runs,
nothing is stored) over one keep-alive HTTPS connection to kube-apiserver, in
each setup below, each in a namespace of its own. The setups that can stand side by
side are measured together, in interleaved rounds, beside their own "no labelling"
baseline, so that a machine that gets slower or faster during the run moves the
baseline with them:

- policy phase:
  - no labelling: a namespace labelled `pod-labeler/skip=true`, which neither mode touches;
  - policy mode: `helm upgrade --set mode=policy` (MutatingAdmissionPolicy, CEL in the
    API server);
- webhook phase:
  - no labelling, again;
  - webhook mode: `helm upgrade --set mode=webhook` (the API server calls our server
    over TLS);
  - webhook, labelled: the same, for Pods that already carry the release's labels,
    which the webhook's matchConditions (webhook.skipLabelledPods) let the API server
    admit without calling it (on a copy of the webhook: see `webhook_labelled`).
    Expected within noise of "no labelling";
  - reference webhook: bench/refwebhook, a minimal Go webhook returning the same
    patch, installed beside ours the same way (cert-manager certificate, cainjector
    caBundle, Service, Pods run by the node's kubelet from its image) for a namespace
    ours skips.

Prints p50/p90/p99 per setup, each setup's p50 over its phase's "no labelling" (what
labelling adds), our webhook's added p50 over the reference's (reported; no longer a
target), and the API server's own timing of each webhook call in the webhook phase (from
its `apiserver_admission_webhook_admission_duration_seconds`): the part of the added
time spent waiting for the webhook's answer, against what the API server spends on
any webhook call. Then puts the release back in the mode it was in. Asserts nothing:
these are figures for the README. hack/install.sh builds the reference's image
(`reference_image`), and `make up` hands it to the node's containerd.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import ssl
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".cache" / "bin"
KUBECONFIG = Path(os.environ.get("KUBECONFIG", ROOT / ".cache" / "run" / "kubeconfig"))
RELEASE, RELEASE_NAMESPACE = "webhook", "pod-labeler"
WARM_UP = 30
# Each phase's creates are made in this many rounds, setups taking turns.
ROUNDS = 5
# The reference webhook's Deployment, Service, Certificate, Secret and configuration.
REFERENCE = "pod-labeler-reference"
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "bench-", "labels": {"app": "bench"}},
    "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
}


def run(*argv: str, stdin: str | None = None) -> str:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env=env, timeout=300, check=False
    )
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

    def get(self, path: str) -> str:
        self.connection.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        response = self.connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status}")
        return text

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


def measure_phase(api: ApiServer, namespaces: dict[Setup, str], pods: int) -> list[Figures]:
    """`pods` creates per setup, in ROUNDS rounds in which the setups take turns."""
    labels = {setup: setup.pod_labels() if setup.pod_labels else None for setup in namespaces}
    latencies: dict[Setup, list[float]] = {setup: [] for setup in namespaces}
    for setup, namespace in namespaces.items():
        for _ in range(WARM_UP):
            api.create_pod_dry_run(namespace, labels[setup])
    for round_ in range(ROUNDS):
        share = pods // ROUNDS + (1 if round_ < pods % ROUNDS else 0)
        for setup, namespace in namespaces.items():
            for _ in range(share):
                started = time.perf_counter()
                api.create_pod_dry_run(namespace, labels[setup])
                latencies[setup].append((time.perf_counter() - started) * 1000)
    return [Figures(setup.name, found) for setup, found in latencies.items()]


WEBHOOK_DURATION = "apiserver_admission_webhook_admission_duration_seconds"


def webhook_call_totals(api: ApiServer) -> dict[str, tuple[float, float]]:
    """Per webhook name: the API server's total seconds waiting on it, and its calls."""
    totals: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(api.get("/metrics")):
        if family.name != WEBHOOK_DURATION:
            continue
        for sample in family.samples:
            seconds, calls = totals.get(sample.labels["name"], (0.0, 0.0))
            if sample.name.endswith("_sum"):
                totals[sample.labels["name"]] = (seconds + sample.value, calls)
            elif sample.name.endswith("_count"):
                totals[sample.labels["name"]] = (seconds, calls + sample.value)
    return totals


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


def has_default_service_account(namespace: str) -> bool:
    found = run(str(BIN / "kubectl"), "get", "sa", "default", "-n", namespace, "--ignore-not-found")
    return bool(found.strip())


def current_mode() -> str:
    values = json.loads(
        run(str(BIN / "helm"), "get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json")
    )
    return str((values or {}).get("mode", "webhook"))


@contextlib.contextmanager
def webhook_cpu_limit(limit: str | None) -> Iterator[None]:
    """Run with the webhook's CPU limit set to `limit` ("none": no CPU limit), then put
    the release's own values back. None: leave the release as it is."""
    if limit is None:
        yield
        return
    helm = str(BIN / "helm")
    original = run(helm, "get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json")
    setting = "null" if limit == "none" else limit
    upgrade = [helm, "upgrade", RELEASE, str(ROOT / "chart"), "-n", RELEASE_NAMESPACE]
    run(*upgrade, "--reuse-values", f"--set=resources.limits.cpu={setting}", "--wait")
    try:
        yield
    finally:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values:
            values.write(original)
            values.flush()
            run(*upgrade, "--reset-values", "-f", values.name, "--wait")


def kubectl_json(*args: str) -> Any:
    return json.loads(run(str(BIN / "kubectl"), *args, "-o", "json"))


class Bench:
    """What every setup needs: the API connection, and namespaces deleted at the end."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.namespaces: list[str] = []

    def namespace(self, setup: str, *, skip: bool = False) -> str:
        """A new namespace to create Pods in; `skip` labels it so the release leaves it alone."""
        name = f"bench-{setup}-{uuid.uuid4().hex[:5]}"
        run(str(BIN / "kubectl"), "create", "namespace", name)
        self.namespaces.append(name)
        if skip:
            run(str(BIN / "kubectl"), "label", "namespace", name, "pod-labeler/skip=true")
        wait_for(partial(has_default_service_account, name), f"the default SA in {name}")
        return name

    def delete_namespaces(self) -> None:
        for name in self.namespaces:
            run(str(BIN / "kubectl"), "delete", "namespace", name, "--wait=false")


# --- setups: each puts the cluster in its state and yields the namespace to measure in ---


@contextlib.contextmanager
def no_labelling(bench: Bench) -> Iterator[str]:
    """A namespace labelled `pod-labeler/skip=true`, which neither mode touches."""
    yield bench.namespace("none", skip=True)


@contextlib.contextmanager
def policy_mode(bench: Bench) -> Iterator[str]:
    namespace = bench.namespace("policy")
    switch_mode(bench.api, "policy", namespace)
    yield namespace


@contextlib.contextmanager
def webhook_mode(bench: Bench) -> Iterator[str]:
    namespace = bench.namespace("webhook")
    switch_mode(bench.api, "webhook", namespace)
    yield namespace


@contextlib.contextmanager
def webhook_labelled(bench: Bench) -> Iterator[str]:
    """Webhook mode, for Pods that already carry the release's labels: the chart's
    matchConditions (webhook.skipLabelledPods) let the API server admit them without
    calling the webhook. Expected within noise of "no labelling".

    Measured in a namespace that ours skips, served by a copy of the release's webhook as
    helm rendered it, matchConditions included: cert-manager's cainjector before v1.12
    (the local control plane runs v1.11.5) rewrites the release's own configuration with a
    client that predates matchConditions, which drops them. The copy has no inject-ca-from
    annotation, so it keeps them, and takes the injected caBundle as it is.
    """
    namespace = bench.namespace("labelled", skip=True)
    if current_mode() != "webhook":
        switch_mode(bench.api, "webhook", bench.namespace("webhook"))
    manifest = run(str(BIN / "helm"), "get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE)
    (rendered,) = [
        obj
        for obj in yaml.safe_load_all(manifest)
        if obj and obj["kind"] == "MutatingWebhookConfiguration"
    ]
    (webhook,) = rendered["webhooks"]
    if not webhook.get("matchConditions"):
        raise SystemExit("the release renders no matchConditions: set webhook.skipLabelledPods")
    live = kubectl_json("get", "mutatingwebhookconfiguration", rendered["metadata"]["name"])
    name = f"bench-skip-{uuid.uuid4().hex[:5]}"
    webhook |= {
        "name": f"{name}.bench.pod-labeler.test",
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "clientConfig": live["webhooks"][0]["clientConfig"],
    }
    copy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }
    run(str(BIN / "kubectl"), "create", "-f", "-", stdin=json.dumps(copy))
    try:
        wait_for(partial(labels_a_pod, bench.api, namespace), "the copy of the webhook to label")
        yield namespace
    finally:
        run(str(BIN / "kubectl"), "delete", "mutatingwebhookconfiguration", name)


def labels_a_pod(api: ApiServer, namespace: str) -> bool:
    try:
        return "environment" in api.create_pod_dry_run(namespace)["metadata"]["labels"]
    except CreateRefusedError:
        return False


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


@contextlib.contextmanager
def reference_webhook(bench: Bench) -> Iterator[str]:
    """bench/refwebhook (Go, standard library) installed beside ours, for one namespace
    that ours skips: the API server's own cost of calling any webhook."""
    if current_mode() != "webhook":
        switch_mode(bench.api, "webhook", bench.namespace("webhook"))
    namespace = bench.namespace("reference", skip=True)
    manifests = reference_manifests(namespace)
    try:
        for manifest in manifests:
            run(str(BIN / "kubectl"), "create", "-f", "-", stdin=json.dumps(manifest))
        run(
            str(BIN / "kubectl"),
            "rollout",
            "status",
            f"deployment/{REFERENCE}",
            "-n",
            RELEASE_NAMESPACE,
            "--timeout=3m",
        )

        # Refused until cainjector has filled the caBundle.
        wait_for(partial(labels_a_pod, bench.api, namespace), "the reference webhook to label Pods")
        yield namespace
    finally:
        for manifest in reversed(manifests):  # the webhook configuration first
            metadata = manifest["metadata"]
            scope = ["-n", metadata["namespace"]] if "namespace" in metadata else []
            run(
                str(BIN / "kubectl"),
                "delete",
                manifest["kind"],
                metadata["name"],
                *scope,
                "--ignore-not-found",
            )
        run(
            str(BIN / "kubectl"),
            "delete",
            "secret",
            REFERENCE,
            "-n",
            RELEASE_NAMESPACE,
            "--ignore-not-found",
        )


def reference_image() -> str:
    """The name hack/install.sh gives the reference's image: its source's hash."""
    stamp = BIN / ".refwebhook.version"
    if not stamp.exists():
        raise SystemExit("the reference webhook is not built: run `make install`")
    return f"localhost/refwebhook:{stamp.read_text().strip()[:12]}"


def reference_manifests(namespace: str) -> list[dict[str, Any]]:
    """The reference installed as ours is, from ours: a cert-manager Certificate from
    the same issuer, a Deployment with the same labels to set, a Service, and a
    webhook configuration with the same settings whose caBundle cainjector fills.

    Its Pods run the reference's image (`reference_image`) under the node's kubelet,
    with the same securityContext as ours.
    """
    selector = f"app.kubernetes.io/instance={RELEASE}"
    ours = kubectl_json("get", "mutatingwebhookconfigurations", "-l", selector)["items"][0]
    certificate_name = ours["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    certificate = kubectl_json(
        "get", "certificate", "-n", RELEASE_NAMESPACE, certificate_name.split("/")[1]
    )
    deployment = kubectl_json("get", "deployment", "-n", RELEASE_NAMESPACE, "-l", selector)
    deployment = deployment["items"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    labels = {"app.kubernetes.io/name": REFERENCE}
    metadata = {"name": REFERENCE, "namespace": RELEASE_NAMESPACE, "labels": labels}
    webhook = {
        **ours["webhooks"][0],
        "name": "reference.bench.pod-labeler.local",
        "clientConfig": {
            "service": {
                "name": REFERENCE,
                "namespace": RELEASE_NAMESPACE,
                "path": "/mutate",
                "port": 443,
            }
        },
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "objectSelector": {},
    }
    service_names = [REFERENCE, f"{REFERENCE}.{RELEASE_NAMESPACE}.svc"]
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": metadata,
            "spec": {**certificate["spec"], "dnsNames": service_names, "secretName": REFERENCE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": deployment["spec"]["replicas"],
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "containers": [
                            {
                                "name": "refwebhook",
                                # Never pulled: only the local cluster has it.
                                "image": reference_image(),
                                "imagePullPolicy": "Never",
                                "securityContext": container["securityContext"],
                                "args": [
                                    "--tls-cert=/tls/tls.crt",
                                    "--tls-key=/tls/tls.key",
                                    "--port=8443",
                                    *(a for a in container["args"] if a.startswith("--label=")),
                                ],
                                "ports": [{"name": "https", "containerPort": 8443}],
                                "readinessProbe": {
                                    "httpGet": {
                                        "path": "/readyz",
                                        "port": "https",
                                        "scheme": "HTTPS",
                                    },
                                    "periodSeconds": 5,
                                },
                                "volumeMounts": [
                                    {"name": "tls", "mountPath": "/tls", "readOnly": True}
                                ],
                            }
                        ],
                        "volumes": [{"name": "tls", "secret": {"secretName": REFERENCE}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "selector": labels,
                "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {
                "name": REFERENCE,
                "labels": labels,
                "annotations": {
                    "cert-manager.io/inject-ca-from": f"{RELEASE_NAMESPACE}/{REFERENCE}"
                },
            },
            "webhooks": [webhook],
        },
    ]


@dataclass(frozen=True)
class Setup:
    name: str
    enter: Callable[[Bench], contextlib.AbstractContextManager[str]]
    # The labels of the Pods created; None: the bench Pod's own.
    pod_labels: Callable[[], dict[str, str]] | None = None


BASELINE = "no labelling"
# Each phase's setups are entered in order, then measured side by side; every phase
# has its own BASELINE.
PHASES = [
    [Setup(BASELINE, no_labelling), Setup("policy mode", policy_mode)],
    [
        Setup(BASELINE, no_labelling),
        Setup("webhook mode", webhook_mode),
        Setup("webhook, labelled", webhook_labelled, already_labelled),
        Setup("reference webhook", reference_webhook),
    ],
]
# Our webhook's added p50 over the reference's: reported beside the reference, not a
# target (the targets are against the bare waitress + Flask ceiling: bench.server).
RATIO = ("webhook mode", "reference webhook")


def report(phases: list[list[Figures]], calls: dict[str, tuple[float, float]], pods: int) -> None:
    print(
        f"Pod create (server-side dry run), {pods} per setup in {ROUNDS} interleaved rounds, "
        "one keep-alive connection"
    )
    print(f"{'setup':<24}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'added p50':>11}")
    added: dict[str, float] = {}
    for results in phases:
        baseline = next(f for f in results if f.setup == BASELINE).quantile(50)
        for figures in results:
            added[figures.setup] = figures.quantile(50) - baseline
            print(
                f"{figures.setup:<24}{figures.quantile(50):>9.2f}{figures.quantile(90):>9.2f}"
                f"{figures.quantile(99):>9.2f}{statistics.fmean(figures.latencies_ms):>9.2f}"
                f"{added[figures.setup]:>11.2f}"
            )
    ours, reference = RATIO
    if ours in added and reference in added:
        print(f"added p50, {ours} / {reference}: {added[ours] / added[reference]:.2f}")
    print_webhook_calls(
        calls, "the API server's own timing of each webhook call in the webhook phase:"
    )


def print_webhook_calls(calls: dict[str, tuple[float, float]], heading: str) -> None:
    print(heading)
    for name, (seconds, count) in sorted(calls.items()):
        print(f"  {name:<56} {count:>6.0f} calls, mean {seconds / count * 1000:.2f} ms")


def measure_together(
    bench: Bench, setups: list[Setup], pods: int
) -> tuple[list[Figures], dict[str, tuple[float, float]]]:
    """Enter `setups` in order, measure them side by side, then leave them (in reverse
    order): their figures, and the API server's own timing of each webhook it called
    meanwhile (total seconds, calls)."""
    calls: dict[str, tuple[float, float]] = {}
    with contextlib.ExitStack() as stack:
        namespaces = {setup: stack.enter_context(setup.enter(bench)) for setup in setups}
        before = webhook_call_totals(bench.api)
        figures = measure_phase(bench.api, namespaces, pods)
        after = webhook_call_totals(bench.api)
    for name, (seconds, count) in after.items():
        then = before.get(name, (0.0, 0.0))
        if count > then[1]:
            calls[name] = (seconds - then[0], count - then[1])
    return figures, calls


def measure_phases(
    bench: Bench, pods: int
) -> tuple[list[list[Figures]], dict[str, tuple[float, float]]]:
    phases: list[list[Figures]] = []
    calls: dict[str, tuple[float, float]] = {}
    for phase in PHASES:
        figures, called = measure_together(bench, phase, pods)
        phases.append(figures)
        # Only the webhook phase calls webhooks: its calls are what changed.
        calls |= called
    return phases, calls


@contextlib.contextmanager
def release_mode_kept(bench: Bench) -> Iterator[None]:
    """On the way out, even on error: the release back in the mode it was in, and the
    bench's namespaces deleted."""
    original = current_mode()
    try:
        yield
    finally:
        if current_mode() != original:
            switch_mode(bench.api, original, bench.namespace("restore"))
        bench.delete_namespaces()


def main() -> None:
    parser = argparse.ArgumentParser(description="Pod-creation latency per labelling setup.")
    parser.add_argument("--pods", type=int, default=1000, help="dry-run creates per setup")
    parser.add_argument(
        "--cpu-limit",
        help="the webhook's CPU limit for this run (e.g. 500m, or none); default: as installed",
    )
    args = parser.parse_args()

    bench = Bench(ApiServer(KUBECONFIG))
    with webhook_cpu_limit(args.cpu_limit), release_mode_kept(bench):
        phases, calls = measure_phases(bench, args.pods)
    if args.cpu_limit:
        print(f"the webhook's CPU limit for this run: {args.cpu_limit}")
    report(phases, calls, args.pods)


if __name__ == "__main__":
    main()
