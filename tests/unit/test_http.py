"""The Flask app: /mutate's HTTP envelope, errors as JSON, health, metrics, logs."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.admission.policy import LabelPolicy
from app.http import create_app
from app.metrics import Metrics
from tests.unit.conftest import UID, ReviewFactory, build_review, sample

JSON = "application/json"


def post(client: FlaskClient, body: bytes | str, content_type: str | None = JSON) -> TestResponse:
    """Buffered: the client reads and closes the answer as a WSGI server does, and
    closing it writes the review's log line."""
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post("/mutate", data=body, headers=headers, buffered=True)


def post_review(client: FlaskClient, review: object) -> TestResponse:
    return post(client, json.dumps(review))


def status_message(response: TestResponse) -> str:
    body: dict[str, Any] = response.get_json()
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["code"] == response.status_code
    message: str = body["response"]["status"]["message"]
    return message


def test_a_pod_create_gets_200_with_the_patch(client: FlaskClient) -> None:
    response = post_review(client, build_review({"app": "web"}))

    assert response.status_code == 200
    assert response.mimetype == JSON
    answer = response.get_json()["response"]
    assert answer["uid"] == UID
    assert json.loads(base64.b64decode(answer["patch"])) == [
        {"op": "add", "path": "/metadata/labels/environment", "value": "production"}
    ]


def test_a_v1beta1_review_gets_a_v1beta1_answer(client: FlaskClient) -> None:
    response = post_review(client, build_review(api_version="admission.k8s.io/v1beta1"))

    assert response.get_json()["apiVersion"] == "admission.k8s.io/v1beta1"


def test_a_charset_parameter_on_the_content_type_is_accepted(client: FlaskClient) -> None:
    response = post(client, json.dumps(build_review()), "application/json; charset=utf-8")

    assert response.status_code == 200


# Every way a request to /mutate can be refused, with the status and the message.
BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "wrong content type": (
        {"body": "{}", "content_type": "text/plain"},
        415,
        "Content-Type must be application/json, not 'text/plain'",
    ),
    "no content type": ({"body": "{}", "content_type": None}, 415, "not 'missing'"),
    "empty body": ({"body": ""}, 400, "the request body is empty"),
    "malformed JSON": ({"body": '{"apiVersion": '}, 400, "the body is not valid JSON"),
    "not UTF-8": ({"body": b'{"a": "\xff"}'}, 400, "the body is not UTF-8"),
    "nested too deeply": ({"body": "[" * 20_000}, 400, "nested too deeply"),
    "review without request": (
        {"body": json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})},
        400,
        "invalid AdmissionReview: the AdmissionReview has no request",
    ),
    "request without uid": (
        {"body": json.dumps(build_review(uid=""))},
        400,
        "invalid AdmissionReview: the request has no uid",
    ),
    "body over the cap": ({"body": "x" * (64 * 1024 + 1)}, 413, "larger than 65536 bytes"),
}


