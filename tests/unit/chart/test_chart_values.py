"""values.yaml, values.schema.json and the README table agree, and bad values fail early."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

LONG_PREFIX = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])  # 254 characters


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"label": {"key": "bad key!"}}, "'/label/key'"),
        ({"label": {"key": "a" * 64}}, "'/label/key'"),
        ({"label": {"key": "-team"}}, "'/label/key'"),
        ({"label": {"key": "Example.COM/team"}}, "'/label/key'"),
        ({"label": {"key": "example.com/"}}, "'/label/key'"),
        ({"label": {"key": f"{LONG_PREFIX}/team"}}, "'/label/key'"),
        ({"label": {"key": ""}}, "'/label/key'"),
        ({"label": {"value": "two words"}}, "'/label/value'"),
        ({"label": {"value": "v" * 64}}, "'/label/value'"),
        ({"label": {"value": "trailing-"}}, "'/label/value'"),
        ({"label": {"value": -1}}, "'/label/value'"),
        ({"extraLabels": {"bad key": "x"}}, "'/extraLabels': additional properties 'bad key'"),
        ({"extraLabels": {"UPPER.example/x": "y"}}, "'/extraLabels'"),
        ({"extraLabels": {"tier": "not ok"}}, "'/extraLabels/tier'"),
        ({"podLabels": {"bad key": "x"}}, "'/podLabels'"),
        ({"webhook": {"optOutLabel": "not a key"}}, "'/webhook/optOutLabel'"),
    ],
    ids=[
        "key with a space",
        "key name too long",
        "key starting with a dash",
        "key prefix not lowercase",
        "key with an empty name",
        "key prefix too long",
        "empty key",
        "value with a space",
        "value too long",
        "value ending with a dash",
        "negative number value",
        "extraLabels key with a space",
        "extraLabels key with a bad prefix",
        "extraLabels bad value",
        "podLabels bad key",
        "opt-out label bad key",
    ],
)
def test_bad_label_fails_the_render_naming_the_field(render_error, values, field):
    assert f"at {field}" in render_error(values=values)


@pytest.mark.parametrize("field", ["extraLabels", "podLabels"])
def test_label_key_prefix_over_253_characters_in_a_map_fails_naming_the_map(render_error, field):
    message = render_error(values={field: {f"{LONG_PREFIX}/team": "x"}})
    assert f"{field}: the prefix of label key" in message


def test_the_example_from_the_issue_fails_naming_label_key(render_error):
    assert "at '/label/key'" in render_error("label.key=bad key!")


@pytest.mark.parametrize(
    "values",
    [
        {"label": {"key": "example.com/team", "value": "payments"}},
        {"label": {"key": "a" * 63, "value": "v" * 63}},
        {"label": {"key": f"{'p' * 63}.{'q' * 63}.{'r' * 63}.{'s' * 61}/x", "value": ""}},
        {"label": {"key": "a_b.c-d", "value": "A_b.C-9"}},
        {"extraLabels": {"example.com/owner": "sre", "x": ""}},
    ],
    ids=["prefixed", "63 characters", "253-character prefix", "inner punctuation", "extras"],
)
def test_valid_labels_render(render, values):
    assert render(values=values).one("Deployment")


@pytest.mark.parametrize(
    ("set_arg", "where"),
    [
        ("labels.key=x", "at '': additional properties 'labels'"),
        (
            "webhook.failurePolicies=Ignore",
            "at '/webhook': additional properties 'failurePolicies'",
        ),
        ("certManager.issuerRef.namespace=x", "at '/certManager/issuerRef'"),
        ("image.sha=sha256:0", "at '/image'"),
        ("label.name=x", "at '/label'"),
    ],
)
def test_unknown_value_keys_fail_the_render(render_error, set_arg, where):
    assert where in render_error(set_arg)


@pytest.mark.parametrize("mode", ["auto", "webhook", "policy"])
def test_mode_accepts_auto_webhook_and_policy(render, policy_api, mode):
    assert list(render(f"mode={mode}", api_versions=policy_api))


@pytest.mark.parametrize("mode", ["both", "Policy", "webhooks", ""])
def test_mode_outside_auto_webhook_and_policy_fails_naming_the_field(
    render_error, policy_api, mode
):
    assert "at '/mode'" in render_error(f"mode={mode}", api_versions=policy_api)


def test_default_values_pass_the_schema_and_render(render):
    assert render().one("MutatingWebhookConfiguration")


def test_chart_lints_clean_in_strict_mode(helm_binary, chart_dir):
    result = subprocess.run(
        [helm_binary, "lint", "--strict", str(chart_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_is_draft_07_and_closed_at_the_top(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


def owned_objects(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if "properties" in node:
        found.append((path, node))
        for key, child in node["properties"].items():
            found += owned_objects(child, f"{path}.{key}" if path else key)
    return found


def test_every_object_the_chart_owns_rejects_unknown_keys(schema):
    for path, node in owned_objects(schema):
        assert node.get("additionalProperties") is False, path or "(top level)"


def test_schema_declares_exactly_the_keys_of_values_yaml(schema, documented_keys):
    declared = {
        f"{path}.{key}" if path else key
        for path, node in owned_objects(schema)
        for key, child in node["properties"].items()
        if "properties" not in child
    }
    assert declared == {key.path for key in documented_keys}


def test_every_value_key_has_a_helm_docs_comment(documented_keys):
    undocumented = [
        key.path
        for key in documented_keys
        if not any(line.startswith("# -- ") and len(line) > 5 for line in key.comment)
    ]
    assert undocumented == []
