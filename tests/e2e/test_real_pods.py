"""What only real Pods show: the image as the kubelet and the container runtime run it
under the chart's securityContext and resources.

Exercises: the kubelet and its container runtime (runc) applying the chart's
securityContext (runAsUser, readOnlyRootFilesystem, capabilities, seccomp), `kubectl
exec` through the API server and the kubelet, and the memory limit as a cgroup limit
that the server sizes its connection limit from.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, wait_for
from tests.e2e.release import Release, carries

# Run inside the webhook's container: what the kernel says of the process, and what
# happens when it writes to / and to /tmp.
INSIDE = r"""
import errno, json
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines())
def writes(path):
    try:
        open(path, "w").close()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]
print(json.dumps({
    "uid": status["Uid"].split(), "gid": status["Gid"].split(),
    "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "root": writes("/probe"), "tmp": writes("/tmp/probe"),
}))
"""
IDLE_CONNECTIONS = 1000


def webhook_pods(cluster: Cluster, release: Release) -> list[dict[str, Any]]:
    pods = cluster.get("pods", "-n", release.namespace, "-l", release.selector)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    if not running:
        pytest.skip("the release runs no webhook Pods (mode: policy)")
    return running


@pytest.fixture(scope="module")
def inside(cluster: Cluster, release: Release) -> dict[str, Any]:
    pod = webhook_pods(cluster, release)[0]
    ran = cluster.kubectl(
        "exec", "-n", release.namespace, pod["metadata"]["name"], "--",
        "python", "-c", INSIDE,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(ran.stdout)
    return found


def test_the_webhook_runs_as_user_and_group_65532(inside: dict[str, Any]) -> None:
    assert inside["uid"] == ["65532"] * 4
    assert inside["gid"] == ["65532"] * 4


def test_the_webhook_has_no_capabilities(inside: dict[str, Any]) -> None:
    assert int(inside["cap_eff"], 16) == 0
    assert int(inside["cap_prm"], 16) == 0


def test_the_webhook_cannot_gain_privileges(inside: dict[str, Any]) -> None:
    assert inside["no_new_privs"] == "1"


def test_the_webhook_runs_under_a_seccomp_filter(inside: dict[str, Any]) -> None:
    assert inside["seccomp"] == "2"  # SECCOMP_MODE_FILTER: RuntimeDefault's profile


def test_the_webhooks_root_filesystem_is_read_only_and_tmp_is_writable(
    inside: dict[str, Any],
) -> None:
    assert inside["root"] == "EROFS"
    assert inside["tmp"] == "ok"


def _reachable(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=2):
        return True
    return False


@contextlib.contextmanager
def idle_tls_connections(address: str, port: int, count: int) -> Iterator[int]:
    """Up to `count` TLS connections, handshaken and then left idle; yields how many the
    server accepted (past its connection limit it may shed some)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's identity is not the point here
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(count):
            with contextlib.suppress(OSError):
                raw = socket.create_connection((address, port), timeout=5)
                held.append(context.wrap_socket(raw))
        yield len(held)
    finally:
        for connection in held:
            with contextlib.suppress(OSError):
                connection.close()


def _restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))


def test_a_replica_holding_1000_idle_tls_connections_keeps_running_and_labelling(
    cluster: Cluster, release: Release, namespace: str
) -> None:
    pod = webhook_pods(cluster, release)[0]
    name, address = pod["metadata"]["name"], pod["status"]["podIP"]
    (container,) = pod["spec"]["containers"]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "https")
    if not _reachable(address, port):
        pytest.skip(f"Pod IP {address} is not reachable from here (not the local cluster)")
    before = _restarts(pod)

    with idle_tls_connections(address, port, IDLE_CONNECTIONS) as accepted:
        assert accepted > 0
        created = wait_for(
            lambda: cluster.try_create_pod(namespace)[0], 60, "a Pod admitted under the load"
        )
        assert carries(created, release.original_labels)

    after = cluster.get("pod", name, "-n", release.namespace)
    assert _restarts(after) == before
    (status,) = after["status"]["containerStatuses"]
    assert status["ready"]
