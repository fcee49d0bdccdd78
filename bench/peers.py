"""Pod-creation latency beside what users pick instead: Kyverno and OPA Gatekeeper.

    make bench-peers       # hack/install.sh peers, then this, on `make up`'s cluster
    python -m bench.peers [--pods 1000]

bench.modes's machinery (server-side dry-run creates over one keep-alive connection,
interleaved rounds, its setups for no labelling, our webhook and the Go reference) with
every way of giving a Pod the release's labels (`environment: production` by default)
measured side by side in the same rounds, each in a namespace of its own:

- no labelling: a namespace labelled `pod-labeler/skip=true`, which the release skips;
- policy mode: the MutatingAdmissionPolicy and binding the chart renders with
  `mode=policy` from the release's values, copied for one namespace; the release itself
  stays in webhook mode, so policy mode runs in the same rounds as the webhooks;
- webhook mode, and the Go reference webhook (bench/refwebhook): as in bench.modes;
- Kyverno: its admission controller (`cmd/kyverno`, which `hack/install.sh peers` builds)
  as a process on the host, with the flags its install manifest gives it
  (`--admissionReports=true`, `--omitEvents=PolicyApplied,PolicySkipped`, ...), and one
  ClusterPolicy whose one mutate rule (patchStrategicMerge) sets the release's labels;
- Kyverno, reports and events off: a second admission controller process, a follower of
  the first (same namespace and lease, so only the first registers webhooks), with
  `--admissionReports=false --omitEvents=` all four kinds, behind a copy of the first's
  Pod webhooks. On these dry-run creates Kyverno makes no admission report either way (it
  skips dry runs), nor events (a Pod with generateName has no name yet at admission, and
  Kyverno emits events only for named resources): expect the two rows within noise;
- Gatekeeper: its manager as a process on the host with the operations its
  controller-manager Deployment runs (`--operation=webhook --operation=mutation-webhook`),
  one AssignMetadata per label, and the mutating webhook configuration of its manifest
  narrowed to Pod CREATE, with a certificate of ours (it never registers one itself);
- Gatekeeper, mutation only: a second manager with `--operation=mutation-webhook` alone,
  without the validation webhook's controllers. Gatekeeper's audit, status and generate
  operations run in another Deployment (gatekeeper-audit), which neither row runs, and its
  per-request extras (`--log-mutations`, `--mutation-annotations`,
  `--emit-admission-events`) are off by default.

The peers run as host processes (loopback, HTTP/2), not as Pods: ours and the reference run
as Pods behind their Services, so the path favours the peers. Kyverno's reports, background
and cleanup controllers (other Deployments of its install) are not run. Every peer webhook
selects only namespaces the bench creates, by the label `bench.pod-labeler/peer`; each second
row's webhook has a name of its own, so that the API server's timing tells the rows apart.

Before timing, a Pod created in each setup's namespace must come back with exactly the
labels expected (the release's, or none for "no labelling"), or the bench stops; while
timing, every create is checked again and the misses are printed.

Prints a table: p50/p90/p99 per setup, each over the baseline (what labelling adds), the
resident memory (VmRSS from /proc) of each setup's admission processes after the run, and
the objects its install adds; then the API server's own timing of each webhook call, what
each peer ran as, and what this run's install of each peer added to the cluster. Everything
the peers created (processes, webhook configurations, CRDs, namespaces, leases) is removed
at the end, even on error, and the bench says whether the cluster was left as it found it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from bench.modes import (
    BASELINE,
    BIN,
    KUBECONFIG,
    POD,
    REFERENCE,
    RELEASE,
    RELEASE_NAMESPACE,
    ROOT,
    ROUNDS,
    ApiServer,
    Bench,
    CreateRefusedError,
    Figures,
    Setup,
    already_labelled,
    current_mode,
    kubectl_json,
    labels_a_pod,
    measure_together,
    no_labelling,
    print_webhook_calls,
    reference_manifests,
    reference_webhook,
    release_mode_kept,
    run,
    wait_for,
    webhook_mode,
)
from tests.certs import CertificateAuthority

CACHE = ROOT / ".cache"
# The peers' processes write their logs here, and Gatekeeper finds its certificate here.
WORK = CACHE / "bench-peers"
PEER_LABEL = "bench.pod-labeler/peer"
# How long a peer may take from its start to labelling Pods (2 busy cores).
READY_TIMEOUT = 600


def kubectl(*args: str, stdin: str | None = None) -> str:
    return run(str(BIN / "kubectl"), *args, stdin=stdin)


def helm(*args: str) -> str:
    return run(str(BIN / "helm"), *args)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peer_namespace(bench: Bench, row: str) -> str:
    """A namespace of the bench that the release skips and the peer `row` selects."""
    namespace = bench.namespace(row, skip=True)
    kubectl("label", "namespace", namespace, f"{PEER_LABEL}={row}")
    return namespace


def manifest_kinds(text: str) -> Counter[str]:
    return Counter(obj["kind"] for obj in yaml.safe_load_all(text) if obj)


def describe_kinds(kinds: Counter[str]) -> str:
    """`N objects (M CRDs)`."""
    return f"{sum(kinds.values())} objects ({kinds['CustomResourceDefinition']} CRDs)"


# --- memory -------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """The process's resident memory (VmRSS in /proc/<pid>/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def cgroup_paths() -> dict[int, str]:
    """Every host process's cgroup path (the unified one, or the first listed)."""
    paths: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                paths[int(entry.name)] = (entry / "cgroup").read_text().splitlines()[0]
    return paths


