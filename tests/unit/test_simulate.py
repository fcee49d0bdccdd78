"""simulate: what `mutate` shows is the result of the webhook's own patch."""

from __future__ import annotations

from typing import Any

import pytest

from app.admission import InvalidReview
from app.admission.policy import LabelPolicy
from app.admission.simulate import review_for_object, simulate
from tests.unit.conftest import ReviewFactory

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"}},
}


def test_a_bare_pod_is_reviewed_as_a_create_in_its_namespace() -> None:
    request = review_for_object(POD)["request"]

    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert (request["operation"], request["namespace"], request["name"]) == (
        "CREATE",
        "team-a",
        "web",
    )


def test_an_object_of_a_named_group_keeps_its_group() -> None:
    request = review_for_object({"apiVersion": "apps/v1", "kind": "Deployment"})["request"]

    assert request["kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert request["namespace"] == "default"


def test_a_pod_comes_back_with_the_labels_and_everything_else_intact() -> None:
    simulation = simulate(POD, LabelPolicy())

    assert simulation.object == {
        **POD,
        "metadata": {**POD["metadata"], "labels": {"app": "web", "environment": "production"}},
    }


def test_an_admission_review_gives_back_its_mutated_object(make_review: ReviewFactory) -> None:
    simulation = simulate(make_review(None), LabelPolicy())

    assert simulation.object["metadata"]["labels"] == {"environment": "production"}


def test_a_review_without_an_object_cannot_be_simulated(make_review: ReviewFactory) -> None:
    review = make_review(operation="DELETE")
    review["request"]["object"] = None

    with pytest.raises(InvalidReview, match=r"no request\.object"):
        simulate(review, LabelPolicy())
