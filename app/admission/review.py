"""The webhook's behaviour: `review(admission_review, policy)`.

The `mutate` CLI and the tests call `review`; the HTTP route decodes first (so an
error later can still echo the uid) and calls `review_request`. No I/O; what was
decided comes back as data (`ReviewResult`) for the edges to log and count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from app.admission.decode import AdmissionRequest, ObjectMetadata, decode_metadata, decode_review
from app.admission.outcome import Outcome
from app.admission.patch import LabelChanges, Overwrite, plan_labels
from app.admission.policy import LabelPolicy
from app.admission.responses import AdmissionReview, patched

WARNING_PREFIX = "pod-labeler"


@dataclass(frozen=True)
class ReviewResult:
    request: AdmissionRequest
    response: AdmissionReview
    outcome: Outcome
    # None when the request is not a Pod CREATE, so labels were not considered.
    metadata: ObjectMetadata | None = None
    changes: LabelChanges | None = None

    @property
    def warnings(self) -> list[str]:
        return list(self.response["response"].get("warnings", ()))


def is_pod_create(request: AdmissionRequest) -> bool:
    return request.kind.group == "" and request.kind.kind == "Pod" and request.operation == "CREATE"


def overwrite_warning(overwrite: Overwrite) -> str:
    """Shown by kubectl as `Warning: ...`, so it names the label and both values."""
    # JSON quoting rather than repr: it escapes control characters, and kubectl
    # users read JSON-ish quoting more easily than Python's.
    key, old, new = (json.dumps(text) for text in (overwrite.key, overwrite.old, overwrite.new))
    return f"{WARNING_PREFIX}: label {key} was {old}, overwritten with {new}"


def review(admission_review: object, policy: LabelPolicy) -> ReviewResult:
    """Answer one AdmissionReview. Raises `InvalidReview` for a malformed one.

    A dry run gets the same answer as a real request: the API server applies the
    patch and throws the result away, and the user should see what would happen.
    """
    return review_request(decode_review(admission_review), policy)


def review_request(request: AdmissionRequest, policy: LabelPolicy) -> ReviewResult:
    """Answer an already decoded request (see `review`)."""
    if not is_pod_create(request):
        response = patched(request.uid, (), api_version=request.api_version)
        return ReviewResult(request=request, response=response, outcome=Outcome.ALLOWED)

    metadata = decode_metadata(request)
    changes = plan_labels(
        metadata.labels,
        policy.labels,
        overwrite=policy.overwrite,
        metadata_exists=metadata.exists,
    )
    response = patched(
        request.uid,
        changes.operations,
        api_version=request.api_version,
        warnings=[overwrite_warning(item) for item in changes.overwritten],
    )
    return ReviewResult(
        request=request,
        response=response,
        outcome=Outcome.PATCHED if changes.operations else Outcome.ALLOWED,
        metadata=metadata,
        changes=changes,
    )
