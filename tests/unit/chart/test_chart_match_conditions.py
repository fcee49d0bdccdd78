"""webhook.skipLabelledPods: the webhook's matchConditions let the API server skip the call
for a Pod the webhook would not change, and only for such a Pod.

cel-python evaluates the rendered expression against the shared case table and against
any label map; the webhook's own core (`app.admission.simulate`, with the label policy
the Deployment's flags give the server) says whether it would have changed the Pod. The
API server (the e2e tests) also type-checks the expression and skips the call.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from app.admission.review import Outcome
from app.admission.simulate import simulate
from app.config import LabelPolicy
from tests.unit.label_cases import CASES, CHART_VALUES, OURS, POD_LABELS, pod

celpy = pytest.importorskip("celpy", reason="cel-python is not installed (requirements-dev.txt)")
celtypes = pytest.importorskip("celpy.celtypes")

# What helm's Capabilities list on a cluster that serves matchConditions (1.30 and later).
MATCH_CONDITIONS_API = ("admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",)
CHART_CONDITION = "pod-lacks-a-release-label"


def webhook(manifests: Any) -> dict[str, Any]:
    (only,) = manifests.one("MutatingWebhookConfiguration")["webhooks"]
    found: dict[str, Any] = only
    return found


def server_policy(manifests: Any) -> LabelPolicy:
    """The label policy the server runs with, read back from the Deployment's flags."""
    (container,) = manifests.one("Deployment")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    labels = [a.removeprefix("--label=") for a in args if a.startswith("--label=")]
    return LabelPolicy.from_strings(labels, overwrite="--no-overwrite" not in args)


class Release:
    """One render of the chart: the webhook's match condition, and the server's decision."""

    def __init__(self, manifests: Any) -> None:
        (condition,) = webhook(manifests)["matchConditions"]
        assert condition["name"] == CHART_CONDITION
        environment = celpy.Environment()
        self.expression = condition["expression"]
        self.program = environment.program(environment.compile(self.expression))
        self.policy = server_policy(manifests)

    def calls_webhook(self, obj: dict[str, Any]) -> bool:
        result = self.program.evaluate({"object": celpy.json_to_cel(obj)})
        assert isinstance(result, celtypes.BoolType), f"{self.expression} gave {result!r}"
        return bool(result)

    def webhook_changes(self, obj: dict[str, Any]) -> bool:
        return simulate(obj, self.policy).result.outcome is Outcome.PATCHED


@pytest.fixture(scope="module")
def release(render) -> Any:
    cache: dict[bool, Release] = {}

    def _release(*, overwrite: bool) -> Release:
        if overwrite not in cache:
            values = {**CHART_VALUES, "overwrite": overwrite}
            cache[overwrite] = Release(render(values=values, api_versions=MATCH_CONDITIONS_API))
        return cache[overwrite]

    return _release


# --- where it is rendered -----------------------------------------------------------


def test_a_render_without_a_cluster_has_no_match_conditions(render):
    assert "matchConditions" not in webhook(render())


def test_a_cluster_serving_match_conditions_gets_the_chart_condition(render):
    conditions = webhook(render(api_versions=MATCH_CONDITIONS_API))["matchConditions"]

    assert [c["name"] for c in conditions] == [CHART_CONDITION]


def test_skip_labelled_pods_off_renders_no_condition(render):
    manifests = render("webhook.skipLabelledPods=false", api_versions=MATCH_CONDITIONS_API)

    assert "matchConditions" not in webhook(manifests)


def test_the_users_conditions_come_after_the_chart_condition(render):
    mine = [{"name": "not-a-job", "expression": "!has(object.metadata.ownerReferences)"}]
    manifests = render(
        values={"webhook": {"matchConditions": mine}}, api_versions=MATCH_CONDITIONS_API
    )

    assert webhook(manifests)["matchConditions"][1:] == mine