def pods_rss_mib(namespace: str, selector: str) -> list[float]:
    """Per running Pod matching `selector`: the VmRSS of the processes in its containers'
    cgroups (found by container ID in /proc/<pid>/cgroup; the sandbox's pause process is
    not one of them), summed."""
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    paths = cgroup_paths()
    found = []
    for pod in pods:
        if pod["status"].get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        ids = [
            status["containerID"].rpartition("/")[2]
            for status in pod["status"].get("containerStatuses", [])
            if status.get("containerID")
        ]
        pids = [pid for pid, path in paths.items() if any(i in path for i in ids)]
        found.append(sum(rss_mib(pid) for pid in pids))
    return found


def release_pods_rss_mib() -> list[float]:
    deployment = kubectl_json(
        "get", "deployment", "-n", RELEASE_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}"
    )["items"][0]
    labels = deployment["spec"]["selector"]["matchLabels"]
    return pods_rss_mib(RELEASE_NAMESPACE, ",".join(f"{k}={v}" for k, v in labels.items()))


# --- what an install adds to the cluster --------------------------------------------------

# (apiVersion, kind, namespace, name)
ObjectKey = tuple[str, str, str, str]
# Not objects anyone installs: events come and go, componentstatuses are computed.
UNCOUNTED = {"events", "events.events.k8s.io", "componentstatuses"}


def cluster_objects() -> set[ObjectKey]:
    """Every object of every type the API server lists, events left out."""
    types = [t for t in kubectl("api-resources", "--verbs=list", "-o", "name").split()]
    columns = "API:.apiVersion,KIND:.kind,NAMESPACE:.metadata.namespace,NAME:.metadata.name"
    listed = kubectl(
        "get",
        ",".join(t for t in types if t not in UNCOUNTED),
        "-A",
        "--ignore-not-found",
        "-o",
        f"custom-columns={columns}",
        "--no-headers",
    )
    objects: set[ObjectKey] = set()
    for line in listed.splitlines():
        api, kind, namespace, name = line.split()
        objects.add((api, kind, "" if namespace == "<none>" else namespace, name))
    return objects


def added(bench: Bench, before: set[ObjectKey], after: set[ObjectKey]) -> list[ObjectKey]:
    """What appeared between two snapshots, leaving out the bench's own namespaces (which
    bench.modes deletes without waiting) and what is in them."""
    ours = set(bench.namespaces)
    return sorted(
        (api, kind, namespace, name)
        for api, kind, namespace, name in after - before
        if namespace not in ours and not (kind == "Namespace" and name in ours)
    )


def added_kinds(bench: Bench, before: set[ObjectKey], after: set[ObjectKey]) -> Counter[str]:
    return Counter(kind for _, kind, _, _ in added(bench, before, after))


# --- the peers' processes -----------------------------------------------------------------


