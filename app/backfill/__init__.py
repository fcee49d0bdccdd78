"""`pod-labeler audit` and `pod-labeler backfill`: the Pods that were running before
the release, checked and labelled with the webhook's own decision.

`selection` (which Pods: the release's selectors, evaluated as the API server does),
`plan` (what each needs: `app.admission.review`), `release` (reading those settings
from the installed release), `kube` (the API, through lightkube), `run` (the verbs'
work) and `cli` (their flags; `register` adds them to `app.main`).
"""

from app.backfill.cli import register

__all__ = ["register"]
