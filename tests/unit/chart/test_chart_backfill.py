"""The chart and `pod-labeler audit/backfill`: the release's objects say what it labels
(read back by app.backfill.release, in both modes), the rendered selectors select the
namespaces the webhook does, and the optional hook Job runs the same backfill with the
narrowest RBAC."""

from __future__ import annotations

from typing import Any

import pytest

from app.backfill.cli import _needs_release, _target
from app.backfill.release import ReleaseError, settings_from_objects
from app.backfill.selection import NAMESPACE_NAME_LABEL, Scope
from app.config import LabelPolicy
from app.main import build_parser
from tests.unit.chart.conftest import NAMESPACE, RELEASE
from tests.unit.label_cases import EXTRA_LABELS

MODES = ("webhook", "policy")
ADMISSION_KIND = {"webhook": "MutatingWebhookConfiguration", "policy": "MutatingAdmissionPolicy"}
HOOK = "post-install,post-upgrade"
DELETE_POLICY = "hook-succeeded,before-hook-creation"


def release_objects(manifests: Any) -> list[dict[str, Any]]:
    """The chart's admission objects as the API server would return them to a lister:
    helm adds its release annotations on install."""
    found = []
    for kind in ADMISSION_KIND.values():
        for obj in manifests.of_kind(kind):
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations["meta.helm.sh/release-namespace"] = NAMESPACE
            found.append(obj)
    return found


@pytest.fixture
def render_mode(render, policy_api):
    def _render(mode: str, *sets: str, **options: Any) -> Any:
        return render(f"mode={mode}", *sets, api_versions=policy_api, **options)

    return _render


@pytest.mark.parametrize("mode", MODES)
def test_the_release_says_its_labels_and_overwrite_rule_in_either_mode(render_mode, mode):
    values = {"extraLabels": EXTRA_LABELS, "overwrite": False}
    manifests = render_mode(mode, values=values)

    settings = settings_from_objects(release_objects(manifests), RELEASE, NAMESPACE)

    assert settings.mode == mode
    assert settings.policy == LabelPolicy(
        labels=(("environment", "production"), *sorted(EXTRA_LABELS.items())), overwrite=False
    )


def test_the_release_labels_match_the_servers_flags(render):
    manifests = render("extraLabels.tier=backend")
    (deployment,) = manifests.of_kind("Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = [arg.removeprefix("--label=") for arg in args if arg.startswith("--label=")]

    settings = settings_from_objects(release_objects(manifests), RELEASE, NAMESPACE)

    assert [f"{k}={v}" for k, v in settings.policy.labels] == flags


@pytest.mark.parametrize("mode", MODES)
def test_a_release_in_another_namespace_is_not_taken_for_this_one(render_mode, mode):
    objects = release_objects(render_mode(mode))

    with pytest.raises(ReleaseError, match="no release 'webhook' in namespace 'elsewhere'"):
        settings_from_objects(objects, RELEASE, "elsewhere")


# Namespaces, their labels, and whether the release labels their Pods, with
# webhook.excludedNamespaces=[legacy] and a user namespaceSelector requiring
# team in (payments, billing).
NAMESPACES = {
    "the release namespace": (NAMESPACE, {"team": "payments"}, False),
    "kube-system": ("kube-system", {"team": "payments"}, False),
    "an excluded namespace": ("legacy", {"team": "payments"}, False),
    "an opted-out namespace": ("shop", {"team": "payments", "pod-labeler/skip": "true"}, False),
    "opt-out label not true": ("shop", {"team": "payments", "pod-labeler/skip": "false"}, True),
    "selected by the user's selector": ("shop", {"team": "billing"}, True),
    "not selected by the user's selector": ("shop", {"team": "search"}, False),
    "no labels": ("shop", {}, False),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "labels", "selected"), NAMESPACES.values(), ids=NAMESPACES.keys())
def test_the_rendered_namespace_selector_selects_the_namespaces_the_webhook_does(
    render_mode, mode, name, labels, selected
):
    values = {
        "webhook": {
            "excludedNamespaces": ["legacy"],
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["payments", "billing"]}
                ]
            },
        }
    }
    settings = settings_from_objects(
        release_objects(render_mode(mode, values=values)), RELEASE, NAMESPACE
    )
    scope = Scope(release_namespace=NAMESPACE, namespace_selector=settings.namespace_selector)

    assert (
        scope.namespace_reason(name, {**labels, NAMESPACE_NAME_LABEL: name}) is None
    ) is selected


