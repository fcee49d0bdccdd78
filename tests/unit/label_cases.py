"""The table of label cases every way of labelling is held to: what a Pod carries
before, and after, with overwrite on and off. The policy's CEL (test_chart_policy_cel),
the webhook's matchConditions (test_chart_match_conditions), the backfill's decision
(backfill/test_plan) and, through the real API server, the e2e suite
(tests/e2e/test_modes.py, same rows) all run it."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.unit.strategies import labels_around

EXTRA_LABELS = {"example.com/team": "payments", "tier": "backend"}
OURS = {"environment": "production", **EXTRA_LABELS}
# The chart values that give those labels.
CHART_VALUES: dict[str, Any] = {"extraLabels": EXTRA_LABELS}


def pod(labels: dict[str, str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "demo", "namespace": "team-a"}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": []}}


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
    "every label already right": (
        {"app": "shop", **OURS},
        {"app": "shop", **OURS},
        {"app": "shop", **OURS},
    ),
    "every key there, one with another value": (
        {**OURS, "tier": "frontend"},
        OURS,
        {**OURS, "tier": "frontend"},
    ),
}


# Any label map a new Pod may carry, or none: valid labels that often share a key, or a
# value, with ours (tests/unit/strategies.py).
POD_LABELS = st.none() | labels_around(OURS)
