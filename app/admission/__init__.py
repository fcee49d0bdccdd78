"""The admission core: AdmissionReview in, AdmissionReview out, no I/O.

Split by concern like controller-runtime's `pkg/webhook/admission`:
`decode` (parse and check a review), `patch` (the label JSONPatch),
`responses` (allowed / patched / errored builders), `policy` (which labels, and
the label syntax), `outcome` (how a request was answered) and `review` (the
decision).

Imports: the standard library and this package only (an import-linter contract in
pyproject.toml enforces it: `lint-imports`, `make lint`), so the core runs and is
tested without Flask, the server's settings or any I/O.
"""

from app.admission.decode import InvalidReview
from app.admission.outcome import Outcome
from app.admission.policy import InvalidPolicy, LabelPolicy
from app.admission.review import ReviewResult, review, review_request

__all__ = [
    "InvalidPolicy",
    "InvalidReview",
    "LabelPolicy",
    "Outcome",
    "ReviewResult",
    "review",
    "review_request",
]
