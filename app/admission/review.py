"""The webhook's behaviour in one function: `review(admission_review, policy)`.

The HTTP route, the `mutate` CLI and the tests all call it. It does no I/O; what
it decided comes back as data (`ReviewResult`) for the edges to log and count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from app.admission.decode import AdmissionRequest, ObjectMetadata, decode_metadata, decode_review
from app.admission.patch import LabelChanges, Overwrite, plan_labels
from app.admission.responses import AdmissionReview, patched
from app.config import LabelPolicy

WARNING_PREFIX = "pod-labeler"


class Outcome(StrEnum):
    PATCHED = "patched"
    # Allowed without a patch: not a Pod CREATE, or every label already right.
    ALLOWED = "allowed"


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
    request = decode_review(admission_review)
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
