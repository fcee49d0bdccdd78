"""The local kubelet stand-in's volumes: container paths and Secret projection."""

from __future__ import annotations

import os
from pathlib import Path

from localcp.volumes import rewrite_path, secret_files, write_secret_volume
from tests.unit.conftest import MountedSecret

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


def test_a_secret_is_laid_out_as_the_server_tests_expect_kubelet_to(tmp_path: Path) -> None:
    expected = MountedSecret(tmp_path / "expected")
    expected.write(b"cert-1", b"key-1")

    write_secret_volume(tmp_path / "ours", {"tls.crt": b"cert-1", "tls.key": b"key-1"}, 0o600)

    def layout(root: Path) -> dict[str, tuple[str, bytes, int]]:
        return {
            name: (
                os.readlink(root / name),
                (root / name).read_bytes(),
                (root / name).stat().st_mode,
            )
            for name in ("tls.crt", "tls.key")
        }

    assert layout(tmp_path / "ours") == layout(expected.root)
    assert (tmp_path / "ours" / "..data").is_symlink()


B64_CERT, B64_KEY = "Y2VydA==", "a2V5"  # "cert", "key"
TLS_ITEMS = (("tls.crt", "tls.crt"), ("tls.key", "tls.key"))


def test_a_secret_volume_without_items_holds_every_key() -> None:
    data = {"tls.crt": B64_CERT, "ca.crt": B64_CERT}

    assert secret_files(data, ()) == {"tls.crt": b"cert", "ca.crt": b"cert"}


def test_a_secret_volume_with_items_holds_only_those_keys_at_their_paths() -> None:
    data = {"tls.crt": B64_CERT, "tls.key": B64_KEY, "ca.crt": B64_CERT}

    assert secret_files(data, (("tls.crt", "cert.pem"), ("tls.key", "key.pem"))) == {
        "cert.pem": b"cert",
        "key.pem": b"key",
    }


def test_a_secret_volume_waits_while_a_key_its_items_name_is_missing() -> None:
    assert secret_files({}, TLS_ITEMS) is None
    assert secret_files({"tls.crt": B64_CERT}, TLS_ITEMS) is None
