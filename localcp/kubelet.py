"""Plays the kubelet (and, for its own Pods, the scheduler) on the local control plane.

There is no container runtime here, so this loop does for the Pods of one
namespace and label selector (the chart's) what kubelet would do:
- registers a Node and keeps its Lease renewed, so kube-controller-manager
  treats it as healthy;
- binds the selected Pending Pods to that Node (the scheduler's one job here);
- runs each Pod's container command, args and env as a process in a network
  namespace of its own, with an address of its own that it reports as the Pod IP;
  a `hostNetwork` Pod runs in the host's namespace instead, and its Pod IP is the
  node's address (the bridge's, which the API server on this host reaches);
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

This module is the loop; each concern has its own module: `podspec` (what a Pod
asks for), `volumes` (Secret projection and emptyDirs), `runner` (the container
process and its probe), `node` (Node, Lease, binding), `podstatus` (what is reported).
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from typing import Any

from localcp import kube, network, node, podstatus, runner, volumes
from localcp.layout import MAX_PODS, NODE_NAME
from localcp.podspec import read_container
from localcp.runner import RunningPod

log = logging.getLogger("localcp.kubelet")

POLL_SECONDS = 1.0
RESTART_BACKOFF_SECONDS = 2.0


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

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        network.ensure_bridge()
        node.register()
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

    def heartbeat(self) -> None:
        """Renew the Node's Lease four times per lease duration."""
        if time.monotonic() - self.lease_renewed < node.LEASE_SECONDS / 4:
            return
        node.renew_lease()
        self.lease_renewed = time.monotonic()

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
                node.bind(pod)
            elif pod["spec"]["nodeName"] != NODE_NAME:
                continue
            elif pod["metadata"].get("deletionTimestamp"):
                self.terminate(pod)
            else:
                self.sync_pod(pod, secrets)

    def free_slot(self) -> int | None:
        used = {p.slot for p in self.pods.values()}
        return next((s for s in range(MAX_PODS) if s not in used), None)

    def sync_pod(self, pod: dict[str, Any], secrets: dict[str, dict[str, str]]) -> None:
        """Start the Pod's container, or keep it running and probed; then report status."""
        running = self.pods.get(pod["metadata"]["uid"])
        if running is None:
            running = self.start_pod(pod, secrets)
            if running is None:
                return
        else:
            volumes.mount_volumes(running.uid, running.container, secrets)
            running = self.check(running)
        podstatus.report(pod, running)

    def start_pod(
        self, pod: dict[str, Any], secrets: dict[str, dict[str, str]]
    ) -> RunningPod | None:
        """A new Pod: a slot (its network), its volumes, its process; None if it must wait."""
        uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
        slot = self.free_slot()
        if slot is None:
            log.warning("no free slot for pod %s", name)
            return None
        container = read_container(pod)
        if not volumes.mount_volumes(uid, container, secrets):
            return None
        self.pods[uid] = running = runner.start(uid, name, slot, container)
        return running

    def check(self, running: RunningPod) -> RunningPod:
        """Restart a container that exited (after a back-off), or probe a live one:
        every loop until it is first ready (a startup probe would do as much), then at
        the probe's period. Returns the Pod as it now runs."""
        if not running.alive:
            running.ready = False
            if time.monotonic() - running.started > RESTART_BACKOFF_SECONDS:
                log.warning(
                    "pod %s exited with %s; restarting", running.name, running.process.returncode
                )
                restarted = runner.start(running.uid, running.name, running.slot, running.container)
                restarted.restarts = running.restarts + 1
                self.pods[running.uid] = running = restarted
        elif not running.ready or time.monotonic() >= running.next_probe:
            running.next_probe = time.monotonic() + running.container.probe_period
            running.ready = runner.probe(running)
        return running

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
            if running.alive and time.monotonic() < running.stop_by:
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
        if running is not None:
            runner.stop(running, grace)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True, help="label selector of the Pods to run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Kubelet(args.namespace, args.selector).run()


if __name__ == "__main__":
    main()
