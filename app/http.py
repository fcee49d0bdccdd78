"""The Flask application: /mutate, /healthz, /readyz, /metrics.

A thin edge around `app.admission.review`: it checks the HTTP envelope the way
controller-runtime's webhook `http.go` does (content type, empty body, size cap),
turns every failure into a JSON error with the right status, and logs and counts
each review. TLS is not its business; see `app.edge`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    MethodNotAllowed,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from app.admission import InvalidReview, LabelPolicy, Outcome, ReviewResult, review_request
from app.admission.decode import ADMISSION_V1, decode_review
from app.admission.responses import errored
from app.config import DEFAULT_MAX_BODY_BYTES
from app.logs import fields
from app.metrics import Metrics

MUTATE_PATH = "/mutate"
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
# What the TLS port serves (see `only`), compared with the request target as sent
# (query aside): "/metrics#x", "/%6Detrics" or "http://a/metrics" are not these
# bytes, though Flask would route them to /metrics.
ADMISSION_PATHS = (MUTATE_PATH, HEALTHZ_PATH, READYZ_PATH)
# Served on the plain-HTTP metrics port only (see `only`).
METRICS_PATH = "/metrics"

log = logging.getLogger("pod_labeler.http")

# Returns None when ready, otherwise why not (shown in the /readyz body).
Readiness = Callable[[], str | None]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _always_ready() -> str | None:
    return None


def create_app(
    policy: LabelPolicy,
    metrics: Metrics,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    readiness: Readiness = _always_ready,
) -> Flask:
    """The application factory: everything the routes use is passed in."""
    app = Flask(__name__)
    # Werkzeug enforces it both on Content-Length and while streaming a chunked
    # body, raising 413 before the body is in memory.
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    # The bound method, not the instance: Flask asks on every request whether the view
    # is a coroutine, and inspect answers that slowly for a callable instance.
    view = MutateView(policy, metrics).__call__
    app.add_url_rule(MUTATE_PATH, endpoint="mutate", view_func=view, methods=["POST"])

    @app.get(HEALTHZ_PATH)
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get(READYZ_PATH)
    def readyz() -> Response:
        reason = readiness()
        if reason is None:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready", "reason": reason})

    @app.get(METRICS_PATH)
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    # Outside /mutate (which answers its own errors): an unknown path, a wrong method.
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        response = _json(code, errored(code, error.description or error.name))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    # Registered for Exception, not InternalServerError, so it also runs under
    # Flask's testing mode, which would otherwise re-raise.
    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.error("unhandled exception", exc_info=error, extra=fields(path=request.path))
        return _json(500, errored(500, InternalServerError.description))

    return app


def only(paths: Iterable[str], app: WSGIApp) -> WSGIApp:
    """`app` for these request targets as sent (query aside), JSON 404 for the rest:
    each port serves its own paths from the one Flask app."""
    allowed = frozenset(paths)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_URI", "").partition("?")[0] in allowed:
            return app(environ, start_response)
        body = json.dumps(errored(404, "not found")).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("404 Not Found", headers)
        return [body]

    return serve


class MutateView:
    """POST /mutate: one review per request, every failure answered, logged and
    counted here, the way controller-runtime's webhook `http.go` keeps it all in
    its handler. The body is parsed and decoded once; whatever was learnt of the
    request's uid and apiVersion is echoed in an error answer.

    The review is counted before the answer leaves (a client that scrapes /metrics
    next sees it), and its log line is written once the answer is sent: the WSGI
    server closes the response after its body, so formatting and writing the line
    are not part of the review's latency."""

    def __init__(self, policy: LabelPolicy, metrics: Metrics) -> None:
        self.policy, self.metrics = policy, metrics
        # Each series' child, looked up once (every series exported from the start).
        self._reviews = {
            outcome: metrics.reviews.labels(outcome=outcome.value) for outcome in Outcome
        }
        self._set = {key: metrics.labels_set.labels(label=key) for key, _ in policy.labels}
        self._overwritten = {
            key: metrics.labels_overwritten.labels(label=key) for key, _ in policy.labels
        }

    def __call__(self) -> Response:
        started = time.perf_counter()
        uid, api_version = "", ADMISSION_V1
        try:
            admission_request = decode_review(_read_json_body())
            uid, api_version = admission_request.uid, admission_request.api_version
            result = review_request(admission_request, self.policy)
        except InvalidReview as error:
            message = f"invalid AdmissionReview: {error}"
            return self._failed(started, 400, message, error.uid, error.api_version)
        except HTTPException as error:
            code = error.code or 500
            return self._failed(started, code, error.description or error.name, uid, api_version)
        except Exception as error:
            # The analogue of controller-runtime recovering a panic: answer 500,
            # echo the uid, log it all.
            log.error("unhandled exception", exc_info=error, extra=fields(uid=uid))
            return self._failed(started, 500, InternalServerError.description, uid, api_version)
        duration = self._count(result.outcome, started)
        changes = result.changes
        for key in changes.set if changes else ():
            self._set[key].inc()
        for overwrite in changes.overwritten if changes else ():
            self._overwritten[overwrite.key].inc()
        response = _json(200, result.response)
        response.call_on_close(
            lambda: log.info("review", extra=fields(**_review_fields(result, duration)))
        )
        return response

    def _failed(
        self, started: float, code: int, message: str, uid: str, api_version: str
    ) -> Response:
        outcome = Outcome.ERROR if code >= 500 else Outcome.INVALID
        self._count(outcome, started)
        failure = fields(uid=uid, outcome=outcome.value, code=code, error=message)
        response = _json(code, errored(code, message, uid=uid, api_version=api_version))
        response.call_on_close(lambda: log.warning("review failed", extra=failure))
        return response

    def _count(self, outcome: Outcome, started: float) -> float:
        """Count the review; its duration in seconds, from body read to answer built."""
        duration = time.perf_counter() - started
        self._reviews[outcome].inc()
        self.metrics.review_duration.observe(duration)
        return duration


def _read_json_body() -> Any:
    """The request body as JSON, or the HTTPException explaining why not."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.mimetype or 'missing'!r}"
        )
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge as error:
        raise RequestEntityTooLarge(
            f"the body is larger than {request.max_content_length} bytes"
        ) from error
    if not body:
        raise BadRequest("the request body is empty")
    try:
        return json.loads(body)
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8: {error}") from error
    except ValueError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise BadRequest("the body's JSON is nested too deeply") from error


def _review_fields(result: ReviewResult, duration: float) -> dict[str, Any]:
    request_ = result.request
    metadata, changes = result.metadata, result.changes
    return {
        "uid": request_.uid,
        "namespace": request_.namespace,
        "name": (metadata.name if metadata else "") or request_.name,
        "generate_name": metadata.generate_name if metadata else "",
        "kind": request_.kind.kind,
        "operation": request_.operation,
        "dry_run": request_.dry_run,
        "labels_set": list(changes.set) if changes else [],
        "labels_overwritten": [
            {"key": item.key, "old": item.old, "new": item.new}
            for item in (changes.overwritten if changes else ())
        ],
        "labels_kept": [
            {"key": item.key, "existing": item.old, "wanted": item.new}
            for item in (changes.kept if changes else ())
        ],
        "outcome": result.outcome.value,
        "duration_ms": round(duration * 1000, 3),
    }


def _json(code: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=code, mimetype="application/json")
