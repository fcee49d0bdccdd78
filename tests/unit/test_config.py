"""config: Kubernetes label syntax, and policies and settings that refuse to be invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import (
    ConfigError,
    LabelPolicy,
    ServerConfig,
    label_key_problem,
    label_value_problem,
    parse_label,
    parse_label_list,
)


@pytest.mark.parametrize(
    "key",
    [
        "environment",
        "app.kubernetes.io/name",
        "example.com/owner",
        "a",
        "A_b-c.D9",
        "x" * 63,
        f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}/name",
    ],
)
def test_valid_label_keys_are_accepted(key: str) -> None:
    assert label_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "name part is empty"),
        ("example.com/", "name part is empty"),
        ("/name", "prefix before '/' is empty"),
        ("x" * 64, "longer than 63"),
        ("-start", "must be alphanumerics"),
        ("end-", "must be alphanumerics"),
        ("has space", "must be alphanumerics"),
        ("a~b", "must be alphanumerics"),
        ("name\n", "must be alphanumerics"),
        ("Example.com/name", "lowercase DNS subdomain"),
        ("a/b/c", "lowercase DNS subdomain"),
        (f"{'a' * 254}/name", "longer than 253"),
    ],
)
def test_invalid_label_keys_are_explained(key: str, problem: str) -> None:
    reason = label_key_problem(key)

    assert reason is not None
    assert problem in reason


@pytest.mark.parametrize("value", ["", "production", "v1.2_3-x", "x" * 63])
def test_valid_label_values_are_accepted(value: str) -> None:
    assert label_value_problem(value) is None


@pytest.mark.parametrize("value", ["x" * 64, "-prod", "prod.", "a b", "a/b", "prod\n"])
def test_invalid_label_values_are_rejected(value: str) -> None:
    assert label_value_problem(value) is not None


def test_the_default_policy_labels_environment_production_and_overwrites() -> None:
    policy = LabelPolicy()

    assert policy.as_dict() == {"environment": "production"}
    assert policy.overwrite is True


def test_a_policy_with_a_bad_key_names_it() -> None:
    with pytest.raises(ConfigError, match=r"invalid label key 'bad key'"):
        LabelPolicy(labels=(("bad key", "x"),))


def test_a_policy_with_a_bad_value_names_the_value_and_the_label() -> None:
    with pytest.raises(ConfigError, match=r"invalid value 'no/slash' for label 'team'"):
        LabelPolicy(labels=(("team", "no/slash"),))


def test_a_policy_with_a_duplicate_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match="more than once"):
        LabelPolicy.from_strings(["team=a", "team=b"])


def test_a_policy_needs_at_least_one_label() -> None:
    with pytest.raises(ConfigError, match="at least one label"):
        LabelPolicy(labels=())


def test_a_label_splits_at_the_first_equals_sign() -> None:
    assert parse_label("team=") == ("team", "")
    assert parse_label("a=b=c") == ("a", "b=c")


def test_a_label_without_equals_sign_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_label("team")


def test_the_environment_label_list_is_comma_separated() -> None:
    assert parse_label_list("a=1, example.com/b=2,,") == (("a", "1"), ("example.com/b", "2"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", 70000, "port 70000"),
        ("cert_reload_interval", 0, "reload interval"),
        ("threads", 0, "threads"),
        ("max_body_bytes", 0, "max body bytes"),
        ("drain_timeout", -1, "drain timeout"),
        ("shutdown_delay", -1, "shutdown delay"),
    ],
)
def test_server_settings_out_of_range_are_rejected(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(tls_cert=Path("c"), tls_key=Path("k"), **{field: value})


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_text("key")
    config = ServerConfig(tls_cert=tmp_path / "tls.crt", tls_key=key)

    with pytest.raises(ConfigError, match=r"tls\.crt"):
        config.check_files()
