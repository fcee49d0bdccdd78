"""The table of label cases every way of labelling is held to: what a Pod carries
before, and after, with overwrite on and off. The policy's CEL (test_chart_policy_cel),
the backfill's decision (backfill/test_plan) and, through the real API server, the e2e
suite (tests/e2e/test_modes.py, same rows) all run it."""

from __future__ import annotations

EXTRA_LABELS = {"example.com/team": "payments", "tier": "backend"}
OURS = {"environment": "production", **EXTRA_LABELS}

# name: (labels before, after with overwrite, after without overwrite)
CASES: dict[str, tuple[dict[str, str] | None, dict[str, str], dict[str, str]]] = {
    "no labels": (None, OURS, OURS),
    "an empty label map": ({}, OURS, OURS),
    "other labels": ({"app": "shop"}, {"app": "shop", **OURS}, {"app": "shop", **OURS}),
    "our label with another value": (
        {"environment": "staging"},
        OURS,
        {**OURS, "environment": "staging"},
    ),
    "our label already right": ({"environment": "production"}, OURS, OURS),
    "a key with a slash": (
        {"example.com/owner": "ann", "example.com/team": "billing"},
        {"example.com/owner": "ann", **OURS},
        {"example.com/owner": "ann", **OURS, "example.com/team": "billing"},
    ),
    "every extra label already set": (dict(EXTRA_LABELS), OURS, OURS),
}