class HostProcess:
    """One admission process of a peer, run on the host; its output goes to WORK/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log = WORK / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    def running(self) -> bool:
        """True while it runs; stops the bench, pointing at its log, once it has exited."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise SystemExit(f"{self.name} is not running (exit {code}): see {self.log}")
        return True

    def rss_mib(self) -> float:
        assert self.process is not None
        return rss_mib(self.process.pid)

    def flag(self, name: str) -> str:
        """The value of its `--name=value`."""
        (value,) = [a.split("=", 1)[1] for a in self.argv if a.startswith(f"--{name}=")]
        return value

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def described(self) -> str:
        """Its command line, without the kubeconfig."""
        shown = [a for a in self.argv[1:] if not a.startswith("--kubeconfig")]
        return f"{Path(self.argv[0]).name} {' '.join(shown)}"


def labelled_by(process: HostProcess, api: ApiServer, namespace: str) -> bool:
    return process.running() and labels_a_pod(api, namespace)


def wait_until_labelled(process: HostProcess, api: ApiServer, namespace: str) -> None:
    wait_for(
        partial(labelled_by, process, api, namespace),
        f"{process.name} to label Pods in {namespace} (its log: {process.log})",
        timeout=READY_TIMEOUT,
    )


def deployment_container(manifest: Path, deployment: str) -> dict[str, Any]:
    """The first container of a Deployment in one of the peers' install manifests."""
    for obj in yaml.safe_load_all(manifest.read_text()):
        if obj and obj["kind"] == "Deployment" and obj["metadata"]["name"] == deployment:
            return dict(obj["spec"]["template"]["spec"]["containers"][0])
    raise SystemExit(f"{manifest} has no Deployment {deployment}")


def with_flags(args: list[str], **flags: str) -> list[str]:
    """`args` with each `--name=value` of `flags` replacing the manifest's own, or added."""
    kept = [a for a in args if a.split("=", 1)[0].removeprefix("--") not in flags]
    return kept + [f"--{name}={value}" for name, value in flags.items()]


def install_crds(directory: Path) -> None:
    # Server-side: some of the CRDs are too large for the last-applied annotation.
    kubectl("apply", "--server-side", "-R", "-f", str(directory))
    kubectl("wait", "--for=condition=Established", "-R", "-f", str(directory), "--timeout=3m")


def applied(obj: dict[str, Any]) -> bool:
    try:
        kubectl("apply", "-f", "-", stdin=json.dumps(obj))
    except SystemExit:
        return False
    return True


def uninstall(namespace: str, crds: Path) -> None:
    """The peer's namespace (and what is in it, leases included), then its CRDs (and
    every object of theirs)."""
    kubectl("delete", "namespace", namespace, "--ignore-not-found", "--timeout=5m")
    kubectl("delete", "-R", "-f", str(crds), "--ignore-not-found", "--timeout=5m")


def built(name: str, version_key: str) -> Path:
    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    stamp = BIN / f".{name}.version"
    if not stamp.exists() or stamp.read_text().strip() != versions[version_key]:
        raise SystemExit(f"{name} {versions[version_key]} is not built: run hack/install.sh peers")
    return BIN / name


class Peer:
    """What a peer's rows share: its processes, and what its install added."""

    def __init__(self, api: ApiServer, labels: dict[str, str]) -> None:
        self.api = api
        self.labels = labels
        self.processes: dict[str, HostProcess] = {}
        self.added: Counter[str] = Counter()

    def rss(self, row: str) -> list[float]:
        return [self.processes[row].rss_mib()]

    def host_process(
        self, row: str, binary: str, args: list[str], env: dict[str, str]
    ) -> HostProcess:
        """A process of `binary` (built by hack/install.sh peers) for `row`, not started."""
        version = f"{binary.upper()}_VERSION"
        process = HostProcess(row, [str(built(binary, version)), *args], env)
        self.processes[row] = process
        return process

    @staticmethod
    def namespace_and_crds(namespace: str, crds: Path) -> None:
        kubectl("create", "namespace", namespace)
        install_crds(crds)


# --- Kyverno ------------------------------------------------------------------------------

KYVERNO = CACHE / "kyverno"
KYVERNO_NAMESPACE = "kyverno"
KYVERNO_WEBHOOKS = "kyverno-resource-mutating-webhook-cfg"
KYVERNO_POLICY = "bench-pod-labeler"
KYVERNO_QUIET_FLAGS = {
    "admissionReports": "false",
    "omitEvents": "PolicyApplied,PolicySkipped,PolicyViolation,PolicyError",
}


