"""What a Pod asks the kubelet stand-in to run, read from its spec.

Only what the chart's Deployment uses: the first container's command, args, literal
env, ports, volume mounts (Secret or emptyDir) and HTTPS readiness probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    host_network: bool = False


def _port_number(port: int | str, ports: dict[str, int]) -> int:
    return ports[port] if isinstance(port, str) else int(port)


def _volumes(spec: dict[str, Any], container: dict[str, Any]) -> list[Volume]:
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
    return volumes


def read_container(pod: dict[str, Any]) -> Container:
    spec = pod["spec"]
    container = spec["containers"][0]
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
        volumes=_volumes(spec, container),
        readiness_path=probe.get("path", "/readyz"),
        readiness_port=_port_number(probe.get("port", next(iter(ports.values()))), ports),
        probe_period=float(readiness.get("periodSeconds", 10)),
        host_network=bool(spec.get("hostNetwork", False)),
    )
