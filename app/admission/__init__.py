"""The admission core: AdmissionReview in, AdmissionReview out, no I/O.

Split by concern like controller-runtime's `pkg/webhook/admission`:
`decode` (parse and check a review), `patch` (the label JSONPatch),
`responses` (allowed / patched / errored builders) and `review` (the decision).
"""

from app.admission.decode import InvalidReview
from app.admission.review import Outcome, ReviewResult, review

__all__ = ["InvalidReview", "Outcome", "ReviewResult", "review"]
