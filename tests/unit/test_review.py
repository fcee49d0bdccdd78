"""review: the one function every caller uses, from AdmissionReview to answer."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.admission import InvalidReview, Outcome, review
from app.admission.decode import ADMISSION_V1BETA1
from app.admission.policy import LabelPolicy
from tests.unit.conftest import UID, ReviewFactory
from tests.unit.strategies import configured_labels, existing_labels

OWNER = LabelPolicy(labels=(("environment", "production"), ("example.com/owner", "team-a")))


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    assert response["patchType"] == "JSONPatch"
    operations: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return operations


def test_a_new_pod_is_allowed_with_a_patch_adding_the_labels(make_review: ReviewFactory) -> None:
    result = review(make_review({"app": "web"}), OWNER)

    assert result.outcome is Outcome.PATCHED
    assert result.response["response"]["allowed"] is True
    assert patch_of(result.response) == [
        {"op": "add", "path": "/metadata/labels/environment", "value": "production"},
        {"op": "add", "path": "/metadata/labels/example.com~1owner", "value": "team-a"},
    ]


@pytest.mark.parametrize("labels", [None, "absent"])
def test_a_pod_without_a_labels_map_gets_one_add_of_the_whole_map(
    make_review: ReviewFactory, labels: str | None
) -> None:
    request = make_review() if labels == "absent" else make_review(None)

    result = review(request, OWNER)

    assert patch_of(result.response) == [
        {
            "op": "add",
            "path": "/metadata/labels",
            "value": {"environment": "production", "example.com/owner": "team-a"},
        }
    ]


def test_a_pod_named_by_generate_name_is_labelled(make_review: ReviewFactory) -> None:
    result = review(make_review({}, name=None, generate_name="web-"), LabelPolicy())

    assert result.outcome is Outcome.PATCHED
    assert result.metadata is not None
    assert result.metadata.generate_name == "web-"


def test_the_response_echoes_uid_kind_and_api_version(make_review: ReviewFactory) -> None:
    answer = review(make_review(api_version=ADMISSION_V1BETA1), LabelPolicy()).response

    assert answer["apiVersion"] == ADMISSION_V1BETA1
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == UID


def test_an_existing_label_is_overwritten_with_a_warning(make_review: ReviewFactory) -> None:
    result = review(make_review({"environment": "staging"}), LabelPolicy())

    assert patch_of(result.response) == [
        {"op": "replace", "path": "/metadata/labels/environment", "value": "production"}
    ]
    assert result.warnings == [
        'pod-labeler: label "environment" was "staging", overwritten with "production"'
    ]


def test_no_overwrite_keeps_the_existing_value_and_sends_no_patch(
    make_review: ReviewFactory,
) -> None:
    result = review(make_review({"environment": "staging"}), LabelPolicy(overwrite=False))

    assert result.outcome is Outcome.ALLOWED
    assert result.response["response"] == {"uid": UID, "allowed": True}
    assert result.changes is not None
    assert [kept.key for kept in result.changes.kept] == ["environment"]


def test_a_pod_already_labelled_gets_no_patch(make_review: ReviewFactory) -> None:
    result = review(make_review({"environment": "production"}), LabelPolicy())

    assert result.outcome is Outcome.ALLOWED
    assert "patch" not in result.response["response"]
    assert "warnings" not in result.response["response"]


@pytest.mark.parametrize(
    ("kind", "operation"),
    [
        ({"group": "apps", "version": "v1", "kind": "Deployment"}, "CREATE"),
        ({"group": "", "version": "v1", "kind": "Pod"}, "UPDATE"),
        ({"group": "", "version": "v1", "kind": "Pod"}, "DELETE"),
        ({"group": "", "version": "v1", "kind": "ConfigMap"}, "CREATE"),
        ({"group": "example.com", "version": "v1", "kind": "Pod"}, "CREATE"),
    ],
)
def test_anything_but_a_pod_create_is_allowed_without_a_patch(
    make_review: ReviewFactory, kind: dict[str, str], operation: str
) -> None:
    result = review(make_review({}, kind=kind, operation=operation), LabelPolicy())

    assert result.outcome is Outcome.ALLOWED
    assert result.response["response"] == {"uid": UID, "allowed": True}
    assert result.changes is None


def test_a_pod_delete_without_an_object_is_still_allowed(make_review: ReviewFactory) -> None:
    request = make_review(operation="DELETE")
    request["request"]["object"] = None

    assert review(request, LabelPolicy()).outcome is Outcome.ALLOWED


def test_a_dry_run_gets_the_same_patch(make_review: ReviewFactory) -> None:
    real = review(make_review({"app": "web"}), LabelPolicy()).response
    dry = review(make_review({"app": "web"}, dry_run=True), LabelPolicy()).response

    assert dry == real


def test_a_malformed_review_raises_invalid_review() -> None:
    with pytest.raises(InvalidReview):
        review({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, LabelPolicy())


policies = st.builds(
    lambda labels, overwrite: LabelPolicy(labels=tuple(labels.items()), overwrite=overwrite),
    configured_labels,
    st.booleans(),
)


@given(
    policy=policies,
    labels=st.one_of(st.just("absent"), st.none(), existing_labels),
    named=st.booleans(),
)
def test_for_any_pod_the_patch_gives_exactly_the_old_labels_plus_ours(
    make_review: ReviewFactory,
    policy: LabelPolicy,
    labels: dict[str, str] | str | None,
    named: bool,
) -> None:
    request = make_review(
        name="web" if named else None,
        generate_name=None if named else "web-",
        **({} if labels == "absent" else {"labels": labels}),
    )
    pod = request["request"]["object"]
    old = labels if isinstance(labels, dict) else {}

    answer = review(request, policy).response
    patch = patch_of(answer) if "patch" in answer["response"] else []
    new = jsonpatch.apply_patch(pod, patch)["metadata"].get("labels") or {}

    ours = policy.as_dict()
    expected = {**old, **ours} if policy.overwrite else {**ours, **old}
    assert new == expected
    assert {key: new[key] for key in old if key not in ours} == {
        key: value for key, value in old.items() if key not in ours
    }
