"""patch: the label JSONPatch, RFC 6901 escaping, and the small applier the CLI uses."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.admission.patch import (
    Overwrite,
    PatchError,
    apply_patch,
    escape_pointer_token,
    plan_labels,
    unescape_pointer_token,
)
from tests.unit.strategies import configured_labels, existing_labels

WANTED = (("environment", "production"),)


def pod(labels: object) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web"}
    if labels is not None:
        metadata["labels"] = labels
    return {"metadata": metadata}


@pytest.mark.parametrize(
    ("token", "escaped"),
    [
        ("example.com/owner", "example.com~1owner"),
        ("a~b", "a~0b"),
        ("~1", "~01"),
        ("/~", "~1~0"),
        ("plain", "plain"),
    ],
)
def test_pointer_tokens_are_escaped_per_rfc_6901(token: str, escaped: str) -> None:
    assert escape_pointer_token(token) == escaped
    assert unescape_pointer_token(escaped) == token


def test_a_prefixed_key_becomes_an_escaped_path() -> None:
    changes = plan_labels({}, (("example.com/owner", "team-a"),), overwrite=True)

    assert changes.operations == (
        {"op": "add", "path": "/metadata/labels/example.com~1owner", "value": "team-a"},
    )


def test_no_labels_map_is_created_whole_in_one_add() -> None:
    changes = plan_labels(None, (("a", "1"), ("b", "2")), overwrite=True)

    assert changes.operations == (
        {"op": "add", "path": "/metadata/labels", "value": {"a": "1", "b": "2"}},
    )
    assert changes.set == ("a", "b")


def test_missing_metadata_is_created_with_the_labels() -> None:
    changes = plan_labels(None, WANTED, overwrite=True, metadata_exists=False)

    assert changes.operations == (
        {"op": "add", "path": "/metadata", "value": {"labels": {"environment": "production"}}},
    )


def test_a_label_already_at_the_wanted_value_gets_no_operation() -> None:
    changes = plan_labels({"environment": "production", "app": "web"}, WANTED, overwrite=True)

    assert changes.operations == ()
    assert changes.set == ()


def test_a_different_value_is_replaced_and_reported_when_overwriting() -> None:
    changes = plan_labels({"environment": "staging"}, WANTED, overwrite=True)

    assert changes.operations == (
        {"op": "replace", "path": "/metadata/labels/environment", "value": "production"},
    )
    assert changes.overwritten == (Overwrite("environment", "staging", "production"),)


def test_a_different_value_is_kept_without_overwrite() -> None:
    changes = plan_labels({"environment": "staging"}, WANTED, overwrite=False)

    assert changes.operations == ()
    assert changes.overwritten == ()
    assert changes.kept == (Overwrite("environment", "staging", "production"),)


def test_an_empty_labels_map_gets_one_add_per_label() -> None:
    changes = plan_labels({}, (("a", "1"), ("b", "2")), overwrite=True)

    assert [operation["path"] for operation in changes.operations] == [
        "/metadata/labels/a",
        "/metadata/labels/b",
    ]


@given(existing=st.none() | existing_labels, wanted=configured_labels)
def test_applying_the_patch_gives_the_old_labels_plus_ours(
    existing: dict[str, str] | None, wanted: dict[str, str]
) -> None:
    changes = plan_labels(existing, tuple(wanted.items()), overwrite=True)

    patched = jsonpatch.apply_patch(pod(existing), list(changes.operations))

    assert patched["metadata"]["labels"] == {**(existing or {}), **wanted}


@given(existing=st.none() | existing_labels, wanted=configured_labels)
def test_without_overwrite_no_existing_value_ever_changes(
    existing: dict[str, str] | None, wanted: dict[str, str]
) -> None:
    changes = plan_labels(existing, tuple(wanted.items()), overwrite=False)

    patched = jsonpatch.apply_patch(pod(existing), list(changes.operations))

    assert patched["metadata"]["labels"] == {**wanted, **(existing or {})}


@given(existing=existing_labels, wanted=configured_labels)
def test_only_labels_that_change_get_an_operation(
    existing: dict[str, str], wanted: dict[str, str]
) -> None:
    changes = plan_labels(existing, tuple(wanted.items()), overwrite=True)

    changed = [key for key, value in wanted.items() if existing.get(key) != value]
    assert list(changes.set) == changed
    assert len(changes.operations) == len(changed)


@given(existing=st.none() | existing_labels, wanted=configured_labels, overwrite=st.booleans())
def test_the_cli_applier_agrees_with_the_jsonpatch_library(
    existing: dict[str, str] | None, wanted: dict[str, str], overwrite: bool
) -> None:
    operations = list(plan_labels(existing, tuple(wanted.items()), overwrite=overwrite).operations)

    assert apply_patch(pod(existing), operations) == jsonpatch.apply_patch(
        pod(existing), operations
    )


def test_apply_patch_does_not_modify_its_input() -> None:
    document = pod({"a": "1"})

    apply_patch(document, [{"op": "add", "path": "/metadata/labels/b", "value": "2"}])

    assert document == pod({"a": "1"})


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "add", "path": "metadata", "value": 1},
        {"op": "add", "path": "/spec/x", "value": 1},
        {"op": "replace", "path": "/metadata/labels/missing", "value": "1"},
        {"op": "add", "path": "/metadata/name/x", "value": "1"},
    ],
)
def test_apply_patch_refuses_what_it_does_not_support(operation: dict[str, Any]) -> None:
    with pytest.raises(PatchError):
        apply_patch(pod({"a": "1"}), [operation])