class Kyverno(Peer):
    """Kyverno's admission controller on the host: a leader with its install's flags, which
    registers its webhooks, and a follower with reports and events off."""

    def process(self, row: str, flags: dict[str, str]) -> HostProcess:
        container = deployment_container(
            KYVERNO / "install-latest-testing.yaml", "kyverno-admission-controller"
        )
        port = free_port()
        args = with_flags(
            container["args"],
            kubeconfig=str(KUBECONFIG),
            serverIP=f"127.0.0.1:{port}",
            webhookServerPort=str(port),
            metricsPort=str(free_port()),
            controllerRuntimeMetricsAddress="0",
            **flags,
        )
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        env |= {
            "KYVERNO_NAMESPACE": KYVERNO_NAMESPACE,
            # Its identity in the leader election.
            "KYVERNO_POD_NAME": row,
            "TUF_ROOT": str(WORK / "sigstore"),
        }
        return self.host_process(row, "kyverno", args, env)

    def install(self) -> None:
        self.namespace_and_crds(KYVERNO_NAMESPACE, KYVERNO / "crds")
        selector = {"namespaceSelector": {"matchLabels": {PEER_LABEL: "kyverno"}}}
        for obj in yaml.safe_load_all((KYVERNO / "install-latest-testing.yaml").read_text()):
            if obj and obj["kind"] == "ConfigMap":
                if obj["metadata"]["name"] == "kyverno":
                    # An object, not a list (pkg/config/types.go, WebhookConfig).
                    obj["data"]["webhooks"] = json.dumps(selector)
                kubectl("create", "-f", "-", stdin=json.dumps(obj))

    @contextlib.contextmanager
    def default(self, bench: Bench) -> Iterator[str]:
        namespace = peer_namespace(bench, "kyverno")
        before = cluster_objects()
        leader = self.process("kyverno", {})
        try:
            self.install()
            leader.start()
            wait_for(
                partial(self.registered, leader),
                f"Kyverno to register {KYVERNO_WEBHOOKS} (its log: {leader.log})",
                timeout=READY_TIMEOUT,
            )
            policy = {
                "apiVersion": "kyverno.io/v1",
                "kind": "ClusterPolicy",
                "metadata": {"name": KYVERNO_POLICY},
                "spec": {
                    "rules": [
                        {
                            "name": "label-pods",
                            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                            "mutate": {
                                "patchStrategicMerge": {"metadata": {"labels": self.labels}}
                            },
                        }
                    ]
                },
            }
            # Refused while Kyverno's own policy webhook is not answering yet.
            wait_for(partial(applied, policy), "Kyverno to accept the ClusterPolicy")
            wait_until_labelled(leader, self.api, namespace)
            self.added = added_kinds(bench, before, cluster_objects())
            yield namespace
        finally:
            # The policy while Kyverno still answers its own policy webhooks.
            if leader.process is not None and leader.process.poll() is None:
                kubectl("delete", "clusterpolicy", KYVERNO_POLICY, "--ignore-not-found")
            leader.stop()
            # Out of cluster, Kyverno leaves its webhook configurations behind.
            for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
                kubectl("delete", kind, "-l", "webhook.kyverno.io/managed-by=kyverno")
            uninstall(KYVERNO_NAMESPACE, KYVERNO / "crds")

    def registered(self, leader: HostProcess) -> bool:
        found = kubectl(
            "get", "mutatingwebhookconfiguration", KYVERNO_WEBHOOKS, "--ignore-not-found"
        )
        return leader.running() and bool(found.strip())

    @contextlib.contextmanager
    def quiet(self, bench: Bench) -> Iterator[str]:
        """The follower, behind a copy of the leader's Pod webhooks that points at it."""
        namespace = peer_namespace(bench, "kyverno-quiet")
        follower = self.process("kyverno-quiet", KYVERNO_QUIET_FLAGS)
        follower_url = urlsplit(f"https://127.0.0.1:{follower.flag('webhookServerPort')}")
        name = f"bench-kyverno-quiet-{namespace[-5:]}"
        try:
            follower.start()
            leaders = kubectl_json("get", "mutatingwebhookconfiguration", KYVERNO_WEBHOOKS)
            webhooks = []
            for webhook in leaders["webhooks"]:
                url = urlsplit(webhook["clientConfig"]["url"])
                webhook["clientConfig"]["url"] = urlunsplit(
                    url._replace(netloc=follower_url.netloc)
                )
                webhook["namespaceSelector"] = {"matchLabels": {PEER_LABEL: "kyverno-quiet"}}
                # Its own name, so that the API server's timing tells the two apart.
                webhook["name"] = f"quiet.{webhook['name']}"
                webhooks.append(webhook)
            copy = {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": webhooks,
            }
            kubectl("create", "-f", "-", stdin=json.dumps(copy))
            wait_until_labelled(follower, self.api, namespace)
            yield namespace
        finally:
            kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")
            follower.stop()


