"""Builders for the AdmissionReview sent back to the API server.

Named after controller-runtime's `admission.Allowed`, `Patched` and `Errored`.
Each returns the whole review (apiVersion, kind, response) so callers never
assemble one by hand, and the apiVersion the request came with is echoed: a
v1beta1 client must get a v1beta1 answer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from app.admission.decode import ADMISSION_V1

AdmissionReview = dict[str, Any]


def _review(api_version: str, response: dict[str, Any]) -> AdmissionReview:
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def allowed(
    uid: str, *, api_version: str = ADMISSION_V1, warnings: Sequence[str] = ()
) -> AdmissionReview:
    """Let the object through unchanged."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return _review(api_version, response)


def encode_patch(operations: Sequence[Mapping[str, Any]]) -> str:
    """The `response.patch` wire form: base64 of the compact JSON array."""
    raw = json.dumps(list(operations), separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def patched(
    uid: str,
    operations: Sequence[Mapping[str, Any]],
    *,
    api_version: str = ADMISSION_V1,
    warnings: Sequence[str] = (),
) -> AdmissionReview:
    """Let the object through with a JSONPatch; no operations means no patch at all."""
    review = allowed(uid, api_version=api_version, warnings=warnings)
    if operations:
        review["response"]["patchType"] = "JSONPatch"
        review["response"]["patch"] = encode_patch(operations)
    return review


def errored(
    code: int, message: str, *, uid: str = "", api_version: str = ADMISSION_V1
) -> AdmissionReview:
    """Refuse with a status; also the JSON body of every HTTP error this server sends."""
    return _review(
        api_version,
        {"uid": uid, "allowed": False, "status": {"code": code, "message": message}},
    )
