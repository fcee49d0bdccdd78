"""The node's network: a host bridge whose address is the node's, and the CNI
configuration that containerd uses to put every Pod on it.

The bridge exists before the API server starts, because the API server advertises
its address (the `kubernetes` Service's endpoint); the CNI bridge plugin then adds
each Pod's veth to it and gives the Pod an address from POD_CIDR. Uses iproute2 and
the CNI plugins of Debian's containernetworking-plugins, as root.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from localcp.layout import BRIDGE, BRIDGE_ADDRESS, NETWORK_PREFIX, NODE, POD_CIDR, SERVICE_CIDR

CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_NETWORK = "localcp"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def bridge_exists() -> bool:
    return _ip("link", "show", BRIDGE, check=False).returncode == 0


def ensure_bridge() -> None:
    if not bridge_exists():
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def cni_conflist() -> dict[str, object]:
    """bridge + host-local for the Pods' addresses, portmap for hostPort; its IP
    allocations live under the node's state, so `down` forgets them. Pods get a route
    to the Service range only, no default route: they reach the node and the Services
    (the API server among them), and nothing beyond this machine."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [
                            {
                                "subnet": POD_CIDR,
                                "rangeStart": f"{NETWORK_PREFIX}.10",
                                "gateway": BRIDGE_ADDRESS,
                            }
                        ]
                    ],
                    "routes": [{"dst": SERVICE_CIDR}],
                    "dataDir": str(NODE.cni_ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_cni_config(conf_dir: Path) -> None:
    plugins = ("bridge", "host-local", "portmap", "loopback")
    missing = [p for p in plugins if not (CNI_BIN_DIR / p).exists()]
    if missing:
        raise SystemExit(
            f"CNI plugins {', '.join(missing)} missing in {CNI_BIN_DIR}: run `make install` "
            "(Debian package containernetworking-plugins)"
        )
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-localcp.conflist").write_text(json.dumps(cni_conflist(), indent=2))


def teardown() -> None:
    """Delete the Pods' network namespaces that outlived their sandboxes (their veths go
    with them), then the bridge."""
    netns_dir = NODE.containerd_state / "netns"
    if netns_dir.is_dir():
        for path in netns_dir.iterdir():
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
            path.unlink(missing_ok=True)
    if bridge_exists():
        _ip("link", "delete", BRIDGE, check=False)
