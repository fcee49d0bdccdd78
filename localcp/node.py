"""The node: containerd with runc and the CNI bridge, a real kubelet, and kube-proxy.

Each is the real component, built by hack/install.sh at the version in versions.env,
with a configuration file of the project's own under .cache/run/config. What this
host needs, and why each setting is there, is said where it is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from localcp import kube, network, procs
from localcp.layout import (
    BIN,
    BRIDGE_ADDRESS,
    CONTAINERD_ROOT,
    FILES,
    NODE,
    NODE_NAME,
    POD_CIDR,
)

# Stopped in the reverse of this order.
DAEMONS = ("containerd", "kubelet", "kube-proxy")
CRI_NAMESPACE = "k8s.io"  # containerd's namespace for Kubernetes' containers and images
RUNC = "/usr/sbin/runc"  # Debian's; crun 1.8 refuses this host's mixed cgroup layout
KUBELET_PORT = 10250
# podman's settings for this host (runc, ulimits), shared with hack/install.sh.
PODMAN_CONF = Path(__file__).resolve().parent / "containers.conf"


def _containerd_config(sandbox_image: str) -> str:
    """containerd 2.4 (config version 4); only what differs from the defaults."""
    cni_conf_dir = FILES.config / "cni"
    return f"""version = 4
root = "{CONTAINERD_ROOT}"
state = "{NODE.containerd_state}"
# Not the host's /etc/containerd/conf.d: this node is configured here alone.
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = "{NODE.containerd_socket}"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "{NODE.containerd_socket}.ttrpc"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  # Built locally (hack/install.sh); pinned so that image GC never drops it.
  sandbox = "{sandbox_image}"

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails, because the
  # sandbox asks for an oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  # The Pods' network namespaces under the node's state, which `make down` clears.
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{network.CNI_BIN_DIR}"]
  conf_dir = "{cni_conf_dir}"
"""


def _kubelet_config() -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{NODE.containerd_socket}",
        # This host's cgroups are v1, which kubelet 1.37 still runs with this set.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        # Served on the node's address for the API server (logs, exec), with client
        # certificates checked against the cluster CA and every request authorized by
        # the API server; nothing unauthenticated, no read-only port.
        "address": BRIDGE_ADDRESS,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(FILES.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        # Outside its root dir by default; moved under the node's state.
        "podLogsDir": str(NODE.pod_logs),
        "volumePluginDir": str(NODE.volume_plugins),
        # Mounted Secrets follow their changes within this period (default 1m): how
        # fast a renewed certificate reaches the server.
        "syncFrequency": "10s",
        # No image here can be pulled again, so image GC must never remove one; and
        # a nearly full disk must not evict the webhook's Pods in the middle of a test.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
    }


def _kube_proxy_config() -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(FILES.kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Zero: leave the host's conntrack table size and timeouts as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def _write_config(name: str, content: str) -> Path:
    path = FILES.config / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def ctr(*args: str, check: bool = True, timeout: float = 120) -> str:
    """containerd's own client, on the node's socket, in Kubernetes' namespace."""
    argv = [str(BIN / "ctr"), "--address", str(NODE.containerd_socket), "-n", CRI_NAMESPACE, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise procs.StartupError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def start_containerd(sandbox_image: str) -> None:
    for binary in (RUNC, "/usr/bin/podman"):
        if not Path(binary).exists():
            raise SystemExit(f"{binary} is missing: run `make install` (Debian packages)")
    network.write_cni_config(FILES.config / "cni")
    config = _write_config("containerd.toml", _containerd_config(sandbox_image))
    NODE.root.mkdir(parents=True, exist_ok=True)
    procs.start(
        "containerd",
        [str(BIN / "containerd"), f"--config={config}"],
        # The shim is found on PATH, next to containerd.
        env={"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"},
    )
    procs.wait_until("containerd", _containerd_answers, 60, "containerd's socket")


def _containerd_answers() -> bool:
    try:
        ctr("version", timeout=5)  # prints the client's version even without a server
    except procs.StartupError:
        return False
    return True


def has_image(name: str) -> bool:
    return name in ctr("images", "ls", "-q").split()


def import_image(name: str) -> None:
    """Copy an image podman built into containerd (no registry between them)."""
    if has_image(name):
        return
    archive = FILES.root / "image.tar"
    try:
        subprocess.run(
            ["podman", "save", "--quiet", "--format", "docker-archive", "-o", str(archive), name],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF)},
        )
        ctr("images", "import", str(archive), timeout=300)
    except subprocess.CalledProcessError as error:
        raise procs.StartupError(f"podman save {name} failed: {error.stderr.strip()}") from None
    finally:
        archive.unlink(missing_ok=True)