# --- Gatekeeper ---------------------------------------------------------------------------

GATEKEEPER = CACHE / "gatekeeper"
GATEKEEPER_NAMESPACE = "gatekeeper-system"


class Gatekeeper(Peer):
    """Gatekeeper's manager on the host: one with its controller-manager's operations, one
    with the mutation webhook alone; each behind a webhook configuration of ours."""

    def process(self, row: str, operations: list[str]) -> HostProcess:
        container = deployment_container(
            GATEKEEPER / "gatekeeper.yaml", "gatekeeper-controller-manager"
        )
        certs = WORK / f"{row}-certs"
        certs.mkdir(parents=True, exist_ok=True)
        args = [a for a in container["args"] if not a.startswith(("--operation=", "--port="))] + [
            f"--operation={o}" for o in operations
        ]
        args += [
            f"--kubeconfig={KUBECONFIG}",
            "--host=127.0.0.1",
            f"--port={free_port()}",
            "--disable-cert-rotation",
            f"--cert-dir={certs}",
            f"--health-addr=127.0.0.1:{free_port()}",
            f"--prometheus-port={free_port()}",
            "--metrics-addr=0",
        ]
        # Without --debug-use-fake-pod: its status objects would then name a Pod that does
        # not exist, which the garbage collector deletes and Gatekeeper recreates, many
        # times a second. A placeholder Pod instead, which never runs.
        env = {"POD_NAME": row, "POD_NAMESPACE": GATEKEEPER_NAMESPACE}
        env |= {"NAMESPACE": GATEKEEPER_NAMESPACE, "CONTAINER_NAME": "manager"}
        return self.host_process(row, "gatekeeper", args, env)

    def install(self) -> None:
        self.namespace_and_crds(GATEKEEPER_NAMESPACE, GATEKEEPER / "crds")
        for index, (key, value) in enumerate(sorted(self.labels.items())):
            assign = {
                "apiVersion": "mutations.gatekeeper.sh/v1",
                "kind": "AssignMetadata",
                "metadata": {"name": f"bench-label-{index}"},
                "spec": {
                    "match": {
                        "scope": "Namespaced",
                        "kinds": [{"apiGroups": ["*"], "kinds": ["Pod"]}],
                    },
                    "location": f"metadata.labels.{key}",
                    "parameters": {"assign": {"value": value}},
                },
            }
            kubectl("create", "-f", "-", stdin=json.dumps(assign))

    def placeholder_pod(self, name: str) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": GATEKEEPER_NAMESPACE},
            "spec": {
                # No node has this label: the Pod stays Pending and runs nothing.
                "nodeSelector": {"bench.pod-labeler/placeholder": "true"},
                "containers": [
                    {"name": "placeholder", "image": POD["spec"]["containers"][0]["image"]}
                ],
            },
        }
        kubectl("create", "-f", "-", stdin=json.dumps(pod))

    def webhook_configuration(self, row: str, process: HostProcess) -> str:
        """The mutating webhook configuration of Gatekeeper's manifest, for Pod CREATE in the
        namespaces labelled for `row`, calling `process` at its URL with our CA."""
        authority = CertificateAuthority("bench.peers gatekeeper CA")
        pair = authority.issue("127.0.0.1", valid_for=datetime.timedelta(days=1))
        certs = Path(process.flag("cert-dir"))
        pair.write(certs / "tls.crt", certs / "tls.key")
        for obj in yaml.safe_load_all((GATEKEEPER / "gatekeeper.yaml").read_text()):
            if obj and obj["kind"] == "MutatingWebhookConfiguration":
                (webhook,) = obj["webhooks"]
        port = process.flag("port")
        webhook |= {
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}/v1/mutate",
                "caBundle": base64.b64encode(authority.cert_pem).decode(),
            },
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": {"matchLabels": {PEER_LABEL: row}},
            "sideEffects": "None",
        }
        if row != "gatekeeper":
            # Its own name, so that the API server's timing tells the two apart.
            webhook["name"] = f"{row}.{webhook['name']}"
        name = f"bench-{row}"
        configuration = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [webhook],
        }
        kubectl("create", "-f", "-", stdin=json.dumps(configuration))
        return name

    @contextlib.contextmanager
    def serving(self, bench: Bench, row: str, operations: list[str]) -> Iterator[str]:
        namespace = peer_namespace(bench, row)
        process = self.process(row, operations)
        name = ""
        try:
            self.placeholder_pod(row)
            name = self.webhook_configuration(row, process)
            process.start()
            wait_until_labelled(process, self.api, namespace)
            yield namespace
        finally:
            if name:
                kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")
            process.stop()

    @contextlib.contextmanager
    def default(self, bench: Bench) -> Iterator[str]:
        before = cluster_objects()
        try:
            self.install()
            with self.serving(bench, "gatekeeper", ["webhook", "mutation-webhook"]) as namespace:
                self.added = added_kinds(bench, before, cluster_objects())
                yield namespace
                # Deleted while its manager runs, in case it holds a finalizer on them.
                kubectl("delete", "assignmetadata", "--all", "--ignore-not-found")
        finally:
            uninstall(GATEKEEPER_NAMESPACE, GATEKEEPER / "crds")

    def quiet(self, bench: Bench) -> contextlib.AbstractContextManager[str]:
        return self.serving(bench, "gatekeeper-mutation-only", ["mutation-webhook"])


