"""The node's CNI network puts Pods on the bridge whose address the API server
advertises, so a Pod reaches the `kubernetes` Service's endpoint through its gateway."""

from __future__ import annotations

import ipaddress

from localcp.layout import BRIDGE, BRIDGE_ADDRESS, NODE, POD_CIDR, SERVICE_CIDR
from localcp.network import cni_conflist


def bridge_plugin() -> dict:
    plugins = cni_conflist()["plugins"]
    assert isinstance(plugins, list)
    (bridge,) = [p for p in plugins if p["type"] == "bridge"]
    return bridge


def test_pods_join_the_bridge_that_carries_the_nodes_address() -> None:
    assert bridge_plugin()["bridge"] == BRIDGE


def test_the_pods_gateway_is_the_node_address() -> None:
    (range_,) = bridge_plugin()["ipam"]["ranges"][0]

    assert range_["gateway"] == BRIDGE_ADDRESS
    assert ipaddress.ip_address(BRIDGE_ADDRESS) in ipaddress.ip_network(POD_CIDR)


def test_pod_addresses_start_above_the_node_address() -> None:
    (range_,) = bridge_plugin()["ipam"]["ranges"][0]

    assert ipaddress.ip_address(range_["rangeStart"]) > ipaddress.ip_address(BRIDGE_ADDRESS)


def test_address_leases_live_in_the_node_state_that_down_removes() -> None:
    assert bridge_plugin()["ipam"]["dataDir"].startswith(f"{NODE.root}/")


def test_pods_are_routed_to_the_services_and_nowhere_beyond_the_machine() -> None:
    assert bridge_plugin()["ipam"]["routes"] == [{"dst": SERVICE_CIDR}]
