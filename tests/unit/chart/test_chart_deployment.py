"""The server's Deployment, Service, ServiceAccount and PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

import pytest

SELECTOR = {"app.kubernetes.io/name": "pod-labeler", "app.kubernetes.io/instance": "webhook"}


def pod_spec(manifests: Any) -> dict[str, Any]:
    spec: dict[str, Any] = manifests.one("Deployment")["spec"]["template"]["spec"]
    return spec


def container(manifests: Any) -> dict[str, Any]:
    containers = pod_spec(manifests)["containers"]
    assert len(containers) == 1
    only: dict[str, Any] = containers[0]
    return only


def label_args(manifests: Any) -> list[str]:
    return [a for a in container(manifests)["args"] if a.startswith("--label=")]


def test_container_runs_the_server_serve_command(render):
    assert container(render())["command"] == ["python", "-m", "app.main", "serve"]


def test_args_carry_the_tls_files_the_ports_the_log_level_and_the_default_label(render):
    assert container(render())["args"] == [
        "--tls-cert=/tls/tls.crt",
        "--tls-key=/tls/tls.key",
        "--port=8443",
        "--metrics-port=8080",
        "--log-level=info",
        "--handshake-timeout=5",
        "--header-timeout=5",
        "--request-timeout=30",
        "--idle-timeout=60",
        "--max-buffered-bytes=16777216",
        "--max-connections=0",
        "--label=environment=production",
    ]


def test_the_edge_limits_reach_the_server(render):
    values = {
        "serving": {
            "handshakeTimeout": 2,
            "headerTimeout": 3.5,
            "requestTimeout": 20,
            "idleTimeout": 90,
            "maxBufferedBytes": 33554432,
            "maxConnections": 5000,
        }
    }

    args = container(render(values=values))["args"]

    assert {
        "--handshake-timeout=2",
        "--header-timeout=3.5",
        "--request-timeout=20",
        "--idle-timeout=90",
        "--max-buffered-bytes=33554432",
        "--max-connections=5000",
    } <= set(args)


def test_a_buffer_budget_too_small_for_one_request_fails_at_install(render_error):
    assert "maxBufferedBytes" in render_error(values={"serving": {"maxBufferedBytes": 1024}})


def test_label_override_is_passed_to_the_server(render):
    assert label_args(render("label.key=team", "label.value=payments")) == ["--label=team=payments"]


def test_extra_labels_follow_the_main_label_sorted_by_key(render):
    manifests = render(
        values={"extraLabels": {"zone": "eu", "example.com/owner": "sre", "cost-centre": "42"}}
    )
    assert label_args(manifests) == [
        "--label=environment=production",
        "--label=cost-centre=42",
        "--label=example.com/owner=sre",
        "--label=zone=eu",
    ]


@pytest.mark.parametrize(
    ("set_arg", "expected"),
    [
        ("label.value=", "--label=environment="),
        ("label.value=2024", "--label=environment=2024"),
        ("label.value=true", "--label=environment=true"),
    ],
    ids=["empty", "number", "boolean"],
)
def test_label_values_that_are_not_plain_words_are_passed_as_text(render, set_arg, expected):
    assert label_args(render(set_arg)) == [expected]


def test_extra_label_repeating_the_main_key_fails_the_render(render_error):
    message = render_error("extraLabels.environment=staging")
    assert 'extraLabels: "environment" repeats label.key' in message


def test_overwrite_false_tells_the_server_to_keep_existing_labels(render):
    assert container(render("overwrite=false"))["args"][-1] == "--no-overwrite"


def test_overwrite_is_the_default(render):
    assert "--no-overwrite" not in container(render())["args"]


def test_pod_security_context_meets_the_restricted_profile(render):
    context = pod_spec(render())["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_security_context_meets_the_restricted_profile(render):
    context = container(render())["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    assert not context.get("privileged", False)


def test_pod_uses_only_volume_types_the_restricted_profile_allows(render):
    spec = pod_spec(render())
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    for volume in spec["volumes"]:
        kinds = set(volume) - {"name"}
        assert kinds <= {"secret", "emptyDir", "configMap", "projected", "downwardAPI"}, volume


def test_tmp_is_a_writable_empty_dir(render):
    manifests = render()
    mount = next(m for m in container(manifests)["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod_spec(manifests)["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume
    assert not mount.get("readOnly", False)


def test_service_account_token_is_mounted_nowhere(render):
    manifests = render()
    assert manifests.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert pod_spec(manifests)["automountServiceAccountToken"] is False
    assert pod_spec(manifests)["serviceAccountName"] == "webhook-pod-labeler"


def test_existing_service_account_is_used_and_none_is_created(render):
    manifests = render("serviceAccount.create=false", "serviceAccount.name=shared")
    assert manifests.names("ServiceAccount") == set()
    assert pod_spec(manifests)["serviceAccountName"] == "shared"
    assert pod_spec(manifests)["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
)
def test_probes_call_the_server_health_endpoints_over_https(render, probe, path):
    assert container(render())[probe]["httpGet"] == {
        "path": path,
        "port": "https",
        "scheme": "HTTPS",
    }


def test_container_serves_https_on_8443_and_metrics_on_8080(render):
    assert container(render())["ports"] == [
        {"name": "https", "containerPort": 8443, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
    ]


def test_service_forwards_443_to_the_https_port_and_8080_to_the_metrics_port(render):
    service = render().one("Service")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert service["spec"]["selector"] == SELECTOR


def test_image_tag_defaults_to_the_app_version(render, app_version):
    assert container(render())["image"] == f"ghcr.io/pod-labeler/pod-labeler:{app_version}"


def test_image_is_configurable(render):
    manifests = render(
        "image.repository=registry.local/labeler", "image.tag=dev", "image.pullPolicy=Never"
    )
    assert container(manifests)["image"] == "registry.local/labeler:dev"
    assert container(manifests)["imagePullPolicy"] == "Never"


def test_resources_request_cpu_and_memory(render):
    resources = container(render())["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}


def test_memory_is_limited_so_the_server_can_size_its_connection_limit_from_it(render):
    assert container(render())["resources"]["limits"]["memory"] == "256Mi"


def test_cpu_is_not_limited_by_default_so_bursts_are_never_throttled(render):
    assert "cpu" not in container(render())["resources"].get("limits", {})


def test_two_replicas_spread_across_nodes_by_default(render):
    manifests = render()
    assert manifests.one("Deployment")["spec"]["replicas"] == 2
    assert pod_spec(manifests)["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SELECTOR},
        }
    ]


def test_a_spread_constraint_with_its_own_label_selector_is_kept_as_given(render):
    constraint = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "other"}},
    }
    manifests = render(values={"topologySpreadConstraints": [constraint]})
    assert pod_spec(manifests)["topologySpreadConstraints"] == [constraint]


def test_scheduling_settings_are_passed_through(render):
    manifests = render(
        values={
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
            "priorityClassName": "system-cluster-critical",
            "topologySpreadConstraints": [],
        }
    )
    spec = pod_spec(manifests)
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert spec["affinity"] == {"nodeAffinity": {}}
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert "topologySpreadConstraints" not in spec


def test_no_priority_class_by_default(render):
    assert "priorityClassName" not in pod_spec(render())


def test_pod_disruption_budget_keeps_one_pod_up_when_replicated(render):
    budget = render().one("PodDisruptionBudget")
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}


def test_no_pod_disruption_budget_with_a_single_replica(render):
    assert render("replicaCount=1").names("PodDisruptionBudget") == set()


def test_pod_disruption_budget_can_be_turned_off(render):
    assert render("podDisruptionBudget.enabled=false").names("PodDisruptionBudget") == set()


def test_pod_labels_and_annotations_reach_the_pods(render):
    manifests = render("podLabels.team=platform", "podAnnotations.example\\.com/owner=sre")
    template = manifests.one("Deployment")["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "platform"
    assert template["annotations"] == {"example.com/owner": "sre"}


def test_pod_labels_cannot_replace_the_selector_labels(render):
    manifests = render("podLabels.app\\.kubernetes\\.io/instance=other")
    deployment = manifests.one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= deployment["spec"]["selector"]["matchLabels"].items()


def test_image_pull_secrets_are_passed_through(render):
    manifests = render("imagePullSecrets[0].name=registry-credentials")
    assert pod_spec(manifests)["imagePullSecrets"] == [{"name": "registry-credentials"}]
