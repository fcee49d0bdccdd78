"""The local kubelet stand-in's pure parts: container paths and Secret projection."""

from __future__ import annotations

import os
from pathlib import Path

from localcp import network
from localcp.kubelet import RunningPod, read_container, rewrite_path, write_secret_volume
from localcp.layout import BRIDGE_ADDRESS

MOUNTS = {"/tls": Path("/work/pods/ab/tls"), "/tmp": Path("/run/localcp/ab/tmp")}


def test_a_flag_naming_a_file_in_a_volume_points_at_the_local_volume() -> None:
    assert rewrite_path("--tls-cert=/tls/tls.crt", MOUNTS) == "--tls-cert=/work/pods/ab/tls/tls.crt"


def test_a_bare_path_in_a_volume_points_at_the_local_volume() -> None:
    assert rewrite_path("/tmp", MOUNTS) == "/run/localcp/ab/tmp"


def test_a_rewritten_path_is_not_rewritten_again_by_another_mount() -> None:
    mounts = {"/tls": Path("/tmp/checkout/pods/ab/tls"), "/tmp": Path("/run/localcp/ab/tmp")}

    assert (
        rewrite_path("--tls-key=/tls/tls.key", mounts)
        == "--tls-key=/tmp/checkout/pods/ab/tls/tls.key"
    )


def test_a_path_that_only_shares_a_prefix_with_a_mount_is_left_alone() -> None:
    assert rewrite_path("--label=/tlsx", MOUNTS) == "--label=/tlsx"
    assert rewrite_path("--port=8443", MOUNTS) == "--port=8443"


def test_a_secret_is_projected_as_symlinks_through_a_data_link(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, {"tls.crt": b"cert-1"}, 0o644)

    assert (tmp_path / "tls.crt").read_text() == "cert-1"
    assert os.readlink(tmp_path / "tls.crt") == "..data/tls.crt"
    assert (tmp_path / "..data").is_symlink()


def test_a_changed_secret_swaps_the_data_link_and_removes_the_old_payload(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, {"tls.crt": b"cert-1"}, 0o644)
    old_payload = os.readlink(tmp_path / "..data")

    changed = write_secret_volume(tmp_path, {"tls.crt": b"cert-2"}, 0o644)

    assert changed
    assert (tmp_path / "tls.crt").read_text() == "cert-2"
    assert not (tmp_path / old_payload).exists()


def test_an_unchanged_secret_is_not_written_again(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, {"tls.crt": b"cert-1"}, 0o644)

    assert not write_secret_volume(tmp_path, {"tls.crt": b"cert-1"}, 0o644)


def _pod(**spec: object) -> dict[str, object]:
    container = {
        "name": "server",
        "command": ["python"],
        "ports": [{"name": "https", "containerPort": 10443}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https"}},
    }
    return {"spec": {"containers": [container], **spec}}


def test_a_host_network_pod_runs_on_the_node_address() -> None:
    container = read_container(_pod(hostNetwork=True))
    running = RunningPod("uid", "name", 3, container, process=None)  # type: ignore[arg-type]

    assert container.host_network
    assert running.address == BRIDGE_ADDRESS


def test_a_pod_gets_the_address_of_its_own_network_namespace_by_default() -> None:
    container = read_container(_pod())
    running = RunningPod("uid", "name", 3, container, process=None)  # type: ignore[arg-type]

    assert not container.host_network
    assert running.address == network.pod_address(3) != BRIDGE_ADDRESS


def test_the_readiness_probe_port_follows_the_named_container_port() -> None:
    assert read_container(_pod()).readiness_port == 10443
