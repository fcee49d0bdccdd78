"""`audit` and `backfill` on the command line: flags, and exit status 2 when the check
cannot be made (the e2e tests run them against a real cluster)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from app.main import build_parser, main


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("verb", ["audit", "backfill"])
def test_an_unreachable_cluster_is_exit_status_2_with_a_message(
    verb, tmp_path, closed_port, capsys
):
    config = kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port}")

    assert main([verb, "--kubeconfig", str(config)], environ={}) == 2
    assert "cannot reach the API server" in capsys.readouterr().err


def test_a_missing_kubeconfig_is_exit_status_2(tmp_path, capsys):
    assert main(["audit", "--kubeconfig", str(tmp_path / "nope")], environ={}) == 2
    assert "Kubernetes configuration" in capsys.readouterr().err


def test_an_unknown_context_is_exit_status_2(tmp_path, closed_port, capsys):
    config = kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port}")

    assert main(["audit", "--kubeconfig", str(config), "--context", "other"], environ={}) == 2
    assert "other" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "--namespace-selector", "team=payments"],
        ["audit", "--object-selector", '{"matchExpressions": [{"key": "a", "operator": "Is"}]}'],
        ["audit", "-o", "yaml"],
        ["backfill", "--qps", "many"],
    ],
)
def test_a_bad_flag_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2


def test_backfill_is_a_dry_run_unless_told_to_apply():
    assert build_parser().parse_args(["backfill"]).apply is False
    assert build_parser().parse_args(["backfill", "--apply"]).apply is True


def test_backfill_has_a_default_rate_limit():
    assert build_parser().parse_args(["backfill"]).qps == 20
