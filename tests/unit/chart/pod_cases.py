"""The table of Pod cases the chart's CEL is tested against: the policy's JSON Patch and the
webhook's matchConditions. The e2e suite (tests/e2e/test_modes.py) runs the same table
through the real API server in both modes."""

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


# What a new Pod carries before, and after admission with and without overwrite.
CASES = {
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