def remove_images(keep: str, repository: str) -> None:
    """Forget the images of `repository` other than `keep` (older builds)."""
    for name in ctr("images", "ls", "-q").split():
        if name.startswith(f"{repository}:") and name != keep:
            ctr("images", "rm", name, check=False)


def start_kubelet() -> None:
    config = _write_config("kubelet.json", json.dumps(_kubelet_config(), indent=2))
    procs.start(
        "kubelet",
        [
            str(BIN / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={FILES.kubeconfig}",
            f"--root-dir={NODE.kubelet}",
            f"--cert-dir={NODE.kubelet / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={BRIDGE_ADDRESS}",
            "--v=1",
        ],
    )
    procs.wait_until("kubelet", _node_is_ready, 120, f"Node {NODE_NAME} Ready")


def _node_is_ready() -> bool:
    node = kube.get_json("node", NODE_NAME)
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def start_kube_proxy() -> None:
    config = _write_config("kube-proxy.json", json.dumps(_kube_proxy_config(), indent=2))
    procs.start("kube-proxy", [str(BIN / "kube-proxy"), f"--config={config}", "--v=1"])


def drain(timeout: float = 90) -> None:
    """Delete every Pod and wait until the kubelet has stopped them all (their
    sandboxes, network namespaces and volumes go with them)."""
    kube.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=false", check=False)
    with contextlib.suppress(procs.StartupError):
        procs.wait_until(
            "kubelet",
            lambda: not kube.kubectl("get", "pods", "-A", "-o", "name", check=False).strip(),
            timeout,
            "every Pod to be stopped",
        )


def clear_leftovers() -> None:
    """What a daemon that died (or was killed) left: containers, shims, mounts, cgroups."""
    if procs.running_pid("containerd") is not None:
        for task in ctr("tasks", "ls", "-q", check=False).split():
            ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            ctr("tasks", "delete", "-f", task, check=False)
        for container in ctr("containers", "ls", "-q", check=False).split():
            ctr("containers", "delete", container, check=False)
    _kill_shims()
    _unmount_under(NODE.root, CONTAINERD_ROOT)
    _remove_cgroups("kubepods")


def leftovers() -> list[str]:
    """What of the node is still on the host: nothing, once `down` has run."""
    found = [f"process {pid} ({BIN / 'containerd-shim-runc-v2'})" for pid in _shim_pids()]
    found += [f"mount {m}" for m in _mounts_under(NODE.root, CONTAINERD_ROOT)]
    found += [f"cgroup {c}" for c in _cgroups("kubepods")]
    if NODE.root.exists():
        found.append(f"directory {NODE.root}")
    return found


def _shim_pids() -> list[int]:
    shim = str(BIN / "containerd-shim-runc-v2")
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "exe") == shim:
                    pids.append(int(proc.name))
    return pids


def _kill_shims() -> None:
    for pid in _shim_pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _mounts_under(*roots: Path) -> list[str]:
    prefixes = tuple(f"{root}/" for root in roots)
    points = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return [p for p in points if p.startswith(prefixes) or p in {str(r) for r in roots}]


def _unmount_under(*roots: Path) -> None:
    """Unmount everything mounted below `roots`, deepest first (lazily: a busy one goes
    once its last user does)."""
    below = _mounts_under(*roots)
    for mount in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def _cgroups(name: str) -> list[Path]:
    """`name` at the top of every cgroup v1 hierarchy, and of a v2 one."""
    return [h / name for h in Path("/sys/fs/cgroup").iterdir() if (h / name).is_dir()]


def _remove_cgroups(name: str) -> None:
    """kubelet's cgroup tree (`kubepods`, its QoS classes and Pods), in every cgroup v1
    hierarchy and in a v2 one; children before parents."""
    for top in _cgroups(name):
        for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def remove_state() -> None:
    shutil.rmtree(NODE.root, ignore_errors=True)