# --- policy mode, beside the webhooks ----------------------------------------------------


def policy_mode_manifest() -> str:
    """The release as the chart renders it with mode=policy, from the release's values
    (helm reads which APIs the cluster serves; nothing is changed)."""
    values = helm("get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        file.write(values if values.strip() != "null" else "{}")
        file.flush()
        return helm(
            "template",
            RELEASE,
            str(ROOT / "chart"),
            "-n",
            RELEASE_NAMESPACE,
            "-f",
            file.name,
            "--set",
            "mode=policy",
            "--validate",
        )


@contextlib.contextmanager
def policy_copy(bench: Bench) -> Iterator[str]:
    """Policy mode while the release stays in webhook mode: the chart's policy-mode
    MutatingAdmissionPolicy and binding, copied for one namespace that the release skips."""
    namespace = bench.namespace("policy", skip=True)
    name = f"bench-policy-{namespace[-5:]}"
    copies = []
    for obj in yaml.safe_load_all(policy_mode_manifest()):
        if obj and obj["kind"] == "MutatingAdmissionPolicy":
            obj["spec"]["matchConstraints"]["namespaceSelector"] = {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            }
        elif obj and obj["kind"] == "MutatingAdmissionPolicyBinding":
            obj["spec"]["policyName"] = name
        else:
            continue
        copies.append({**obj, "metadata": {"name": name}})
    try:
        for copy in copies:
            kubectl("create", "-f", "-", stdin=json.dumps(copy))
        wait_for(partial(labels_a_pod, bench.api, namespace), "the copy of policy mode to label")
        yield namespace
    finally:
        for copy in copies:
            kubectl("delete", copy["kind"], name, "--ignore-not-found")


@contextlib.contextmanager
def our_webhook(bench: Bench) -> Iterator[str]:
    """Webhook mode: the release as it is, when it is in webhook mode already (bench.modes's
    switch would upgrade it to the same values, leaving a new revision behind)."""
    if current_mode() != "webhook":
        with webhook_mode(bench) as namespace:
            yield namespace
        return
    namespace = bench.namespace("webhook")
    wait_for(partial(labels_a_pod, bench.api, namespace), "the release's webhook to label")
    yield namespace


# --- the run ------------------------------------------------------------------------------


class CheckedApiServer(ApiServer):
    """ApiServer whose Pod creates are compared with the labels their namespace should
    give; the misses are counted per namespace."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(kubeconfig)
        self.expected: dict[str, dict[str, str]] = {}
        self.misses: Counter[str] = Counter()

    def create_pod_dry_run(
        self, namespace: str, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        pod = super().create_pod_dry_run(namespace, labels)
        want = self.expected.get(namespace)
        if want is not None and pod["metadata"].get("labels") != want:
            self.misses[namespace] += 1
        return pod


class Rows:
    """The setups of one run, each checked for its labels before it is timed, with the
    resident memory of its admission processes read when it is left."""

    def __init__(self, api: CheckedApiServer) -> None:
        self.api = api
        self.namespaces: dict[str, str] = {}
        self.memory: dict[str, list[float]] = {}

    def setup(
        self,
        name: str,
        enter: Callable[[Bench], contextlib.AbstractContextManager[str]],
        labels: dict[str, str],
        memory: Callable[[], list[float]] = list,
    ) -> Setup:
        return Setup(name, partial(self.checked, name, enter, labels, memory))

    @contextlib.contextmanager
    def checked(
        self,
        name: str,
        enter: Callable[[Bench], contextlib.AbstractContextManager[str]],
        labels: dict[str, str],
        memory: Callable[[], list[float]],
        bench: Bench,
    ) -> Iterator[str]:
        with enter(bench) as namespace:
            try:
                got = self.api.create_pod_dry_run(namespace)["metadata"].get("labels")
            except CreateRefusedError as refused:
                raise SystemExit(f"{name}: {refused}; nothing was timed") from None
            if got != labels:
                raise SystemExit(
                    f"{name}: a Pod came back labelled {got}, not {labels}; nothing was timed"
                )
            self.api.expected[namespace] = labels
            self.namespaces[name] = namespace
            yield namespace
            self.memory[name] = memory()


QUANTILES = (50, 90, 99)


def report(
    figures: list[Figures],
    rows: Rows,
    installs: dict[str, Counter[str]],
    pods: int,
    started: datetime.datetime,
) -> None:
    baseline = next(f for f in figures if f.setup == BASELINE)
    print(
        f"{started:%Y-%m-%d %H:%M} UTC. Pod create (server-side dry run), {pods} per setup in "
        f"{ROUNDS} interleaved rounds, one keep-alive connection. The peers run as processes "
        "on the host; ours and the reference as Pods behind their Services."
    )
    head = ["Setup", *(f"p{q}" for q in QUANTILES), *(f"added p{q}" for q in QUANTILES)]
    head += ["RSS after the run", "install adds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in figures:
        quantiles = [row.quantile(q) for q in QUANTILES]
        added = [
            value - baseline.quantile(q) for value, q in zip(quantiles, QUANTILES, strict=True)
        ]
        install = installs.get(row.setup.split(",")[0])
        cells = [
            row.setup,
            *(f"{value:.2f} ms" for value in quantiles),
            *(f"{value:+.2f} ms" for value in added),
            " + ".join(f"{mib:.0f} MiB" for mib in rows.memory.get(row.setup, [])) or "-",
            describe_kinds(install) if install else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "RSS: VmRSS from /proc, per process: the peers' host processes; for ours and the "
        "reference, the processes in each Pod's container cgroup. Policy mode runs in the "
        "API server. Install: the objects each one's install creates (ours: `helm get "
        "manifest`; policy mode: the chart rendered with mode=policy; the reference: what "
        "bench.modes creates; Kyverno: config/install-latest-testing.yaml, all four "
        "controllers; Gatekeeper: deploy/gatekeeper.yaml)."
    )


def cluster_is_up(api: ApiServer) -> None:
    try:
        api.get("/readyz")
    except (OSError, SystemExit) as error:
        raise SystemExit(
            f"the local cluster does not answer ({error}): bench.peers runs against the "
            "cluster that `make up` starts; start it first"
        ) from None


def not_installed_yet() -> None:
    """Stops the bench if a peer's namespace or CRDs are there already: it installs its own,
    and removes all of it at the end."""
    found = kubectl(
        "get",
        f"namespace/{KYVERNO_NAMESPACE}",
        f"namespace/{GATEKEEPER_NAMESPACE}",
        "crd/clusterpolicies.kyverno.io",
        "crd/assignmetadata.mutations.gatekeeper.sh",
        "--ignore-not-found",
        "-o",
        "name",
    )
    if found.strip():
        raise SystemExit(
            f"already in the cluster: {' '.join(found.split())}. A run stopped before its "
            "clean-up, or Kyverno or Gatekeeper is installed: bench.peers installs its own "
            f"and removes it at the end. To remove them: kubectl delete {' '.join(found.split())}"
        )


def preflight() -> CheckedApiServer:
    """The cluster answers, both peers are built, and neither is in the cluster yet."""
    if not KUBECONFIG.exists():
        raise SystemExit(
            f"no {KUBECONFIG}: bench.peers runs against `make up`'s cluster; run it first"
        )
    api = CheckedApiServer(KUBECONFIG)
    cluster_is_up(api)
    built("kyverno", "KYVERNO_VERSION")
    built("gatekeeper", "GATEKEEPER_VERSION")
    not_installed_yet()
    return api


def install_sizes() -> dict[str, Counter[str]]:
    """The objects of each setup's install, by kind (the release in webhook mode)."""
    return {
        "webhook mode": manifest_kinds(helm("get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE)),
        "policy mode": manifest_kinds(policy_mode_manifest()),
        "reference webhook": Counter(m["kind"] for m in reference_manifests("unused")),
        "Kyverno": manifest_kinds((KYVERNO / "install-latest-testing.yaml").read_text()),
        "Gatekeeper": manifest_kinds((GATEKEEPER / "gatekeeper.yaml").read_text()),
    }


def report_peers(peers: dict[str, Peer], rows: Rows, left: list[ObjectKey]) -> None:
    print("the peers ran as processes on the host (not as Pods), with these flags:")
    for peer in peers.values():
        for process in peer.processes.values():
            print(f"  {process.name}: {process.described()}")
    for name, peer in peers.items():
        print(
            f"this run's install of {name} added {describe_kinds(peer.added)}: "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(peer.added.items()))
        )
    print("  (APIService: the API server's own, one per group and version its CRDs serve)")
    for name, namespace in rows.namespaces.items():
        if rows.api.misses[namespace]:
            print(
                f"WARNING: {name}: {rows.api.misses[namespace]} timed creates came back "
                "without the expected labels"
            )
    if left:
        print("NOT left as found: objects that were not there before the run (the bench's, or")
        print("another user's):")
        for _, kind, namespace, name in left:
            print(f"  {kind} {namespace + '/' if namespace else ''}{name}")
    else:
        print("the cluster was left as found: no object that was not there before the run")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Pod-creation latency with Kyverno and Gatekeeper beside ours."
    )
    parser.add_argument("--pods", type=int, default=1000, help="dry-run creates per setup")
    args = parser.parse_args()

    api = preflight()
    labelled = already_labelled()
    plain = dict(POD["metadata"]["labels"])
    ours = {key: value for key, value in labelled.items() if plain.get(key) != value}
    bench = Bench(api)
    kyverno, gatekeeper = Kyverno(api, ours), Gatekeeper(api, ours)
    rows = Rows(api)
    reference_pods = partial(pods_rss_mib, RELEASE_NAMESPACE, f"app.kubernetes.io/name={REFERENCE}")
    setups = [
        rows.setup(BASELINE, no_labelling, plain),
        # Before policy mode: it puts the release in webhook mode if it is not.
        rows.setup("webhook mode", our_webhook, labelled, release_pods_rss_mib),
        rows.setup("policy mode", policy_copy, labelled),
        rows.setup("reference webhook", reference_webhook, labelled, reference_pods),
        rows.setup("Kyverno", kyverno.default, labelled, partial(kyverno.rss, "kyverno")),
        rows.setup(
            "Kyverno, reports and events off",
            kyverno.quiet,
            labelled,
            partial(kyverno.rss, "kyverno-quiet"),
        ),
        rows.setup(
            "Gatekeeper", gatekeeper.default, labelled, partial(gatekeeper.rss, "gatekeeper")
        ),
        rows.setup(
            "Gatekeeper, mutation webhook only",
            gatekeeper.quiet,
            labelled,
            partial(gatekeeper.rss, "gatekeeper-mutation-only"),
        ),
    ]
    before = cluster_objects()
    started = datetime.datetime.now(datetime.UTC)
    with release_mode_kept(bench):
        figures, calls = measure_together(bench, setups, args.pods)
        installs = install_sizes()  # while the release is still in webhook mode
    left = added(bench, before, cluster_objects())
    report(figures, rows, installs, args.pods, started)
    print_webhook_calls(calls, "the API server's own timing of each webhook call:")
    report_peers({"Kyverno": kyverno, "Gatekeeper": gatekeeper}, rows, left)


if __name__ == "__main__":
    main()
