"""Where the local control plane keeps its files, and the fixed addresses it uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".cache" / "bin"
RUN = ROOT / ".cache" / "run"
VENV_BIN = ROOT / ".venv" / "bin"
# The Pods' emptyDir volumes. Not under RUN: the server puts a unix socket in its
# /tmp emptyDir, and a socket's path may not be longer than 107 bytes.
EMPTY_DIRS = Path("/run/localcp")

ETCD_CLIENT_URL = "http://127.0.0.1:2379"
ETCD_PEER_URL = "http://127.0.0.1:2380"
APISERVER_PORT = 6443
APISERVER_URL = f"https://127.0.0.1:{APISERVER_PORT}"
SERVICE_CIDR = "10.96.0.0/16"

# The project's own test network: a bridge on the host and one network namespace
# per webhook replica. Endpoint addresses may not be loopback, so the "Pods" need
# addresses of their own; the API server advertises the bridge address so that it
# does not log an error for the `kubernetes` Service every ten seconds.
BRIDGE = "plbr0"
NETWORK_PREFIX = "172.31.250"
BRIDGE_ADDRESS = f"{NETWORK_PREFIX}.1"
FIRST_POD_HOST = 10
# Pods the node runs at once: replicas plus a rolling update's surge.
MAX_PODS = 8
NODE_NAME = "localcp-node"

RELEASE = "webhook"
RELEASE_NAMESPACE = "pod-labeler"
CERT_MANAGER_NAMESPACE = "cert-manager"


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
    def pods(self) -> Path:
        return self.root / "pods"

    def pod(self, uid: str) -> Path:
        """One Pod's Secret volumes."""
        return self.pods / uid[:8]

    def pod_log(self, name: str) -> Path:
        """What one Pod's container writes to stdout and stderr."""
        return self.logs / f"webhook-{name}.log"

    def pod_logs(self) -> list[Path]:
        return sorted(self.logs.glob(self.pod_log("*").name))


FILES = RunFiles()
