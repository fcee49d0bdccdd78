"""Where the local cluster keeps its files, and the fixed addresses it uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".cache" / "bin"
RUN = ROOT / ".cache" / "run"
# containerd's image store: kept across `make down`, so that a warm `make up` imports
# no image it already has.
CONTAINERD_ROOT = ROOT / ".cache" / "containerd"
# The node's state: sockets, mounts, the Pods' volumes and network namespaces. Not
# under the checkout: a socket's path may not be longer than 107 bytes, and the
# checkout may be anywhere. `make down` removes it all.
NODE_STATE = Path("/run/localcp")

ETCD_CLIENT_URL = "http://127.0.0.1:2379"
ETCD_PEER_URL = "http://127.0.0.1:2380"
APISERVER_PORT = 6443
APISERVER_URL = f"https://127.0.0.1:{APISERVER_PORT}"
SERVICE_CIDR = "10.96.0.0/16"

# The node's network: a bridge on the host, and the Pods' addresses on it (the CNI
# bridge plugin's). The bridge address is the node's address and the one the API
# server advertises, so Pods reach it through the `kubernetes` Service.
BRIDGE = "plbr0"
NETWORK_PREFIX = "172.31.250"
POD_CIDR = f"{NETWORK_PREFIX}.0/24"
BRIDGE_ADDRESS = f"{NETWORK_PREFIX}.1"
NODE_NAME = "localcp-node"

RELEASE = "webhook"
RELEASE_NAMESPACE = "pod-labeler"
CERT_MANAGER_NAMESPACE = "cert-manager"
# The webhook's image as `make up` builds it: the tag is a digest of what goes in.
IMAGE_REPOSITORY = "localhost/pod-labeler"


@dataclass(frozen=True)
class RunFiles:
    """The files of one running control plane, all under .cache/run."""

    root: Path = RUN

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def config(self) -> Path:
        """The node's configuration files: containerd, CNI, kubelet, kube-proxy."""
        return self.root / "config"

    @property
    def host_state(self) -> Path:
        """What the node changed on the host, as it was before: put back by `down`."""
        return self.root / "host-state.json"


@dataclass(frozen=True)
class NodeFiles:
    """The node's state under NODE_STATE."""

    root: Path = NODE_STATE

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni-ipam"


FILES = RunFiles()
NODE = NodeFiles()
