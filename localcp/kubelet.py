"""Plays the kubelet (and, for its own Pods, the scheduler) on the local control plane.

There is no container runtime here, so this loop does for the Pods of one
namespace and label selector (the chart's) what kubelet would do:
- registers a Node and keeps its Lease renewed, so kube-controller-manager
  treats it as healthy;
- binds the selected Pending Pods to that Node (the scheduler's one job here);
- runs each Pod's container command, args and env as a process in a network
  namespace of its own, with an address of its own that it reports as the Pod IP;
- mounts Secret volumes as kubelet does: files behind a `..data` symlink swapped
  atomically when the Secret changes (how cert-manager's renewals reach the server),
  and emptyDir volumes as fresh directories; mount paths in args and env are
  rewritten to those directories, since there is no mount namespace;
- runs the readiness probe and reports the Pod's Ready condition, restarts a
  container that exits, and on deletion sends SIGTERM, waits out the grace period
  and removes the Pod.
Everything else is the real control plane: the Deployment and ReplicaSet
controllers roll Pods on `helm upgrade`, the EndpointSlice controller publishes
ready Pod IPs, and kube-apiserver (--enable-aggregator-routing) dials them when it
calls the webhook. It talks to the cluster only through the API.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcp import kube, network
from localcp.layout import BRIDGE_ADDRESS, FILES, MAX_PODS, NODE_NAME, ROOT, VENV_BIN

log = logging.getLogger("localcp.kubelet")

POLL_SECONDS = 1.0
LEASE_SECONDS = 40
RESTART_BACKOFF_SECONDS = 2.0
EMPTY_DIRS = Path("/run/localcp")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Volume:
    name: str
    mount_path: str
    secret: str | None  # None for an emptyDir
    mode: int = 0o644
    # The Secret volume's `items`, as (key, path): only these keys are projected, and
    # the Pod waits until the Secret has every one of them. Empty: every key, as is.
    items: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Container:
    """What a Pod runs, read from its spec."""

    name: str
    command: list[str]
    env: dict[str, str]
    volumes: list[Volume]
    readiness_path: str
    readiness_port: int
    probe_period: float


def _port_number(port: int | str, ports: dict[str, int]) -> int:
    return ports[port] if isinstance(port, str) else int(port)


def read_container(pod: dict[str, Any]) -> Container:
    spec = pod["spec"]
    container = spec["containers"][0]
    sources = {v["name"]: v for v in spec.get("volumes", [])}
    volumes = []
    for mount in container.get("volumeMounts", []):
        secret = sources[mount["name"]].get("secret")
        volumes.append(
            Volume(
                mount["name"],
                mount["mountPath"],
                secret["secretName"] if secret else None,
                (secret or {}).get("defaultMode", 0o644),
                tuple((item["key"], item["path"]) for item in (secret or {}).get("items", [])),
            )
        )
    ports = {
        p.get("name", str(p["containerPort"])): p["containerPort"]
        for p in container.get("ports", [])
    }
    readiness = container.get("readinessProbe", {})
    probe = readiness.get("httpGet", {})
    return Container(
        name=container["name"],
        command=[*container.get("command", []), *container.get("args", [])],
        env={e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
        volumes=volumes,
        readiness_path=probe.get("path", "/readyz"),
        readiness_port=_port_number(probe.get("port", next(iter(ports.values()))), ports),
        probe_period=float(readiness.get("periodSeconds", 10)),
    )


def pod_directory(uid: str) -> Path:
    return FILES.pods / uid[:8]


def volume_directory(uid: str, volume: Volume) -> Path:
    # emptyDirs go under /run: the server puts a unix socket in its /tmp, and a
    # socket's path may not be longer than 107 bytes.
    if volume.secret is None:
        return EMPTY_DIRS / uid[:8] / volume.name
    return pod_directory(uid) / volume.name


def rewrite_path(value: str, mounts: dict[str, Path]) -> str:
    """Point a container path, or the path of a `--flag=path`, at its volume's local
    directory: the longest mount path that contains it wins, and it is applied once."""
    flag, path = "", value
    if value.startswith("-") and "=" in value:
        name, _, path = value.partition("=")
        flag = name + "="
    for mount_path in sorted(mounts, key=len, reverse=True):
        base = mount_path.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return flag + str(mounts[mount_path]) + path[len(base) :]
    return value


def secret_files(
    data: dict[str, str], items: tuple[tuple[str, str], ...]
) -> dict[str, bytes] | None:
    """The files a Secret volume holds, from the Secret's (base64) data. With `items`,
    only those keys, at their paths; None while a listed key is missing: kubelet then
    fails the mount ("couldn't find key") and the container does not start."""
    if not items:
        return {key: base64.b64decode(value) for key, value in data.items()}
    if any(key not in data for key, _ in items):
        return None
    return {path: base64.b64decode(data[key]) for key, path in items}


def write_secret_volume(target: Path, files: dict[str, bytes], mode: int) -> bool:
    """Project a Secret the way kubelet's AtomicWriter does; returns True if it changed.

    Files live in a timestamped directory; `..data` points at it and each key is a
    symlink through `..data`, so a reader never sees a half-updated set of files.
    """
    decoded = dict(sorted(files.items()))
    digest = hashlib.sha256(repr(sorted(decoded.items())).encode()).hexdigest()[:16]
    payload = f"..{digest}"
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    if old == payload:
        return False
    target.mkdir(parents=True, exist_ok=True)
    (target / payload).mkdir(exist_ok=True)
    for key, content in decoded.items():
        (target / payload / key).write_bytes(content)
        (target / payload / key).chmod(mode)
    staging = target / "..data_tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(payload)
    os.replace(staging, data_link)
    for key in decoded:
        if not (target / key).is_symlink():
            (target / key).symlink_to(f"..data/{key}")
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


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
    reported: str = ""
    next_probe: float = 0.0
    # Set when the Pod is being deleted: the monotonic time its grace period ends.
    stop_by: float | None = None

    @property
    def address(self) -> str:
        return network.pod_address(self.slot)

    @property
    def directory(self) -> Path:
        return pod_directory(self.uid)


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


def _matches(obj: dict[str, Any], selector: str) -> bool:
    """An equality-based label selector (`k=v,k2=v2`), the only kind this loop is given."""
    labels = obj["metadata"].get("labels") or {}
    wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
    return all(labels.get(key) == value for key, value in wanted.items())


class Kubelet:
    def __init__(self, namespace: str, selector: str) -> None:
        self.namespace = namespace
        self.selector = selector
        self.pods: dict[str, RunningPod] = {}
        self.lease_renewed = 0.0
        self.stopping = False

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        network.ensure_bridge()
        self.register_node()
        while not self.stopping:
            try:
                self.heartbeat()
                self.sync()
            except Exception:
                log.exception("sync failed; retrying")
            time.sleep(POLL_SECONDS)
        for uid in list(self.pods):
            self.stop(uid, grace=10)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def sync(self) -> None:
        # One call a second for everything: the Pods, and the Secrets they mount
        # (cert-manager's carry none of the chart's labels, so no selector here).
        listed = kube.get_json("pods,secrets", "-n", self.namespace) or {"items": []}
        pods = {
            p["metadata"]["uid"]: p
            for p in listed["items"]
            if p["kind"] == "Pod" and _matches(p, self.selector)
        }
        secrets = {
            s["metadata"]["name"]: s.get("data") or {}
            for s in listed["items"]
            if s["kind"] == "Secret"
        }
        for uid in list(self.pods):
            if uid not in pods:
                self.stop(uid, grace=0)
        for pod in pods.values():
            if not pod["spec"].get("nodeName"):
                self.bind(pod)
            elif pod["spec"]["nodeName"] != NODE_NAME:
                continue
            elif pod["metadata"].get("deletionTimestamp"):
                self.terminate(pod)
            else:
                self.sync_pod(pod, secrets)

    # --- node -----------------------------------------------------------------------

    def register_node(self) -> None:
        if kube.get_json("node", NODE_NAME) is None:
            kube.kubectl(
                "create",
                "-f",
                "-",
                stdin=json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {
                            "name": NODE_NAME,
                            "labels": {"kubernetes.io/hostname": NODE_NAME},
                        },
                    }
                ),
            )
        capacity = {"cpu": "2", "memory": "24Gi", "pods": str(MAX_PODS)}
        kube.kubectl(
            "patch",
            "node",
            NODE_NAME,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "status": {
                        "capacity": capacity,
                        "allocatable": capacity,
                        "addresses": [{"type": "InternalIP", "address": BRIDGE_ADDRESS}],
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "reason": "KubeletReady",
                                "message": "localcp kubelet stand-in is running",
                                "lastHeartbeatTime": _now(),
                                "lastTransitionTime": _now(),
                            }
                        ],
                    }
                }
            ),
        )

    def heartbeat(self) -> None:
        """Renew the node's Lease, which is how kube-controller-manager knows it is alive."""
        if time.monotonic() - self.lease_renewed < LEASE_SECONDS / 4:
            return
        kube.apply(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": NODE_NAME, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": NODE_NAME,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": _now_micro(),
                },
            }
        )
        self.lease_renewed = time.monotonic()

    def bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        kube.kubectl(
            "create",
            "-f",
            "-",
            check=False,
            stdin=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "uid": meta["uid"],
                    },
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
                }
            ),
        )

    # --- pods -----------------------------------------------------------------------

    def free_slot(self) -> int | None:
        used = {p.slot for p in self.pods.values()}
        return next((s for s in range(MAX_PODS) if s not in used), None)

    def sync_pod(self, pod: dict[str, Any], secrets: dict[str, dict[str, str]]) -> None:
        uid = pod["metadata"]["uid"]
        running = self.pods.get(uid)
        if running is None:
            slot = self.free_slot()
            if slot is None:
                log.warning("no free slot for pod %s", pod["metadata"]["name"])
                return
            container = read_container(pod)
            if not self.mount_volumes(uid, container, secrets):
                return
            self.pods[uid] = running = self.start(uid, pod["metadata"]["name"], slot, container)
        else:
            self.mount_volumes(uid, running.container, secrets)
            if running.process.poll() is not None:
                running.ready = False
                if time.monotonic() - running.started > RESTART_BACKOFF_SECONDS:
                    log.warning(
                        "pod %s exited with %s; restarting",
                        running.name,
                        running.process.returncode,
                    )
                    restarted = self.start(uid, running.name, running.slot, running.container)
                    restarted.restarts = running.restarts + 1
                    self.pods[uid] = running = restarted
            elif not running.ready or time.monotonic() >= running.next_probe:
                # Until first ready, every loop (a startup probe would do as much);
                # then at the probe's period.
                running.next_probe = time.monotonic() + running.container.probe_period
                running.ready = probe(running)
        self.report_status(pod, running)

    def mount_volumes(
        self, uid: str, container: Container, secrets: dict[str, dict[str, str]]
    ) -> bool:
        """Project every volume; False while a Secret, or a key its `items` name, does not
        exist yet (kubelet waits too)."""
        for volume in container.volumes:
            target = volume_directory(uid, volume)
            if volume.secret is None:
                target.mkdir(parents=True, exist_ok=True)
                continue
            data = secrets.get(volume.secret)
            if data is None:
                log.info("waiting for Secret %s", volume.secret)
                return False
            files = secret_files(data, volume.items)
            if files is None:
                log.info("waiting for the keys %s of Secret %s", volume.items, volume.secret)
                return False
            if write_secret_volume(target, files, volume.mode):
                log.info("pod %s: Secret %s projected", uid[:8], volume.secret)
        return True

    def start(self, uid: str, name: str, slot: int, container: Container) -> RunningPod:
        netns = network.ensure_pod_network(slot)
        mounts = {v.mount_path: volume_directory(uid, v) for v in container.volumes}
        command = [rewrite_path(arg, mounts) for arg in container.command]
        env = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "HOME": "/nonexistent",
            **{key: rewrite_path(value, mounts) for key, value in container.env.items()},
        }
        if "/tmp" in mounts:  # the container's /tmp emptyDir, not the host's
            env["TMPDIR"] = str(mounts["/tmp"])
        # The Pod's runAsUser is not applied: this machine's Python lives under
        # /root, which no other user can read. The image and the chart's
        # securityContext are what make the real Pod non-root.
        FILES.logs.mkdir(parents=True, exist_ok=True)
        with (FILES.logs / f"webhook-{name}.log").open("ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, *command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        log.info(
            "pod %s started at %s (pid %d): %s",
            name,
            network.pod_address(slot),
            process.pid,
            " ".join(command),
        )
        return RunningPod(uid, name, slot, container, process)

    def terminate(self, pod: dict[str, Any]) -> None:
        """A deleted Pod: SIGTERM its container once, and remove the Pod when the
        container has exited or its grace period is over. Never waits here, so the
        loop keeps starting and probing the other Pods meanwhile, as kubelet does."""
        uid = pod["metadata"]["uid"]
        running = self.pods.get(uid)
        if running is not None:
            if running.stop_by is None:
                grace = int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                running.stop_by = time.monotonic() + grace
                running.process.terminate()
                log.info("pod %s terminating (grace %ds)", running.name, grace)
            if running.process.poll() is None and time.monotonic() < running.stop_by:
                return
            self.stop(uid, grace=0)
        kube.kubectl(
            "delete",
            "pod",
            pod["metadata"]["name"],
            "-n",
            self.namespace,
            "--grace-period=0",
            "--force",
            "--wait=false",
            check=False,
        )

    def stop(self, uid: str, grace: float) -> None:
        running = self.pods.pop(uid, None)
        if running is None:
            return
        running.process.terminate()
        try:
            running.process.wait(max(grace, 1))
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
        shutil.rmtree(running.directory, ignore_errors=True)
        shutil.rmtree(EMPTY_DIRS / uid[:8], ignore_errors=True)
        log.info("pod %s stopped (exit %s)", running.name, running.process.returncode)

    def report_status(self, pod: dict[str, Any], running: RunningPod) -> None:
        alive = running.process.poll() is None
        state = f"{running.ready}/{alive}/{running.restarts}/{running.slot}"
        if state == running.reported:
            return
        ready = "True" if running.ready else "False"
        now = _now()
        status = {
            "phase": "Running",
            "hostIP": BRIDGE_ADDRESS,
            "hostIPs": [{"ip": BRIDGE_ADDRESS}],
            "podIP": running.address,
            "podIPs": [{"ip": running.address}],
            "startTime": pod["status"].get("startTime", now),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": running.container.name,
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": running.ready,
                    "started": alive,
                    "restartCount": running.restarts,
                    "state": {"running": {"startedAt": now}}
                    if alive
                    else {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        }
        kube.kubectl(
            "patch",
            "pod",
            pod["metadata"]["name"],
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        running.reported = state


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True, help="label selector of the Pods to run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Kubelet(args.namespace, args.selector).run()


if __name__ == "__main__":
    main()
