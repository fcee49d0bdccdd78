"""The kubelet stand-in gives a Pod the address kubelet would: its own, or the node's."""

from __future__ import annotations

from localcp import network
from localcp.layout import BRIDGE_ADDRESS
from localcp.podspec import read_container
from localcp.runner import RunningPod


def _pod(**spec: object) -> dict[str, object]:
    container = {
        "name": "server",
        "command": ["python"],
        "ports": [{"name": "https", "containerPort": 10443}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https"}},
    }
    return {"spec": {"containers": [container], **spec}}


def test_a_host_network_pod_runs_on_the_node_address() -> None:
    container = read_container(_pod(hostNetwork=True))
    running = RunningPod("uid", "name", 3, container, process=None)  # type: ignore[arg-type]

    assert container.host_network
    assert running.address == BRIDGE_ADDRESS


def test_a_pod_gets_the_address_of_its_own_network_namespace_by_default() -> None:
    container = read_container(_pod())
    running = RunningPod("uid", "name", 3, container, process=None)  # type: ignore[arg-type]

    assert not container.host_network
    assert running.address == network.pod_address(3) != BRIDGE_ADDRESS


def test_the_readiness_probe_port_follows_the_named_container_port() -> None:
    assert read_container(_pod()).readiness_port == 10443
