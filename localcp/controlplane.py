"""`up` and `down`: the whole local stack, in dependency order."""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from localcp import kube, network, procs
from localcp.layout import (
    APISERVER_PORT,
    APISERVER_URL,
    BIN,
    BRIDGE_ADDRESS,
    CERT_MANAGER_NAMESPACE,
    EMPTY_DIRS,
    ETCD_CLIENT_URL,
    ETCD_PEER_URL,
    FILES,
    RELEASE,
    RELEASE_NAMESPACE,
    ROOT,
    SERVICE_CIDR,
    VENV_BIN,
)
from localcp.pki import ensure_pki, write_kubeconfig

# Stopped in the reverse of this order, so that nothing loses its API server
# (or the API server its etcd) while it is still shutting down.
DAEMONS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "cert-manager-controller",
    "cert-manager-cainjector",
    "kubelet",
)
CHART_SELECTOR = f"app.kubernetes.io/instance={RELEASE}"


def _say(message: str) -> None:
    print(f"[localcp] {message}", file=sys.stderr, flush=True)


def _require_binaries() -> None:
    missing = [
        name
        for name in (
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
            "helm",
            "cert-manager-controller",
            "cert-manager-cainjector",
        )
        if not (BIN / name).exists()
    ]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} in {BIN}: run `make install` first")


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_etcd() -> None:
    procs.start(
        "etcd",
        [
            str(BIN / "etcd"),
            "--name=localcp",
            f"--data-dir={FILES.etcd_data}",
            f"--listen-client-urls={ETCD_CLIENT_URL}",
            f"--advertise-client-urls={ETCD_CLIENT_URL}",
            f"--listen-peer-urls={ETCD_PEER_URL}",
            f"--initial-advertise-peer-urls={ETCD_PEER_URL}",
            f"--initial-cluster=localcp={ETCD_PEER_URL}",
            "--unsafe-no-fsync",  # a throwaway test cluster; fsync only slows it down
        ],
    )
    procs.wait_until("etcd", lambda: _http_ok(f"{ETCD_CLIENT_URL}/health"), 60, "etcd /health")


def start_apiserver() -> None:
    pki = FILES.pki
    procs.start(
        "kube-apiserver",
        [
            str(BIN / "kube-apiserver"),
            f"--etcd-servers={ETCD_CLIENT_URL}",
            "--bind-address=127.0.0.1",
            f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={BRIDGE_ADDRESS}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Resolve a webhook's Service to an endpoint address instead of its
            # ClusterIP: there is no kube-proxy here to route ClusterIPs.
            "--enable-aggregator-routing=true",
            "--profiling=false",
        ],
    )
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    procs.wait_until(
        "kube-apiserver",
        lambda: _http_ok(f"{APISERVER_URL}/readyz", context),
        120,
        "kube-apiserver /readyz",
    )


def start_controller_manager() -> None:
    kubeconfig = str(FILES.kubeconfig)
    procs.start(
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            f"--service-account-private-key-file={FILES.pki / 'sa.key'}",
            f"--root-ca-file={FILES.pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=false",
            "--profiling=false",
        ],
    )
    # Namespaces get their `default` ServiceAccount from it; Pods need one.
    procs.wait_until(
        "kube-controller-manager",
        lambda: kube.get_json("serviceaccount", "default", "-n", "default") is not None,
        60,
        "the default ServiceAccount in namespace default",
    )


def _render_crd(path: Path) -> str:
    """cert-manager ships its CRDs as Helm templates: fill in the chart's name and
    release as its chart would, and drop the remaining template-only lines."""
    text = path.read_text()
    text = text.replace("'{{ template \"cert-manager.name\" . }}'", "cert-manager")
    text = text.replace("'{{ .Release.Name }}'", "cert-manager")
    return "\n".join(line for line in text.splitlines() if "{{" not in line)


def start_cert_manager() -> None:
    crds = sorted((ROOT / ".cache" / "cert-manager-crds").glob("crd-*.yaml"))
    if not crds:
        raise SystemExit("cert-manager CRDs missing: run `make install` first")
    kube.apply("\n---\n".join(_render_crd(p) for p in crds))
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
        "crd/clusterissuers.cert-manager.io",
        "crd/certificaterequests.cert-manager.io",
    )
    kube.kubectl("create", "namespace", CERT_MANAGER_NAMESPACE, check=False)
    kubeconfig = f"--kubeconfig={FILES.kubeconfig}"
    procs.start(
        "cert-manager-controller",
        [
            str(BIN / "cert-manager-controller"),
            kubeconfig,
            "--leader-elect=false",
            f"--cluster-resource-namespace={CERT_MANAGER_NAMESPACE}",
            "--metrics-listen-address=127.0.0.1:9402",
            "--v=2",
        ],
    )
    procs.start(
        "cert-manager-cainjector",
        [
            str(BIN / "cert-manager-cainjector"),
            kubeconfig,
            "--leader-elect=false",
            "--v=2",
        ],
    )


