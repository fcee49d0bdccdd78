"""The backfill's decision is the webhook's: each Pod of the shared label table gets
the labels the table expects, through a merge patch of exactly the changes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.admission.policy import LabelPolicy
from app.backfill.plan import plan_pod
from tests.unit.label_cases import CASES, OURS


def policy(*, overwrite: bool) -> LabelPolicy:
    return LabelPolicy(labels=tuple(OURS.items()), overwrite=overwrite)


def pod(labels: dict[str, str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "shop-1", "namespace": "team-a", "resourceVersion": "41"}
    if labels is not None:
        metadata["labels"] = labels
    return {"metadata": metadata}


def merge(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch."""
    result = copy.deepcopy(obj)
    for key, value in patch.items():
        if isinstance(value, dict):
            result[key] = merge(result.get(key) or {}, value)
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def backfilled(labels: dict[str, str] | None, *, overwrite: bool) -> dict[str, str]:
    item = plan_pod(pod(labels), policy(overwrite=overwrite))
    if item.complies:
        return dict(labels or {})
    return dict(merge(pod(labels), item.merge_patch())["metadata"]["labels"])


@pytest.mark.parametrize(
    ("before", "with_overwrite", "without_overwrite"), CASES.values(), ids=CASES.keys()
)
def test_backfill_gives_a_running_pod_the_labels_the_table_expects(
    before, with_overwrite, without_overwrite
):
    assert backfilled(before, overwrite=True) == with_overwrite
    assert backfilled(before, overwrite=False) == without_overwrite


def test_the_patch_names_only_the_labels_that_change_and_the_version_it_was_decided_on():
    item = plan_pod(pod({"environment": "staging", "tier": "backend"}), policy(overwrite=True))

    assert item.merge_patch() == {
        "metadata": {
            "resourceVersion": "41",
            "labels": {"environment": "production", "example.com/team": "payments"},
        }
    }


def test_a_pod_already_labelled_right_complies_and_needs_no_patch():
    assert plan_pod(pod({"app": "shop", **OURS}), policy(overwrite=True)).complies


def test_without_overwrite_a_pod_with_another_value_complies():
    assert plan_pod(pod({**OURS, "tier": "frontend"}), policy(overwrite=False)).complies


def test_describe_shows_labels_added_and_overwritten():
    item = plan_pod(pod({"environment": "staging"}), policy(overwrite=True))

    assert item.describe() == (
        "environment=staging -> production, +example.com/team=payments, +tier=backend"
    )


LABEL_KEYS = st.sampled_from(["environment", "tier", "app", "example.com/team", "a.b/c"])
LABEL_VALUES = st.sampled_from(["", "production", "staging", "payments", "backend"])


@given(st.none() | st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=5), st.booleans())
def test_a_backfilled_pod_complies_so_a_second_run_changes_nothing(labels, overwrite):
    after = backfilled(labels, overwrite=overwrite)

    assert plan_pod(pod(after), policy(overwrite=overwrite)).complies
