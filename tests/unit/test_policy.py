"""policy: Kubernetes label syntax, and label policies that refuse to be invalid."""

from __future__ import annotations

import pytest

from app.admission.policy import (
    InvalidPolicy,
    LabelPolicy,
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
    with pytest.raises(InvalidPolicy, match=r"invalid label key 'bad key'"):
        LabelPolicy(labels=(("bad key", "x"),))


def test_a_policy_with_a_bad_value_names_the_value_and_the_label() -> None:
    with pytest.raises(InvalidPolicy, match=r"invalid value 'no/slash' for label 'team'"):
        LabelPolicy(labels=(("team", "no/slash"),))


def test_a_policy_with_a_duplicate_key_is_rejected() -> None:
    with pytest.raises(InvalidPolicy, match="more than once"):
        LabelPolicy.from_strings(["team=a", "team=b"])


def test_a_policy_needs_at_least_one_label() -> None:
    with pytest.raises(InvalidPolicy, match="at least one label"):
        LabelPolicy(labels=())


def test_a_label_splits_at_the_first_equals_sign() -> None:
    assert parse_label("team=") == ("team", "")
    assert parse_label("a=b=c") == ("a", "b=c")


def test_a_label_without_equals_sign_is_rejected() -> None:
    with pytest.raises(InvalidPolicy, match="not KEY=VALUE"):
        parse_label("team")


def test_the_environment_label_list_is_comma_separated() -> None:
    assert parse_label_list("a=1, example.com/b=2,,") == (("a", "1"), ("example.com/b", "2"))
