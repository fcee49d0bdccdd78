"""decode: AdmissionReview JSON → typed request, or InvalidReview naming the problem."""

from __future__ import annotations

from typing import Any

import pytest

from app.admission.decode import (
    ADMISSION_V1BETA1,
    GroupVersionKind,
    InvalidReview,
    decode_metadata,
    decode_review,
)
from tests.unit.conftest import UID, ReviewFactory


def test_a_pod_create_review_is_decoded_into_its_fields(make_review: ReviewFactory) -> None:
    request = decode_review(make_review({"app": "web"}, namespace="team-a", dry_run=True))

    assert request.uid == UID
    assert request.kind == GroupVersionKind(group="", version="v1", kind="Pod")
    assert (request.operation, request.namespace, request.name) == ("CREATE", "team-a", "web")
    assert request.dry_run is True
    assert request.api_version == "admission.k8s.io/v1"


def test_a_v1beta1_review_keeps_its_api_version(make_review: ReviewFactory) -> None:
    request = decode_review(make_review(api_version=ADMISSION_V1BETA1))

    assert request.api_version == ADMISSION_V1BETA1


def test_optional_fields_default_when_absent_or_null(make_review: ReviewFactory) -> None:
    review = make_review()
    del review["request"]["namespace"]
    review["request"]["name"] = None
    del review["request"]["dryRun"]

    request = decode_review(review)

    assert (request.namespace, request.name, request.dry_run) == ("", "", False)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object, not an array"),
        ("review", "must be a JSON object, not a string"),
        ({"kind": "AdmissionReview"}, "unsupported apiVersion None"),
        ({"apiVersion": "admission.k8s.io/v2"}, "unsupported apiVersion"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}, "kind must be 'AdmissionReview'"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "has no request"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": []},
            "request must be an object",
        ),
    ],
)
def test_a_malformed_envelope_is_invalid_with_a_message(document: object, message: str) -> None:
    with pytest.raises(InvalidReview, match=message):
        decode_review(document)


@pytest.mark.parametrize("uid", [None, "", 42])
def test_a_request_without_a_string_uid_is_invalid(make_review: ReviewFactory, uid: Any) -> None:
    review = make_review()
    review["request"]["uid"] = uid

    with pytest.raises(InvalidReview, match="no uid"):
        decode_review(review)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", None, "request.kind must be an object, not null"),
        ("kind", {"group": "", "version": "v1"}, "request.kind must have"),
        ("kind", {"group": 1, "version": "v1", "kind": "Pod"}, "request.kind must have"),
        ("operation", None, "request.operation must be a string, not null"),
        ("operation", 3, "request.operation must be a string, not a number"),
        ("dryRun", "yes", "request.dryRun must be a boolean, not a string"),
        ("namespace", ["a"], "request.namespace must be a string, not an array"),
        ("object", "pod", "request.object must be an object, not a string"),
    ],
)
def test_a_badly_typed_request_field_is_invalid_and_keeps_the_uid(
    make_review: ReviewFactory, field: str, value: object, message: str
) -> None:
    review = make_review(api_version=ADMISSION_V1BETA1)
    review["request"][field] = value

    with pytest.raises(InvalidReview, match=message) as raised:
        decode_review(review)

    assert (raised.value.uid, raised.value.api_version) == (UID, ADMISSION_V1BETA1)


def test_labels_absent_and_labels_null_both_mean_no_labels_map(
    make_review: ReviewFactory,
) -> None:
    absent = decode_metadata(decode_review(make_review()))
    null = decode_metadata(decode_review(make_review(None)))

    assert absent.labels is None
    assert null.labels is None
    assert absent.exists
    assert null.exists


def test_metadata_carries_name_generate_name_and_labels(make_review: ReviewFactory) -> None:
    metadata = decode_metadata(
        decode_review(make_review({"a": "b"}, name=None, generate_name="web-"))
    )

    assert (metadata.name, metadata.generate_name, metadata.labels) == ("", "web-", {"a": "b"})


def test_missing_metadata_is_reported_as_not_existing(make_review: ReviewFactory) -> None:
    metadata = decode_metadata(decode_review(make_review(metadata=None)))

    assert not metadata.exists
    assert metadata.labels is None


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("web", "metadata must be an object, not a string"),
        ({"name": 3}, "name and generateName must be strings"),
        ({"labels": ["environment=production"]}, "labels must be an object, not an array"),
        ({"labels": {"replicas": 3}}, "label 'replicas' must have a string value, not a number"),
    ],
)
def test_malformed_metadata_is_invalid(
    make_review: ReviewFactory, metadata: object, message: str
) -> None:
    request = decode_review(make_review(metadata=metadata))

    with pytest.raises(InvalidReview, match=message) as raised:
        decode_metadata(request)

    assert raised.value.uid == UID


def test_a_pod_create_without_an_object_is_invalid(make_review: ReviewFactory) -> None:
    review = make_review()
    del review["request"]["object"]

    with pytest.raises(InvalidReview, match=r"request\.object is missing"):
        decode_metadata(decode_review(review))
