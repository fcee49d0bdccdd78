"""What the webhook would do to an object, for `python -m app.main mutate`.

Takes either a bare object (a Pod manifest, as `kubectl apply` would send it) or a
whole AdmissionReview, runs it through `review` like the HTTP route does, and
applies the returned patch, so the CLI shows the real patch's effect.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.admission.decode import ADMISSION_V1, InvalidReview
from app.admission.patch import apply_patch
from app.admission.policy import LabelPolicy
from app.admission.review import ReviewResult, review

SIMULATED_UID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Simulation:
    object: Mapping[str, Any]
    result: ReviewResult


def review_for_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The AdmissionReview the API server would send to create `obj`."""
    api_version = obj.get("apiVersion") or ""
    kind = obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        raise InvalidReview("the object needs string apiVersion and kind fields")
    group, _, version = api_version.rpartition("/")
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return {
        "apiVersion": ADMISSION_V1,
        "kind": "AdmissionReview",
        "request": {
            "uid": SIMULATED_UID,
            "kind": {"group": group, "version": version, "kind": kind},
            "operation": "CREATE",
            "namespace": metadata.get("namespace") or "default",
            "name": metadata.get("name") or "",
            "object": obj,
        },
    }


def simulate(document: object, policy: LabelPolicy) -> Simulation:
    """Review `document` and return the object as the API server would store it."""
    if not isinstance(document, dict):
        raise InvalidReview("expected a Kubernetes object or an AdmissionReview")
    admission_review = (
        document if document.get("kind") == "AdmissionReview" else review_for_object(document)
    )
    result = review(admission_review, policy)
    obj = result.request.object
    if obj is None:
        raise InvalidReview("the AdmissionReview has no request.object to mutate")
    patch = result.response["response"].get("patch")
    operations = json.loads(base64.b64decode(patch)) if patch else []
    return Simulation(object=apply_patch(obj, operations), result=result)
