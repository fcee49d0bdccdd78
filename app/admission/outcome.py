"""How an admission request was answered: the one list the review, the HTTP layer,
the logs and the metrics share. Standard library only, like the rest of the core."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    PATCHED = "patched"
    # Allowed without a patch: not a Pod CREATE, or every label already right.
    ALLOWED = "allowed"
    # The request was not an AdmissionReview we can answer (a 4xx).
    INVALID = "invalid"
    # The server failed while answering (a 500).
    ERROR = "error"
