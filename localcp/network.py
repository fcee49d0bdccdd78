"""The project's own test network: a host bridge and one network namespace per "Pod".

Uses iproute2 (`ip`), as root. Endpoint addresses may not be loopback, so each
webhook replica gets an address of its own that the API server dials.
"""

from __future__ import annotations

import subprocess

from localcp.layout import BRIDGE, BRIDGE_ADDRESS, FIRST_POD_HOST, NETWORK_PREFIX

NETNS_PREFIX = "localcp-pod"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _exists(*args: str) -> bool:
    return _ip(*args, check=False).returncode == 0


def ensure_bridge() -> None:
    if not _exists("link", "show", BRIDGE):
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def pod_address(index: int) -> str:
    return f"{NETWORK_PREFIX}.{FIRST_POD_HOST + index}"


def netns_name(index: int) -> str:
    return f"{NETNS_PREFIX}{index}"


def ensure_pod_network(index: int) -> str:
    """A namespace with a veth to the bridge and the replica's address; returns its name."""
    ns = netns_name(index)
    host_end, pod_end = f"lcpveth{index}", f"lcpeth{index}"
    if not _exists("netns", "pids", ns):
        _ip("netns", "add", ns)
    if not _exists("link", "show", host_end):
        _ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end, "netns", ns)
        _ip("link", "set", host_end, "master", BRIDGE)
        _ip("link", "set", host_end, "up")
        _ip("-n", ns, "addr", "add", f"{pod_address(index)}/24", "dev", pod_end)
        _ip("-n", ns, "link", "set", pod_end, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", BRIDGE_ADDRESS)
    return ns


def teardown() -> None:
    """Delete every pod namespace (their veths go with them) and the bridge."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0]
        if name.startswith(NETNS_PREFIX):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                subprocess.run(["kill", "-KILL", pid], check=False)
            _ip("netns", "delete", name, check=False)
    if _exists("link", "show", BRIDGE):
        _ip("link", "delete", BRIDGE, check=False)
