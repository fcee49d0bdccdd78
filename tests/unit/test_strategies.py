"""The shared label strategies draw configured labels the server itself would accept."""

from __future__ import annotations

from hypothesis import given

from app.admission.policy import LabelPolicy
from tests.unit.strategies import configured_labels


@given(configured_labels)
def test_every_configured_label_map_is_a_policy_the_server_accepts(labels: dict[str, str]) -> None:
    # LabelPolicy validates on construction: an invalid key or value raises ConfigError.
    LabelPolicy(labels=tuple(labels.items()))