@pytest.mark.parametrize("mode", MODES)
def test_the_rendered_object_selector_is_read_back(render_mode, mode):
    manifests = render_mode(mode, "webhook.objectSelector.matchLabels.labelled-by=pod-labeler")
    settings = settings_from_objects(release_objects(manifests), RELEASE, NAMESPACE)
    scope = Scope(release_namespace=NAMESPACE, object_selector=settings.object_selector)

    assert scope.selects_pod({"labelled-by": "pod-labeler"})
    assert not scope.selects_pod({"app": "shop"})


# --- the hook Job ----------------------------------------------------------------------

HOOK_KINDS = ("Job", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
BACKFILL = f"{RELEASE}-pod-labeler-backfill"


def test_no_backfill_job_by_default(render):
    assert render().of_kind("Job") == []
    assert render().of_kind("ClusterRole") == []


@pytest.mark.parametrize("kind", HOOK_KINDS)
def test_each_backfill_object_is_a_post_install_and_upgrade_hook_deleted_on_success(render, kind):
    obj = render("backfill.onInstall=true").get(kind, BACKFILL)
    annotations = obj["metadata"]["annotations"]

    assert annotations["helm.sh/hook"] == HOOK
    assert annotations["helm.sh/hook-delete-policy"] == DELETE_POLICY


def test_the_rbac_exists_before_the_job_runs(render):
    manifests = render("backfill.onInstall=true")
    weight = {
        kind: int(manifests.get(kind, BACKFILL)["metadata"]["annotations"]["helm.sh/hook-weight"])
        for kind in HOOK_KINDS
    }

    assert max(weight[kind] for kind in HOOK_KINDS if kind != "Job") < weight["Job"]


def test_the_job_may_list_namespaces_and_list_get_and_patch_pods_and_nothing_else(render):
    manifests = render("backfill.onInstall=true")
    rules = manifests.get("ClusterRole", BACKFILL)["rules"]
    binding = manifests.get("ClusterRoleBinding", BACKFILL)

    assert rules == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "patch"]},
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": BACKFILL, "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["name"] == BACKFILL


def test_the_job_runs_as_the_images_non_root_user_with_a_deadline(render):
    job = render("backfill.onInstall=true", "backfill.activeDeadlineSeconds=120").get(
        "Job", BACKFILL
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert pod["serviceAccountName"] == BACKFILL
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_job_pods_are_not_selected_as_webhook_pods(render):
    manifests = render("backfill.onInstall=true")
    job = manifests.get("Job", BACKFILL)
    selector = manifests.one("Deployment")["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]

    assert any(labels.get(key) != value for key, value in selector.items())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("overwrite", [True, False])
def test_the_job_backfills_exactly_what_the_release_labels_without_reading_it(
    render_mode, mode, overwrite
):
    values = {
        "extraLabels": EXTRA_LABELS,
        "overwrite": overwrite,
        "backfill": {"onInstall": True, "qps": 7},
        "webhook": {
            "excludedNamespaces": ["legacy"],
            "objectSelector": {"matchExpressions": [{"key": "batch", "operator": "DoesNotExist"}]},
        },
    }
    manifests = render_mode(mode, values=values)
    (container,) = manifests.get("Job", BACKFILL)["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "app.main", "backfill"]
    args = build_parser().parse_args(["backfill", *container["args"]])
    released = settings_from_objects(release_objects(manifests), RELEASE, NAMESPACE)

    assert not _needs_release(args)
    target = _target(args, api=None)
    assert args.apply
    assert args.qps == 7
    assert target.policy == released.policy
    assert target.scope == Scope(
        release_namespace=NAMESPACE,
        namespace_selector=released.namespace_selector,
        object_selector=released.object_selector,
    )


def test_the_backfill_values_are_in_the_schema(render_error):
    assert "backfill" in render_error("backfill.everyNight=true")
    assert "qps" in render_error("backfill.qps=0")
