"""The policy's CEL, evaluated against sample Pods: it labels them as the webhook does.

cel-python evaluates the rendered expressions here; the real API server (the e2e tests)
also type-checks them. Two Kubernetes additions are stood in for: `JSONPatch{...}` builds a
map of its fields, and `jsonpatch.escapeKey(k)` is RFC 6901 escaping (`~` then `/`). The
resulting ops are applied with the `jsonpatch` package to the Pod's JSON as the API server
encodes it, where an empty label map is left out (`omitempty`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.label_cases import CASES, CHART_VALUES, OURS, POD_LABELS, pod

celpy = pytest.importorskip("celpy", reason="cel-python is not installed (requirements-dev.txt)")
celtypes = pytest.importorskip("celpy.celtypes")

Mutate = Callable[[dict[str, Any]], tuple[list[dict[str, Any]], dict[str, Any]]]


def json_patch(fields: Any) -> Any:
    return celtypes.MapType(dict(fields))


def escape_key(_namespace: Any, key: Any) -> Any:
    return celtypes.StringType(str(key).replace("~", "~0").replace("/", "~1"))


class PolicyEvaluator:
    """Runs a rendered MutatingAdmissionPolicy's variables and JSON Patch on a Pod."""

    def __init__(self, policy: dict[str, Any]) -> None:
        environment = celpy.Environment()
        functions = {"escapeKey": escape_key}

        def program(expression: str) -> Any:
            return environment.program(environment.compile(expression), functions=functions)

        spec = policy["spec"]
        self.variables = [(v["name"], program(v["expression"])) for v in spec["variables"]]
        (mutation,) = spec["mutations"]
        self.patch = program(mutation["jsonPatch"]["expression"])

    def __call__(self, pod: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        activation: dict[str, Any] = {
            "object": celpy.json_to_cel(pod),
            "JSONPatch": json_patch,
            "jsonpatch": celtypes.MapType(),
        }
        variables: dict[Any, Any] = {}
        for name, program in self.variables:
            activation["variables"] = celtypes.MapType(variables)
            variables[celtypes.StringType(name)] = program.evaluate(activation)
        activation["variables"] = celtypes.MapType(variables)
        ops = json.loads(json.dumps(self.patch.evaluate(activation)))
        encoded = copy.deepcopy(pod)
        if encoded["metadata"].get("labels") == {}:
            del encoded["metadata"]["labels"]
        return ops, jsonpatch.apply_patch(encoded, ops)


@pytest.fixture(scope="module")
def mutate(render, policy_api) -> Callable[..., Mutate]:
    """mutate(overwrite=bool) -> a function: Pod -> (JSON Patch ops, patched Pod)."""
    cache: dict[bool, Mutate] = {}

    def _mutate(*, overwrite: bool) -> Mutate:
        if overwrite not in cache:
            values = {"mode": "policy", **CHART_VALUES, "overwrite": overwrite}
            manifests = render(values=values, api_versions=policy_api)
            cache[overwrite] = PolicyEvaluator(manifests.one("MutatingAdmissionPolicy"))
        return cache[overwrite]

    return _mutate


@pytest.mark.parametrize(
    ("before", "with_overwrite", "without_overwrite"), CASES.values(), ids=CASES.keys()
)
def test_policy_gives_a_new_pod_the_labels_the_table_expects(
    mutate, before, with_overwrite, without_overwrite
):
    assert mutate(overwrite=True)(pod(before))[1]["metadata"]["labels"] == with_overwrite
    assert mutate(overwrite=False)(pod(before))[1]["metadata"]["labels"] == without_overwrite


def test_a_pod_without_labels_gets_one_op_adding_the_whole_map(mutate):
    ops, _ = mutate(overwrite=True)(pod(None))
    assert ops == [{"op": "add", "path": "/metadata/labels", "value": OURS}]


def test_a_key_with_a_slash_is_escaped_in_the_patch_path(mutate):
    ops, _ = mutate(overwrite=True)(pod({"app": "shop"}))
    assert {"op": "add", "path": "/metadata/labels/example.com~1team", "value": "payments"} in ops


def test_a_pod_already_labelled_right_gets_an_empty_patch(mutate):
    for overwrite in (True, False):
        ops, patched = mutate(overwrite=overwrite)(pod({"app": "shop", **OURS}))
        assert ops == []
        assert patched == pod({"app": "shop", **OURS})


def test_only_the_labels_change(mutate):
    before = pod({"environment": "staging"})
    _, after = mutate(overwrite=True)(before)
    del before["metadata"]["labels"], after["metadata"]["labels"]
    assert after == before


@given(POD_LABELS)
def test_with_overwrite_a_pod_ends_with_its_labels_and_ours_on_top(mutate, labels):
    _, patched = mutate(overwrite=True)(pod(labels))
    assert patched["metadata"]["labels"] == {**(labels or {}), **OURS}


@given(POD_LABELS)
def test_without_overwrite_a_pod_keeps_every_label_it_has_and_gains_the_missing(mutate, labels):
    _, patched = mutate(overwrite=False)(pod(labels))
    assert patched["metadata"]["labels"] == {**OURS, **(labels or {})}


@given(POD_LABELS, st.booleans())
def test_the_patch_is_idempotent_so_reinvocation_changes_nothing(mutate, labels, overwrite):
    _, once = mutate(overwrite=overwrite)(pod(labels))
    ops, twice = mutate(overwrite=overwrite)(once)
    assert ops == []
    assert twice == once
