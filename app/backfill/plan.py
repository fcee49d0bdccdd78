"""What an existing Pod needs: the same decision the webhook makes at creation.

Each Pod goes through `app.admission.review` as the AdmissionReview its creation
would have sent (one code path for the decision), and the label changes it returns
become a JSON merge patch of exactly those keys. The Pod's resourceVersion rides
along as a precondition, so a Pod changed since it was read gets 409 Conflict
instead of a patch computed from stale labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.admission.patch import LabelChanges
from app.admission.policy import LabelPolicy
from app.admission.review import review
from app.admission.simulate import review_for_object


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodPlan:
    pod: PodRef
    resource_version: str
    labels: Mapping[str, str]
    changes: LabelChanges
    # The policy's labels, for the values of the keys `changes.set` names.
    wanted: Mapping[str, str]

    @property
    def complies(self) -> bool:
        return not self.changes.operations

    @property
    def label_updates(self) -> dict[str, str]:
        return {key: self.wanted[key] for key in self.changes.set}

    def merge_patch(self) -> dict[str, Any]:
        """The changes as a merge patch, with the resourceVersion as its precondition."""
        return {
            "metadata": {"resourceVersion": self.resource_version, "labels": self.label_updates}
        }

    def describe(self) -> str:
        """`+key=value` for a label added, `key=old -> new` for one overwritten."""
        return ", ".join(
            f"{key}={self.labels[key]} -> {value}" if key in self.labels else f"+{key}={value}"
            for key, value in self.label_updates.items()
        )


def plan_pod(pod: Mapping[str, Any], policy: LabelPolicy) -> PodPlan:
    """Review `pod` as if it were being created now, and keep the label changes."""
    metadata = pod.get("metadata") or {}
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(metadata)}
    result = review(review_for_object(obj), policy)
    assert result.changes is not None, "a Pod CREATE always gets a label decision"
    return PodPlan(
        pod=PodRef(metadata.get("namespace", ""), metadata.get("name", "")),
        resource_version=metadata.get("resourceVersion", ""),
        labels=dict(metadata.get("labels") or {}),
        changes=result.changes,
        wanted=dict(policy.labels),
    )
