"""`make down` puts the host back: it removes exactly the iptables rules that jump to
the chains the node added, and nothing else."""

from __future__ import annotations

import shlex

from localcp.host import _jumps_to


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
