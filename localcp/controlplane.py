"""`up` and `down`: the whole local stack, in dependency order."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from localcp import host, image, kube, network, node, procs, prometheus
from localcp.layout import (
    APISERVER_PORT,
    APISERVER_URL,
    BIN,
    BRIDGE,
    BRIDGE_ADDRESS,
    CERT_MANAGER_NAMESPACE,
    ETCD_CLIENT_URL,
    ETCD_PEER_URL,
    FILES,
    IMAGE_REPOSITORY,
    NODE_NAME,
    RELEASE,
    RELEASE_NAMESPACE,
    ROOT,
    SERVICE_CIDR,
)
from localcp.pki import ensure_pki, write_kubeconfig

# Stopped in the reverse of this order, so that nothing loses its API server
# (or the API server its etcd) while it is still shutting down.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
CERT_MANAGER = ("cert-manager-controller", "cert-manager-cainjector")
DAEMONS = (*CONTROL_PLANE, *node.DAEMONS, *CERT_MANAGER, "prometheus")
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "kubectl",
    "helm",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "cert-manager-controller",
    "cert-manager-cainjector",
    "prometheus",
)


def _say(message: str) -> None:
    print(f"[localcp] {message}", file=sys.stderr, flush=True)


def _require_binaries() -> None:
    missing = [name for name in BINARIES if not (BIN / name).exists()]
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
            # Every address: the kubeconfig's is 127.0.0.1, the Pods' the node's (the
            # `kubernetes` Service's endpoint, which kube-proxy routes to).
            "--bind-address=0.0.0.0",
            f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={BRIDGE_ADDRESS}",
            # The node's name resolves nowhere here; its address does.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Dial a webhook's Service at an endpoint address (a ready Pod's IP),
            # as managed control planes whose API server runs off the node network do.
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


def _control_plane_flags() -> list[str]:
    """What kube-controller-manager and kube-scheduler share: the admin kubeconfig for
    the API and for checking who calls their own ports, loopback, one of each."""
    kubeconfig = str(FILES.kubeconfig)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
    ]


def start_controller_manager() -> None:
    procs.start(
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            *_control_plane_flags(),
            f"--service-account-private-key-file={FILES.pki / 'sa.key'}",
            f"--root-ca-file={FILES.pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=false",
        ],
    )
    # Namespaces get their `default` ServiceAccount from it; Pods need one.
    procs.wait_until(
        "kube-controller-manager",
        lambda: kube.get_json("serviceaccount", "default", "-n", "default") is not None,
        60,
        "the default ServiceAccount in namespace default",
    )


def start_scheduler() -> None:
    procs.start("kube-scheduler", [str(BIN / "kube-scheduler"), *_control_plane_flags()])


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


def install_chart(image_name: str) -> None:
    """Install, or upgrade to this checkout's chart and image, keeping the release's
    other values. A new image tag (app/ changed) rolls the Deployment."""
    repository, tag = image_name.rsplit(":", 1)
    kube.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(ROOT / "chart"),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--reuse-values",
        f"--set=image.repository={repository}",
        f"--set=image.tag={tag}",
        # The image is on the node already and no registry has it: fail at once
        # (ErrImageNeverPull) rather than retry a pull.
        "--set=image.pullPolicy=Never",
        "--wait",
        "--timeout=3m",
    )


def _webhook_image() -> str:
    """Build the webhook's image if what goes into it changed, and give it to containerd."""
    name = image.ensure_built(_base_image())
    node.import_image(name)
    return name


def _installed_images() -> list[str]:
    """The images hack/install.sh built for the node: the Pods' sandbox, and the
    benchmarks' reference webhook (bench/modes.py), named by its source's hash."""
    images = [_pinned("PAUSE_IMAGE")]
    reference = BIN / ".refwebhook.version"
    if reference.exists():
        images.append(f"localhost/refwebhook:{reference.read_text().strip()[:12]}")
    return images