def _source_checksum() -> str:
    """A digest of the server's code: the local "Pods" run it from this checkout."""
    digest = hashlib.sha256()
    for path in [*sorted((ROOT / "app").rglob("*.py")), ROOT / "constraints.txt"]:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def install_chart() -> None:
    """Install, or upgrade to this checkout's chart and code, keeping the release's values.

    The checksum annotation changes the Pod template when app/ changes, so the
    Deployment rolls and the kubelet stand-in starts the new code, as a new image
    would on a real cluster.
    """
    kube.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(ROOT / "chart"),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--reuse-values",
        "--set-string",
        f"podAnnotations.localcp/source-checksum={_source_checksum()}",
        "--wait",
        "--timeout=3m",
    )


def start_kubelet() -> None:
    procs.start(
        "kubelet",
        [
            str(VENV_BIN / "python"),
            "-m",
            "localcp.kubelet",
            f"--namespace={RELEASE_NAMESPACE}",
            f"--selector={CHART_SELECTOR}",
        ],
        env={"KUBECONFIG": str(FILES.kubeconfig), "PYTHONPATH": str(ROOT)},
    )


def labels_of(values: dict[str, Any]) -> dict[str, str]:
    """The labels a release puts on every new Pod, from the values it runs with
    (`helm get values --all`): `label.key`/`label.value` and `extraLabels`."""
    extra = values.get("extraLabels") or {}
    return {
        str(values["label"]["key"]): str(values["label"]["value"]),
        **{str(key): str(value) for key, value in extra.items()},
    }


def release_labels() -> dict[str, str]:
    """The installed release's labels: it may have been installed with any of them,
    and `install_chart` keeps them (--reuse-values)."""
    values = kube.helm("get", "values", RELEASE, "-n", RELEASE_NAMESPACE, "--all", "-o", "json")
    return labels_of(json.loads(values))


def carries(created: str, expected: dict[str, str]) -> bool:
    """Whether kubectl's JSON output for a created Pod shows every `expected` label;
    False for anything else (a refusal leaves it empty)."""
    try:
        labels = json.loads(created)["metadata"].get("labels") or {}
    except (ValueError, KeyError, TypeError):
        return False
    return all(labels.get(key) == value for key, value in expected.items())


def _pod_is_labelled(expected: dict[str, str]) -> bool:
    """A server-side dry-run create in `default` comes back with the release's labels."""
    manifest = (
        '{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"localcp-probe-"},'
        '"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10"}]}}'
    )
    out = kube.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        "default",
        "-o",
        "json",
        "-f",
        "-",
        stdin=manifest,
        check=False,
    )
    return carries(out, expected)


def _webhook_log_tails(lines: int = 15) -> str:
    """The webhook Pods' own logs, which say why a server would not start."""
    tails = []
    for path in FILES.pod_logs():
        text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        tails.append(f"--- {path.name} ---\n{text}")
    return "\n".join(tails) or "(no webhook logs)"


def up() -> None:
    _require_binaries()
    started = time.monotonic()
    FILES.root.mkdir(parents=True, exist_ok=True)
    token = ensure_pki(FILES.pki)
    write_kubeconfig(FILES.kubeconfig, APISERVER_URL, FILES.pki / "ca.crt", token)
    network.ensure_bridge()
    _say("starting etcd")
    start_etcd()
    _say("starting kube-apiserver")
    start_apiserver()
    _say("starting kube-controller-manager")
    start_controller_manager()
    _say("starting cert-manager (controller, cainjector)")
    start_cert_manager()
    _say("starting the kubelet stand-in for the chart's Pods")
    start_kubelet()
    _say(f"helm upgrade --install {RELEASE} ./chart -n {RELEASE_NAMESPACE} --wait")
    try:
        install_chart()
    except kube.CommandError as error:
        raise procs.StartupError(f"{error}\n{_webhook_log_tails()}") from None
    expected = release_labels()
    try:
        procs.wait_until(
            "kubelet", lambda: _pod_is_labelled(expected), 180, f"a new Pod labelled {expected}"
        )
    except procs.StartupError as error:
        raise procs.StartupError(f"{error}\n{_webhook_log_tails()}") from None
    _say(f"up in {time.monotonic() - started:.0f}s")
    kubectl = BIN / "kubectl"
    print(
        f"""
The local control plane is up, with cert-manager and the webhook serving.

  export KUBECONFIG={FILES.kubeconfig}
  export PATH={BIN}:$PATH

Create a Pod and see its labels (there is no scheduler, so it stays Pending):

  {kubectl} run demo --image=registry.k8s.io/pause:3.10 --labels=app=demo -n default
  {kubectl} get pod demo -n default --show-labels

Logs: {FILES.logs}/   Stop everything: make down
"""
    )


def down() -> None:
    for name in reversed(DAEMONS):
        procs.stop(name)
    network.teardown()
    # Nothing of a stopped cluster is worth keeping, its 30-day certificates least of
    # all; the next `up` starts clean.
    for path in (FILES.etcd_data, FILES.pods, FILES.pids, FILES.pki, EMPTY_DIRS):
        shutil.rmtree(path, ignore_errors=True)
    _say("down: nothing left running")


def status() -> int:
    down_count = 0
    for name in DAEMONS:
        pid = procs.running_pid(name)
        print(f"{name:26} {f'running (pid {pid})' if pid else 'stopped'}")
        down_count += pid is None
    return 1 if down_count else 0
