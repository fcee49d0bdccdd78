"""The kubelet stand-in's Node: registering it, renewing its Lease, binding Pods to it.

A Node whose Lease is renewed is one kube-controller-manager treats as healthy;
binding a Pending Pod is the scheduler's one job here.
"""

from __future__ import annotations

import json
from typing import Any

from localcp import kube
from localcp.layout import BRIDGE_ADDRESS, MAX_PODS, NODE_NAME

LEASE_SECONDS = 40


def _ensure_node() -> None:
    if kube.get_json("node", NODE_NAME) is not None:
        return
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
    }
    kube.kubectl("create", "-f", "-", stdin=json.dumps(node))


def register() -> None:
    """Create the Node if it is missing, and report it Ready with room for MAX_PODS."""
    _ensure_node()
    capacity = {"cpu": "2", "memory": "24Gi", "pods": str(MAX_PODS)}
    now = kube.timestamp()
    status = {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": BRIDGE_ADDRESS}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "localcp kubelet stand-in is running",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
    }
    kube.kubectl(
        "patch",
        "node",
        NODE_NAME,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def renew_lease() -> None:
    """Renew the Node's Lease, which is how kube-controller-manager knows it is alive."""
    kube.apply(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NODE_NAME, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": NODE_NAME,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": kube.timestamp(micro=True),
            },
        }
    )


def bind(pod: dict[str, Any]) -> None:
    """Bind a Pending Pod to this Node, as the scheduler would."""
    meta = pod["metadata"]
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
    }
    kube.kubectl("create", "-f", "-", check=False, stdin=json.dumps(binding))