@pytest.mark.parametrize(
    ("request_", "status", "message"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
def test_a_bad_request_gets_a_4xx_with_a_json_message(
    client: FlaskClient, request_: dict[str, Any], status: int, message: str
) -> None:
    response = post(client, **request_)

    assert response.status_code == status
    assert response.mimetype == JSON
    assert message in status_message(response)


@pytest.mark.parametrize(
    ("request_", "status", "message"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
def test_after_a_bad_request_the_next_review_is_served(
    client: FlaskClient, request_: dict[str, Any], status: int, message: str
) -> None:
    post(client, **request_)

    assert post_review(client, build_review()).status_code == 200


def test_an_invalid_review_echoes_its_uid_and_api_version(client: FlaskClient) -> None:
    review = build_review(["not", "a", "map"], api_version="admission.k8s.io/v1beta1")

    response = post_review(client, review)

    assert response.status_code == 400
    body = response.get_json()
    assert (body["apiVersion"], body["response"]["uid"]) == ("admission.k8s.io/v1beta1", UID)
    assert "labels must be an object, not an array" in status_message(response)


def test_get_on_mutate_is_405_with_allow_header(client: FlaskClient) -> None:
    response = client.get("/mutate")

    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert status_message(response)


def test_an_unknown_path_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/nowhere")

    assert response.status_code == 404
    assert status_message(response)


def test_an_unexpected_exception_is_500_with_the_uid_echoed(
    client: FlaskClient, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("app.http.review_request", broken)

    response = post_review(client, build_review())

    assert response.status_code == 500
    assert response.get_json()["response"]["uid"] == UID
    assert sample(metrics, "pod_labeler_reviews_total", outcome="error") == 1


def test_healthz_says_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_ready(client: FlaskClient) -> None:
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_with_the_reason_when_not_ready(metrics: Metrics) -> None:
    app = create_app(LabelPolicy(), metrics, readiness=lambda: "no certificate loaded")

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["reason"] == "no certificate loaded"


@pytest.fixture
def owner_app(metrics: Metrics) -> Flask:
    policy = LabelPolicy(labels=(("environment", "production"), ("example.com/owner", "a")))
    return create_app(policy, metrics)


def test_metrics_count_reviews_by_outcome_and_labels_set_and_overwritten(
    owner_app: Flask, metrics: Metrics
) -> None:
    client = owner_app.test_client()
    post_review(client, build_review({"environment": "staging"}))
    post_review(client, build_review({"environment": "production", "example.com/owner": "a"}))
    post(client, "{")

    assert sample(metrics, "pod_labeler_reviews_total", outcome="patched") == 1
    assert sample(metrics, "pod_labeler_reviews_total", outcome="allowed") == 1
    assert sample(metrics, "pod_labeler_reviews_total", outcome="invalid") == 1
    assert sample(metrics, "pod_labeler_labels_set_total", label="environment") == 1
    assert sample(metrics, "pod_labeler_labels_set_total", label="example.com/owner") == 1
    assert sample(metrics, "pod_labeler_labels_overwritten_total", label="environment") == 1
    assert sample(metrics, "pod_labeler_review_duration_seconds_count") == 3


def test_metrics_endpoint_serves_the_prometheus_text_format(
    client: FlaskClient,
) -> None:
    post_review(client, build_review())

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert 'pod_labeler_reviews_total{outcome="patched"} 1.0' in response.get_data(as_text=True)


def test_each_review_is_logged_once_with_the_fields_operators_grep_for(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, make_review: ReviewFactory
) -> None:
    caplog.set_level(logging.INFO, logger="pod_labeler.http")

    post_review(
        client, make_review({"environment": "dev"}, name=None, generate_name="web-", dry_run=True)
    )

    (record,) = [record for record in caplog.records if record.getMessage() == "review"]
    fields = record.__dict__["fields"]
    assert fields["uid"] == UID
    assert (fields["namespace"], fields["name"], fields["generate_name"]) == ("default", "", "web-")
    assert (fields["kind"], fields["operation"], fields["dry_run"]) == ("Pod", "CREATE", True)
    assert fields["labels_set"] == ["environment"]
    assert fields["labels_overwritten"] == [
        {"key": "environment", "old": "dev", "new": "production"}
    ]
    assert fields["outcome"] == "patched"


def test_a_review_is_logged_once_its_answer_is_closed_after_the_body_is_sent(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pod_labeler.http")
    body = json.dumps(build_review())

    response = client.post("/mutate", data=body, headers={"Content-Type": JSON})
    logged_before_close = [record for record in caplog.records if record.getMessage() == "review"]
    response.close()

    assert logged_before_close == []
    assert [record.getMessage() for record in caplog.records].count("review") == 1


def test_a_refused_request_is_logged_with_its_reason(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    post(client, "{}", "text/plain")

    (record,) = [record for record in caplog.records if record.getMessage() == "review failed"]
    assert record.__dict__["fields"]["code"] == 415
