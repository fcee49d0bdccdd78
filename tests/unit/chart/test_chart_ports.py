"""The server's ports (containerPort, metrics.port), host networking, and what else reaches
the container: logLevel, extraArgs, extraEnv."""

from __future__ import annotations

from typing import Any

import pytest

CUSTOM_PORTS = {"containerPort": 10443, "metrics": {"port": 10080}}


def pod_spec(manifests: Any) -> dict[str, Any]:
    spec: dict[str, Any] = manifests.one("Deployment")["spec"]["template"]["spec"]
    return spec


def container(manifests: Any) -> dict[str, Any]:
    (only,) = pod_spec(manifests)["containers"]
    found: dict[str, Any] = only
    return found


def named_ports(manifests: Any) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}


def resolve(port: int | str, manifests: Any) -> int:
    """A port as a probe or a Service names it: a number, or a container port's name."""
    return named_ports(manifests)[port] if isinstance(port, str) else port


def flag(manifests: Any, name: str) -> list[str]:
    return [a.partition("=")[2] for a in container(manifests)["args"] if a.startswith(f"{name}=")]


@pytest.mark.parametrize("values", [{}, CUSTOM_PORTS], ids=["defaults", "custom ports"])
def test_the_server_flags_container_ports_probes_and_service_agree_on_the_ports(render, values):
    manifests = render(values=values)
    https = values.get("containerPort", 8443)
    metrics = values.get("metrics", {}).get("port", 8080)
    service_ports = {p["name"]: p for p in manifests.one("Service")["spec"]["ports"]}

    assert flag(manifests, "--port") == [str(https)]
    assert flag(manifests, "--metrics-port") == [str(metrics)]
    assert named_ports(manifests) == {"https": https, "metrics": metrics}
    for probe in ("livenessProbe", "readinessProbe"):
        assert resolve(container(manifests)[probe]["httpGet"]["port"], manifests) == https
    assert resolve(service_ports["https"]["targetPort"], manifests) == https
    assert resolve(service_ports["metrics"]["targetPort"], manifests) == metrics


def test_a_custom_container_port_leaves_the_port_the_api_server_dials_alone(render):
    manifests = render(values=CUSTOM_PORTS)
    (webhook,) = manifests.one("MutatingWebhookConfiguration")["webhooks"]
    service_ports = {p["name"]: p["port"] for p in manifests.one("Service")["spec"]["ports"]}

    assert webhook["clientConfig"]["service"]["port"] == service_ports["https"] == 443


def test_the_metrics_service_port_is_plain_tcp_named_metrics_on_the_metrics_port(render):
    service = render("metrics.port=9100").one("Service")
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}

    assert service_ports["metrics"] == {
        "name": "metrics",
        "port": 9100,
        "targetPort": "metrics",
        "protocol": "TCP",
    }


def test_the_same_port_for_admission_and_metrics_fails_naming_both(render_error):
    message = render_error("containerPort=9000", "metrics.port=9000")

    assert "containerPort and metrics.port are both 9000" in message


@pytest.mark.parametrize("port", [0, 65536, "https"])
@pytest.mark.parametrize("field", ["containerPort", "metrics.port"])
def test_a_port_outside_1_to_65535_fails_naming_the_field(render_error, field, port):
    where = "/" + field.replace(".", "/")
    values: dict[str, Any] = (
        {"containerPort": port} if field == "containerPort" else {"metrics": {"port": port}}
    )
    assert f"at '{where}'" in render_error(values=values)


def test_pods_use_their_own_network_by_default(render):
    spec = pod_spec(render())

    assert "hostNetwork" not in spec
    assert "dnsPolicy" not in spec


def test_host_network_puts_the_pods_on_the_node_network_with_cluster_dns(render):
    spec = pod_spec(render("hostNetwork=true"))

    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_host_network_notes_say_to_pick_ports_free_on_the_nodes(render_notes):
    notes = render_notes("hostNetwork=true", "containerPort=10443", "metrics.port=10080")

    assert "WARNING: hostNetwork is true" in notes
    assert "10443 (admission) and 10080 (metrics)" in notes
    assert "free on every node" in notes


def test_notes_say_nothing_of_host_network_by_default(render_notes):
    assert "hostNetwork" not in render_notes()


def test_notes_show_how_to_read_the_metrics_through_the_service_port(render_notes):
    notes = render_notes()

    assert (
        "kubectl get --raw /api/v1/namespaces/pod-labeler/services/"
        "http:webhook-pod-labeler:metrics/proxy/metrics"
    ) in notes


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_the_log_level_reaches_the_server(render, level):
    assert flag(render(f"logLevel={level}"), "--log-level") == [level]


@pytest.mark.parametrize("level", ["INFO", "verbose", "warn", ""])
def test_a_log_level_the_server_does_not_know_fails_naming_the_field(render_error, level):
    assert "at '/logLevel'" in render_error(f"logLevel={level}")


def test_extra_args_come_after_the_chart_flags_so_that_they_win(render):
    args = container(render(values={"extraArgs": ["--threads=8", "--log-level=debug"]}))["args"]

    assert args[-2:] == ["--threads=8", "--log-level=debug"]
    assert args.index("--log-level=info") < args.index("--log-level=debug")


def test_extra_env_is_passed_to_the_container_as_given(render):
    env = [
        {"name": "WEBHOOK_THREADS", "value": "8"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]

    assert container(render(values={"extraEnv": env}))["env"] == env


def test_the_container_has_no_env_by_default(render):
    assert "env" not in container(render())


def test_an_extra_env_entry_without_a_name_fails(render_error):
    assert "at '/extraEnv/0'" in render_error(values={"extraEnv": [{"value": "x"}]})
