"""networkPolicy: the webhook Pods take calls on the admission port, scrapes on the metrics
port from named peers only, and open no connection at all."""

from __future__ import annotations

from typing import Any

import pytest

SELECTOR = {"app.kubernetes.io/name": "pod-labeler", "app.kubernetes.io/instance": "webhook"}
PROMETHEUS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
API_SERVER = [{"ipBlock": {"cidr": "10.0.0.0/16"}}]
CUSTOM_PORTS = {"containerPort": 10443, "metrics": {"port": 10080}}


def policy(render: Any, **values: Any) -> dict[str, Any]:
    manifests = render(values={"networkPolicy": {"enabled": True, **values}, **CUSTOM_PORTS})
    spec: dict[str, Any] = manifests.one("NetworkPolicy")["spec"]
    return spec


def rules_for(spec: dict[str, Any], port: int) -> list[dict[str, Any]]:
    return [rule for rule in spec["ingress"] if {"port": port, "protocol": "TCP"} in rule["ports"]]


def test_no_network_policy_by_default(render):
    assert render().of_kind("NetworkPolicy") == []


def test_the_policy_selects_the_webhook_pods(render):
    assert policy(render)["podSelector"] == {"matchLabels": SELECTOR}


def test_the_policy_governs_egress_and_allows_none(render):
    spec = policy(render, admissionFrom=API_SERVER, metricsFrom=PROMETHEUS)

    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in spec


def test_the_admission_port_is_open_to_every_source_by_default(render):
    (rule,) = rules_for(policy(render), 10443)

    assert "from" not in rule


def test_the_admission_port_is_open_only_to_the_configured_peers(render):
    (rule,) = rules_for(policy(render, admissionFrom=API_SERVER), 10443)

    assert rule["from"] == API_SERVER


def test_the_metrics_port_is_closed_without_configured_peers(render):
    spec = policy(render)

    assert rules_for(spec, 10080) == []
    assert len(spec["ingress"]) == 1


def test_the_metrics_port_is_open_only_to_the_configured_peers(render):
    (rule,) = rules_for(policy(render, metricsFrom=PROMETHEUS), 10080)

    assert rule == {"ports": [{"port": 10080, "protocol": "TCP"}], "from": PROMETHEUS}


def test_each_rule_opens_exactly_one_port(render):
    for rule in policy(render, metricsFrom=PROMETHEUS)["ingress"]:
        assert len(rule["ports"]) == 1


def test_policy_mode_has_no_network_policy(render, policy_api):
    manifests = render("mode=policy", "networkPolicy.enabled=true", api_versions=policy_api)

    assert manifests.of_kind("NetworkPolicy") == []


@pytest.mark.parametrize(
    "peer",
    [{}, {"ipBlock": {}}, {"podSelector": {"matchLabels": {"a": 1}}}, {"cidr": "10.0.0.0/8"}],
    ids=["empty peer", "ipBlock without cidr", "non-string selector value", "unknown key"],
)
def test_a_malformed_peer_fails_naming_the_field(render_error, peer):
    message = render_error(values={"networkPolicy": {"enabled": True, "metricsFrom": [peer]}})

    assert "at '/networkPolicy/metricsFrom/0" in message