def test_the_users_conditions_alone_when_skip_labelled_pods_is_off(render):
    mine = [{"name": "not-a-job", "expression": "!has(object.metadata.ownerReferences)"}]
    values = {"webhook": {"matchConditions": mine, "skipLabelledPods": False}}

    assert (
        webhook(render(values=values, api_versions=MATCH_CONDITIONS_API))["matchConditions"] == mine
    )


def test_the_users_conditions_fail_the_install_where_the_cluster_cannot_honour_them(render_error):
    mine = [{"name": "not-a-job", "expression": "true"}]
    message = render_error(values={"webhook": {"matchConditions": mine}})

    assert "webhook.matchConditions: this cluster does not serve matchConditions" in message
    assert "--api-versions admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" in message


@pytest.mark.parametrize(
    "condition",
    [{"name": "x"}, {"expression": "true"}, {"name": "x", "expression": "true", "other": 1}],
    ids=["no expression", "no name", "unknown key"],
)
def test_a_malformed_user_condition_fails_naming_the_field(render_error, condition):
    message = render_error(values={"webhook": {"matchConditions": [condition]}})

    assert "at '/webhook/matchConditions/0'" in message


def test_policy_mode_renders_no_webhook_to_condition(render, policy_api):
    manifests = render("mode=policy", api_versions=policy_api + MATCH_CONDITIONS_API)

    assert manifests.of_kind("MutatingWebhookConfiguration") == []


def test_notes_say_whether_labelled_pods_skip_the_webhook(render_notes):
    assert "the API server does not call the webhook" in render_notes(
        api_versions=MATCH_CONDITIONS_API
    )
    assert "does not serve matchConditions" in render_notes()


# --- what it decides ----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no overwrite"])
def test_the_webhook_is_called_exactly_for_the_table_cases_it_changes(release, case, overwrite):
    before, with_overwrite, without_overwrite = case
    after = with_overwrite if overwrite else without_overwrite
    subject = release(overwrite=overwrite)

    assert subject.calls_webhook(pod(before)) == (after != (before or {}))
    assert subject.calls_webhook(pod(before)) == subject.webhook_changes(pod(before))


def test_a_pod_with_every_label_right_is_not_sent_to_the_webhook(release):
    for overwrite in (True, False):
        assert not release(overwrite=overwrite).calls_webhook(pod({"app": "shop", **OURS}))


def test_with_overwrite_a_pod_with_a_label_of_another_value_is_sent(release):
    labelled_otherwise = pod({**OURS, "environment": "staging"})

    assert release(overwrite=True).calls_webhook(labelled_otherwise)
    assert not release(overwrite=False).calls_webhook(labelled_otherwise)


@given(POD_LABELS)
def test_with_overwrite_the_webhook_is_called_exactly_when_it_would_change_the_pod(release, labels):
    subject = release(overwrite=True)
    assert subject.calls_webhook(pod(labels)) == subject.webhook_changes(pod(labels))


@given(POD_LABELS)
def test_without_overwrite_the_webhook_is_called_exactly_when_it_would_change_the_pod(
    release, labels
):
    subject = release(overwrite=False)
    assert subject.calls_webhook(pod(labels)) == subject.webhook_changes(pod(labels))


@pytest.mark.parametrize(
    "metadata",
    [
        {"name": "bare"},
        {"generateName": "x-", "labels": {}},
        {"name": "odd", "labels": {"environment": ""}},
        {"name": "meta", "annotations": {"environment": "production"}},
    ],
    ids=["no labels key", "empty labels", "our key with an empty value", "annotations only"],
)
def test_the_condition_gives_a_boolean_for_any_pod_so_it_never_refuses_one(release, metadata):
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {}}
    for overwrite in (True, False):
        assert release(overwrite=overwrite).calls_webhook(obj) is True


def test_label_values_given_as_numbers_compare_as_the_text_the_server_sets(render):
    manifests = render("label.value=1", api_versions=MATCH_CONDITIONS_API)
    subject = Release(manifests)

    assert not subject.calls_webhook(pod({"environment": "1"}))
    assert subject.calls_webhook(pod({"environment": "2"}))
