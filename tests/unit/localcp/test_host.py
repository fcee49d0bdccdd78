"""`make down` puts the host back: it removes exactly the iptables rules that jump to
the chains the node added, and nothing else."""

from __future__ import annotations

import shlex

from localcp.host import _differences, _jumps_to


def words(rule: str) -> list[str]:
    return shlex.split(rule)


def test_a_rule_jumping_to_an_added_chain_is_removed() -> None:
    rule = '-A INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODEPORTS'

    assert _jumps_to(words(rule), {"KUBE-NODEPORTS"})


def test_a_rule_going_to_an_added_chain_is_removed() -> None:
    assert _jumps_to(words("-A FORWARD -g CNI-FORWARD"), {"CNI-FORWARD"})


def test_a_rule_of_the_hosts_own_is_kept() -> None:
    assert not _jumps_to(words("-A INPUT -i lo -j ACCEPT"), {"KUBE-FIREWALL"})


def test_a_comment_naming_an_added_chain_is_not_a_jump() -> None:
    rule = '-A OUTPUT -m comment --comment "KUBE-FIREWALL" -j DOCKER-USER'

    assert not _jumps_to(words(rule), {"KUBE-FIREWALL"})


def snapshot(**changes: object) -> dict[str, object]:
    taken: dict[str, object] = {
        "sysctls": {"net/ipv4/ip_forward": "0", "kernel/panic": "1"},
        "existing_dirs": ["/var/lib/kubelet"],
        "chains": {"iptables filter": ["INPUT-HOST"], "iptables nat": []},
    }
    return {**taken, **changes}


def test_a_host_put_back_as_recorded_shows_no_difference() -> None:
    assert _differences(snapshot(), snapshot()) == []


def test_a_kernel_setting_left_changed_is_a_difference() -> None:
    now = snapshot(sysctls={"net/ipv4/ip_forward": "1", "kernel/panic": "1"})

    assert _differences(snapshot(), now) == ["net.ipv4.ip_forward is 1, was 0"]


def test_a_chain_left_behind_is_a_difference() -> None:
    now = snapshot(chains={"iptables filter": ["INPUT-HOST"], "iptables nat": ["KUBE-SERVICES"]})

    assert _differences(snapshot(), now) == ["iptables nat: chains KUBE-SERVICES are left"]


def test_a_directory_kubelet_made_and_left_is_a_difference() -> None:
    now = snapshot(existing_dirs=["/var/lib/kubelet", "/var/log/pods"])

    assert _differences(snapshot(), now) == ["/var/log/pods is left"]


def test_a_directory_that_was_there_before_is_not_a_difference() -> None:
    assert _differences(snapshot(), snapshot(existing_dirs=["/var/lib/kubelet"])) == []
