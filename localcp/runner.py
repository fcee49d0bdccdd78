"""A Pod's container as a process in a network namespace of its own: start, probe, stop.

There is no container runtime: the container's command runs from this checkout's
virtualenv, under `ip netns exec`, with the Pod's own address (reported as its Pod IP),
its env, and its volume paths rewritten to their local directories.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

from localcp import network, volumes
from localcp.layout import BRIDGE_ADDRESS, FILES, ROOT, VENV_BIN
from localcp.podspec import Container

log = logging.getLogger("localcp.kubelet")


@dataclass
class RunningPod:
    uid: str
    name: str
    slot: int
    container: Container
    process: subprocess.Popen[bytes]
    ready: bool = False
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    # The last status reported, so that an unchanged one is not patched again.
    reported: str = ""
    next_probe: float = 0.0
    # Set when the Pod is being deleted: the monotonic time its grace period ends.
    stop_by: float | None = None

    @property
    def address(self) -> str:
        """The Pod IP: its own, or with hostNetwork the node's."""
        return BRIDGE_ADDRESS if self.container.host_network else network.pod_address(self.slot)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def start(uid: str, name: str, slot: int, container: Container) -> RunningPod:
    # hostNetwork: the host's namespace, where the server's ports are the node's.
    # Two such Pods with the same ports clash here as on a real node.
    enter = (
        [] if container.host_network else ["ip", "netns", "exec", network.ensure_pod_network(slot)]
    )
    mounts = volumes.mounts(uid, container)
    command = [volumes.rewrite_path(arg, mounts) for arg in container.command]
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": "/nonexistent",
        **{key: volumes.rewrite_path(value, mounts) for key, value in container.env.items()},
    }
    if "/tmp" in mounts:  # the container's /tmp emptyDir, not the host's
        env["TMPDIR"] = str(mounts["/tmp"])
    # The Pod's runAsUser is not applied: this machine's Python lives under
    # /root, which no other user can read. The image and the chart's
    # securityContext are what make the real Pod non-root.
    FILES.logs.mkdir(parents=True, exist_ok=True)
    with FILES.pod_log(name).open("ab") as out:
        process = subprocess.Popen(
            [*enter, *command],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningPod(uid, name, slot, container, process)
    log.info(
        "pod %s started at %s (pid %d): %s",
        name,
        running.address,
        process.pid,
        " ".join(command),
    )
    return running


# kubelet does not verify the serving certificate of an HTTPS probe. One context
# for every probe: building one loads the system's CA store.
PROBE_CONTEXT = ssl.create_default_context()
PROBE_CONTEXT.check_hostname = False
PROBE_CONTEXT.verify_mode = ssl.CERT_NONE


def probe(running: RunningPod) -> bool:
    container = running.container
    url = f"https://{running.address}:{container.readiness_port}{container.readiness_path}"
    try:
        with urllib.request.urlopen(url, context=PROBE_CONTEXT, timeout=2) as response:
            return bool(200 <= response.status < 400)
    except OSError:
        return False


def stop(running: RunningPod, grace: float) -> None:
    """SIGTERM the container, SIGKILL it after `grace` seconds (at least 1), and
    remove the Pod's volumes."""
    running.process.terminate()
    try:
        running.process.wait(max(grace, 1))
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()
    volumes.remove_volumes(running.uid)
    log.info("pod %s stopped (exit %s)", running.name, running.process.returncode)