def _pinned(name: str) -> str:
    """A value of versions.env (the Makefile exports them; this reads it when run alone)."""
    for line in (ROOT / "versions.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    raise SystemExit(f"{name} is not set in versions.env")


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
    """The webhook Pods' own logs and states, which say why a server would not start."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    pods = kube.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-l", selector, check=False)
    logs = kube.kubectl(
        "logs", "-n", RELEASE_NAMESPACE, "-l", selector, f"--tail={lines}", "--prefix", check=False
    )
    return f"{pods}{logs}" or "(no webhook Pods)"


def _start_control_plane() -> None:
    FILES.root.mkdir(parents=True, exist_ok=True)
    token = ensure_pki(FILES.pki)
    write_kubeconfig(FILES.kubeconfig, APISERVER_URL, FILES.pki / "ca.crt", token)
    host.record()
    network.ensure_bridge()
    _say("starting etcd")
    start_etcd()
    _say("starting kube-apiserver")
    start_apiserver()
    _say("starting kube-controller-manager and kube-scheduler")
    start_controller_manager()
    start_scheduler()


def _start_node() -> None:
    _say("starting containerd")
    node.start_containerd(_pinned("PAUSE_IMAGE"))
    for built in _installed_images():
        node.import_image(built)
    _say(f"starting kubelet and kube-proxy (node {NODE_NAME})")
    node.start_kubelet()
    node.start_kube_proxy()


def _install_webhook() -> str:
    """Build and install the webhook; returns its image once a new Pod comes back labelled."""
    _say("building the webhook's image from the Dockerfile (skipped when unchanged)")
    image_name = _webhook_image()
    _say(f"helm upgrade --install {RELEASE} ./chart -n {RELEASE_NAMESPACE} --wait ({image_name})")
    try:
        install_chart(image_name)
        expected = release_labels()
        procs.wait_until(
            "kubelet", lambda: _pod_is_labelled(expected), 180, f"a new Pod labelled {expected}"
        )
    except (kube.CommandError, procs.StartupError) as error:
        raise procs.StartupError(f"{error}\n{_webhook_log_tails()}") from None
    return image_name


def _forget_older_images() -> None:
    """The webhook images of earlier builds. Not at `up`: a release rolled back (or a
    test restoring it) may still run one while the cluster is up."""
    try:
        current = f"{IMAGE_REPOSITORY}:{image.tag_for(image.base_image_id(_base_image()))}"
    except SystemExit:  # no base image: nothing was ever built from it
        return
    image.remove_older(keep=current)
    node.remove_images(keep=current, repository=IMAGE_REPOSITORY)


def _base_image() -> str:
    return os.environ.get("LOCAL_BASE_IMAGE", _pinned("LOCAL_BASE_IMAGE"))


def up() -> None:
    host.require_root()
    _require_binaries()
    started = time.monotonic()
    _start_control_plane()
    _start_node()
    _say("starting cert-manager (controller, cainjector)")
    start_cert_manager()
    image_name = _install_webhook()
    _say(f"starting Prometheus on {prometheus.URL} (the chart's scrape and alerting rules)")
    prometheus.start()
    _say(f"up in {time.monotonic() - started:.0f}s")
    kubectl = BIN / "kubectl"
    print(
        f"""
The local cluster is up: a control plane, one node (kubelet, containerd, kube-proxy),
cert-manager, Prometheus, and the webhook serving from the image {image_name}.

  export KUBECONFIG={FILES.kubeconfig}
  export PATH={BIN}:$PATH

Create a Pod and see its labels:

  {kubectl} run demo --image={_pinned("PAUSE_IMAGE")} --labels=app=demo -n default
  {kubectl} get pod demo -n default --show-labels

Prometheus (scraping the webhook, with the chart's alerts): {prometheus.URL}
Logs: {FILES.logs}/ (the daemons), `kubectl logs` (the Pods).   Stop everything: make down
"""
    )


def down() -> None:
    """Stop the Pods through the kubelet first (their sandboxes, networks and volumes go
    with them), then every daemon; then clear what a killed daemon may have left, and
    put the host back as it was."""
    if procs.running_pid("kube-apiserver") and procs.running_pid("kubelet"):
        for name in ("kube-controller-manager", "kube-scheduler"):  # nothing recreates Pods
            procs.stop(name)
        node.drain()
    for name in reversed(DAEMONS):
        if name == "containerd" and procs.running_pid(name) is not None:
            node.clear_leftovers()
            _forget_older_images()
        procs.stop(name)
    node.clear_leftovers()
    network.teardown()
    node.remove_state()
    # Nothing of a stopped cluster is worth keeping, its 30-day certificates least of
    # all; the next `up` starts clean.
    for path in (FILES.etcd_data, FILES.pids, FILES.pki, FILES.config, prometheus.DATA):
        shutil.rmtree(path, ignore_errors=True)
    left = _leftovers()
    try:
        for change in host.restore():
            _say(f"host: {change}")
    except host.HostNotRestoredError as error:
        left += error.differences
    if left:
        raise SystemExit("make down left these behind:\n  " + "\n  ".join(left))
    _say("down: nothing left running, the host as the first `up` found it")


def _leftovers() -> list[str]:
    found = [f"daemon {name} (pid {pid})" for name in DAEMONS if (pid := procs.running_pid(name))]
    found += node.leftovers()
    if network.bridge_exists():
        found.append(f"bridge {BRIDGE}")
    return found


def status() -> int:
    down_count = 0
    for name in DAEMONS:
        pid = procs.running_pid(name)
        print(f"{name:26} {f'running (pid {pid})' if pid else 'stopped'}")
        down_count += pid is None
    return 1 if down_count else 0
