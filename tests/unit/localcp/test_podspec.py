"""The kubelet stand-in reads what a Pod runs from its spec, as the chart writes it."""

from __future__ import annotations

from typing import Any

from localcp.podspec import Container, Volume, read_container


def pod(**container: Any) -> dict[str, Any]:
    spec = {
        "volumes": [
            {"name": "tls", "secret": {"secretName": "webhook-tls", "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "containers": [
            {
                "name": "webhook",
                "image": "pod-labeler:0.1.0",
                "command": ["python", "-m", "app.main"],
                "args": ["serve", "--tls-cert=/tls/tls.crt"],
                "env": [
                    {"name": "WEBHOOK_LABELS", "value": "team=a"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "ports": [{"name": "https", "containerPort": 8443}],
                "volumeMounts": [
                    {"name": "tls", "mountPath": "/tls"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                    "periodSeconds": 5,
                },
                **container,
            }
        ],
    }
    return {"metadata": {"name": "web"}, "spec": spec}


def test_the_container_is_read_with_its_command_env_volumes_and_probe() -> None:
    assert read_container(pod()) == Container(
        name="webhook",
        command=["python", "-m", "app.main", "serve", "--tls-cert=/tls/tls.crt"],
        env={"WEBHOOK_LABELS": "team=a"},
        volumes=[Volume("tls", "/tls", "webhook-tls", 0o440), Volume("tmp", "/tmp", None)],
        readiness_path="/readyz",
        readiness_port=8443,
        probe_period=5.0,
    )


def test_a_probe_on_a_port_number_uses_that_number() -> None:
    container = read_container(pod(readinessProbe={"httpGet": {"path": "/ok", "port": 9443}}))

    assert (container.readiness_port, container.readiness_path) == (9443, "/ok")


def test_without_a_probe_the_first_port_and_readyz_are_probed_every_10_seconds() -> None:
    unprobed = pod()
    del unprobed["spec"]["containers"][0]["readinessProbe"]

    container = read_container(unprobed)

    assert (container.readiness_port, container.readiness_path) == (8443, "/readyz")
    assert container.probe_period == 10.0
