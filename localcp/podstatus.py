"""The status the kubelet stand-in reports for a Pod it runs: IPs, readiness, restarts."""

from __future__ import annotations

import json
from typing import Any

from localcp import kube
from localcp.layout import BRIDGE_ADDRESS
from localcp.runner import RunningPod


def pod_status(pod: dict[str, Any], running: RunningPod, now: str) -> dict[str, Any]:
    """The Pod's `status` as kubelet would write it, all conditions stamped `now`."""
    alive = running.alive
    ready = "True" if running.ready else "False"
    return {
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


def report(pod: dict[str, Any], running: RunningPod) -> None:
    """Patch the Pod's status, unless nothing it shows has changed since the last report."""
    state = f"{running.ready}/{running.alive}/{running.restarts}/{running.slot}"
    if state == running.reported:
        return
    kube.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        pod["metadata"]["namespace"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": pod_status(pod, running, kube.timestamp())}),
    )
    running.reported = state
