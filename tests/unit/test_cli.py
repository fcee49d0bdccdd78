"""The command line: flags, their environment variables, validation, and `mutate`."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
import yaml

from app.config import ServerConfig
from app.main import config_from, main
from tests.unit.conftest import MountedSecret, build_review

SERVE_FLAGS = {
    "--tls-cert": "WEBHOOK_TLS_CERT",
    "--tls-key": "WEBHOOK_TLS_KEY",
    "--host": "WEBHOOK_HOST",
    "--port": "WEBHOOK_PORT",
    "--label": "WEBHOOK_LABELS",
    "--no-overwrite": "WEBHOOK_OVERWRITE",
    "--cert-reload-interval": "WEBHOOK_CERT_RELOAD_INTERVAL",
    "--threads": "WEBHOOK_THREADS",
    "--max-body-bytes": "WEBHOOK_MAX_BODY_BYTES",
    "--shutdown-delay": "WEBHOOK_SHUTDOWN_DELAY",
    "--drain-timeout": "WEBHOOK_DRAIN_TIMEOUT",
}

POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  generateName: web-
  labels:
    app: web
    environment: staging
spec:
  containers:
  - name: web
    image: nginx
"""


@pytest.fixture(autouse=True)
def keep_pytest_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` points the root logger at stderr as JSON; not inside pytest's process."""
    monkeypatch.setattr("app.main.configure", lambda *_: None)


@pytest.fixture
def tls_args(secret: MountedSecret) -> list[str]:
    return ["--tls-cert", str(secret.cert_path), "--tls-key", str(secret.key_path)]


def exit_status_and_stderr(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str] | None = None
) -> tuple[int | str | None, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv, environ or {})
    return exited.value.code, capsys.readouterr().err


def test_serve_help_lists_every_flag_and_environment_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"], {})
    help_text = capsys.readouterr().out

    for flag, variable in SERVE_FLAGS.items():
        assert flag in help_text
        assert variable in help_text


def test_flags_give_the_server_configuration(tls_args: list[str], secret: MountedSecret) -> None:
    config = config_from(
        [
            *tls_args,
            "--host=127.0.0.1",
            "--port=9443",
            "--label=team=a",
            "--label=example.com/owner=b",
            "--no-overwrite",
            "--cert-reload-interval=2.5",
            "--threads=3",
            "--max-body-bytes=1024",
            "--shutdown-delay=1.5",
            "--drain-timeout=7",
        ],
        {},
    )

    assert config == ServerConfig(
        tls_cert=secret.cert_path,
        tls_key=secret.key_path,
        host="127.0.0.1",
        port=9443,
        cert_reload_interval=2.5,
        threads=3,
        max_body_bytes=1024,
        shutdown_delay=1.5,
        drain_timeout=7,
        policy=config.policy,
    )
    assert config.policy.labels == (("team", "a"), ("example.com/owner", "b"))
    assert config.policy.overwrite is False


def test_environment_variables_give_the_server_configuration(secret: MountedSecret) -> None:
    config = config_from(
        [],
        {
            "WEBHOOK_TLS_CERT": str(secret.cert_path),
            "WEBHOOK_TLS_KEY": str(secret.key_path),
            "WEBHOOK_HOST": "::",
            "WEBHOOK_PORT": "10443",
            "WEBHOOK_LABELS": "team=a,example.com/owner=b",
            "WEBHOOK_OVERWRITE": "false",
            "WEBHOOK_CERT_RELOAD_INTERVAL": "30",
            "WEBHOOK_THREADS": "16",
            "WEBHOOK_MAX_BODY_BYTES": "2048",
            "WEBHOOK_SHUTDOWN_DELAY": "0",
            "WEBHOOK_DRAIN_TIMEOUT": "3",
        },
    )

    assert config.shutdown_delay == 0

    assert (config.host, config.port, config.threads) == ("::", 10443, 16)
    assert (config.cert_reload_interval, config.max_body_bytes, config.drain_timeout) == (
        30,
        2048,
        3,
    )
    assert config.policy.labels == (("team", "a"), ("example.com/owner", "b"))
    assert config.policy.overwrite is False


def test_without_labels_the_default_is_environment_production(tls_args: list[str]) -> None:
    config = config_from(tls_args, {})

    assert config.policy.as_dict() == {"environment": "production"}
    assert config.policy.overwrite is True
    assert (config.host, config.port, config.threads) == ("0.0.0.0", 8443, 8)
    assert config.max_body_bytes == 3 * 1024 * 1024


def test_flags_take_precedence_over_environment_variables(tls_args: list[str]) -> None:
    config = config_from(
        [*tls_args, "--port=1", "--label=team=flag", "--overwrite"],
        {"WEBHOOK_PORT": "2", "WEBHOOK_LABELS": "team=env", "WEBHOOK_OVERWRITE": "false"},
    )

    assert config.port == 1
    assert config.policy.labels == (("team", "flag"),)
    assert config.policy.overwrite is True


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--label=bad key=x"], {}, "'bad key'"),
        (["--label=team=not valid"], {}, "'not valid'"),
        (["--label=team"], {}, "'team' is not KEY=VALUE"),
        ([], {"WEBHOOK_LABELS": "ok=1,Bad.Prefix/x=1"}, "'Bad.Prefix/x'"),
        ([], {"WEBHOOK_PORT": "https"}, "WEBHOOK_PORT"),
        ([], {"WEBHOOK_OVERWRITE": "maybe"}, "WEBHOOK_OVERWRITE"),
        (["--port=99999"], {}, "port 99999"),
        (["--threads=lots"], {}, "--threads"),
    ],
)
def test_an_invalid_setting_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str],
    tls_args: list[str],
    argv: list[str],
    environ: dict[str, str],
    named: str,
) -> None:
    status, stderr = exit_status_and_stderr(capsys, ["serve", *tls_args, *argv], environ)

    assert status == 2
    assert named in stderr


def test_a_missing_certificate_file_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, secret: MountedSecret
) -> None:
    missing = tmp_path / "nowhere" / "tls.crt"

    status, stderr = exit_status_and_stderr(
        capsys, ["serve", "--tls-cert", str(missing), "--tls-key", str(secret.key_path)]
    )

    assert status == 2
    assert str(missing) in stderr


def test_serve_without_a_certificate_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, stderr = exit_status_and_stderr(capsys, ["serve"])

    assert status == 2
    assert "--tls-cert" in stderr


def test_a_certificate_that_does_not_match_its_key_exits_2(
    capsys: pytest.CaptureFixture[str], secret: MountedSecret, tmp_path: Path
) -> None:
    other_key = tmp_path / "other.key"
    other_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")

    status, stderr = exit_status_and_stderr(
        capsys, ["serve", "--tls-cert", str(secret.cert_path), "--tls-key", str(other_key)]
    )

    assert status == 2
    assert "other.key" in stderr


def test_a_port_already_in_use_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tls_args: list[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]

        status, stderr = exit_status_and_stderr(
            capsys, ["serve", *tls_args, "--host=127.0.0.1", f"--port={port}"]
        )

    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in stderr


def test_mutate_prints_the_pod_as_the_webhook_would_admit_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD_YAML)

    status = main(["mutate", str(manifest), "--label=example.com/owner=team-a"], {})
    out, err = capsys.readouterr()

    assert status == 0
    assert yaml.safe_load(out)["metadata"]["labels"] == {
        "app": "web",
        "environment": "staging",
        "example.com/owner": "team-a",
    }
    assert err == ""


def test_mutate_shows_overwrite_warnings_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD_YAML)

    main(["mutate", str(manifest)], {})
    out, err = capsys.readouterr()

    assert yaml.safe_load(out)["metadata"]["labels"]["environment"] == "production"
    assert err.startswith('Warning: pod-labeler: label "environment" was "staging"')


def test_mutate_honours_no_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD_YAML)

    main(["mutate", str(manifest), "--no-overwrite"], {})

    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["labels"]["environment"] == (
        "staging"
    )


def test_mutate_reads_an_admission_review_as_json_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(build_review(None))))

    status = main(["mutate", "-"], {"WEBHOOK_LABELS": "team=a"})

    assert status == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["labels"] == {"team": "a"}


def test_mutate_leaves_a_deployment_unchanged_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")

    status = main(["mutate", str(manifest)], {})
    out, err = capsys.readouterr()

    assert status == 0
    assert yaml.safe_load(out) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
    }
    assert "not a Pod CREATE (Deployment CREATE)" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", "is not YAML or JSON"),
        ("- just\n- a list\n", "expected a Kubernetes object"),
        ("a: 1\n---\nb: 2\n", "is not YAML or JSON"),
        ("metadata: {}\n", "apiVersion and kind"),
    ],
)
def test_mutate_rejects_input_it_cannot_use_with_status_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    manifest = tmp_path / "input.yaml"
    manifest.write_text(content)

    status = main(["mutate", str(manifest)], {})

    assert status == 1
    assert message in capsys.readouterr().err


def test_mutate_of_a_missing_file_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    status, stderr = exit_status_and_stderr(capsys, ["mutate", "/no/such/pod.yaml"])

    assert status == 2
    assert "/no/such/pod.yaml" in stderr
