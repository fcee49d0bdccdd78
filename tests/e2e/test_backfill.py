"""Pods that were running before the release: `pod-labeler audit` finds them and
`pod-labeler backfill --apply` labels them, in both modes. Exercises: the release's
admission object read through the API, the namespaceSelector evaluated on real
namespaces, merge patches with a resourceVersion precondition against kube-apiserver
(404 for a Pod deleted meanwhile, 409 for one changed meanwhile), and the
ReplicaSet → Deployment owner chain built by kube-controller-manager.

The Pods are created in a namespace that has opted out (so nothing labels them), which
then opts in: the state a cluster is in when the chart is first installed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.backfill.kube import Kube, Pod
from app.backfill.release import settings_from_objects
from app.backfill.run import Summary, Target, backfill
from app.backfill.selection import Scope
from tests.e2e.cluster import ROOT, Cluster, wait_for
from tests.e2e.release import Release, restore, upgrade, wait_until_labelled

MODES = ("webhook", "policy")
DEPLOYMENT = "shop"
REPLICAS = 2


@dataclass(frozen=True)
class Run:
    status: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def pod_labeler(cluster: Cluster, release: Release, *args: str) -> Run:
    """The product's own command line, as a user runs it, against the test cluster."""
    which = ("--kubeconfig", cluster.kubeconfig, "--release", release.name, "-n", release.namespace)
    result = subprocess.run(
        [sys.executable, "-m", "app.main", *args, *which],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr)


def labels_of(cluster: Cluster, namespace: str) -> dict[str, dict[str, str]]:
    pods = cluster.get("pods", "-n", namespace)["items"]
    return {p["metadata"]["name"]: p["metadata"].get("labels") or {} for p in pods}


def expected_after(release: Release, before: dict[str, str]) -> dict[str, str]:
    ours = release.original_labels
    if release.computed_values.get("overwrite", True):
        return {**before, **ours}
    return {**ours, **before}


def deployment_manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": {"app": DEPLOYMENT}},
                "template": {
                    "metadata": {"labels": {"app": DEPLOYMENT}},
                    "spec": {
                        "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
                        "terminationGracePeriodSeconds": 0,
                    },
                },
            },
        }
    )


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest, cluster: Cluster, release: Release) -> Iterator[str]:
    """The release switched to each mode in turn, and put back afterwards."""
    chosen: str = request.param
    try:
        upgrade(cluster, release, f"mode={chosen}")
        with cluster.fresh_namespace("e2e-backfill-probe") as probe:
            wait_until_labelled(cluster, probe, release.original_labels)
        yield chosen
    finally:
        restore(cluster, release)


def opted_out_namespace_with_pods(
    cluster: Cluster, release: Release, namespace: str
) -> dict[str, dict[str, str]]:
    """Opt `namespace` out, create bare Pods and a Deployment's Pods in it; their labels."""
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}=true")
    cluster.create_pod(namespace, name="bare")
    cluster.create_pod(namespace, labels={"app": "web"}, name="other-labels")
    cluster.create_pod(
        namespace, labels={release.label_key: release.other_value}, name="other-value"
    )
    cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=deployment_manifest())
    wait_for(
        lambda: len(labels_of(cluster, namespace)) == 3 + REPLICAS,
        120,
        f"the {DEPLOYMENT} Deployment's {REPLICAS} Pods in {namespace}",
    )
    return labels_of(cluster, namespace)


@dataclass
class Story:
    """What each step showed, in one namespace opted out and then in, and one that stays out."""

    before: dict[str, dict[str, str]]
    audit_opted_out: Run
    audit_opted_in: Run
    first_backfill: Run
    after: dict[str, dict[str, str]]
    audit_after: Run
    second_backfill: Run
    dry_run: Run
    still_opted_out_before: dict[str, dict[str, str]]
    still_opted_out_after: dict[str, dict[str, str]]
    release_namespace_before: dict[str, dict[str, str]]
    release_namespace_after: dict[str, dict[str, str]]
    # How many of `before` lack the labels.
    to_patch: int


@pytest.fixture(scope="module")
def story(cluster: Cluster, release: Release, mode: str) -> Iterator[Story]:
    with (
        cluster.fresh_namespace("e2e-backfill") as namespace,
        cluster.fresh_namespace("e2e-backfill-out") as opted_out,
    ):
        before = opted_out_namespace_with_pods(cluster, release, namespace)
        still_out_before = opted_out_namespace_with_pods(cluster, release, opted_out)
        release_before = labels_of(cluster, release.namespace)
        scope = ("--in", namespace, "--in", opted_out, "--in", release.namespace)
        audit_opted_out = pod_labeler(cluster, release, "audit", *scope, "-o", "json")
        cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}-")
        audit_opted_in = pod_labeler(cluster, release, "audit", *scope, "-o", "json")
        dry_run = pod_labeler(cluster, release, "backfill", *scope)
        first = pod_labeler(cluster, release, "backfill", "--apply", *scope)
        after = labels_of(cluster, namespace)
        audit_after = pod_labeler(cluster, release, "audit", *scope)
        second = pod_labeler(cluster, release, "backfill", "--apply", *scope)
        yield Story(
            before=before,
            audit_opted_out=audit_opted_out,
            audit_opted_in=audit_opted_in,
            first_backfill=first,
            after=after,
            audit_after=audit_after,
            second_backfill=second,
            dry_run=dry_run,
            still_opted_out_before=still_out_before,
            still_opted_out_after=labels_of(cluster, opted_out),
            release_namespace_before=release_before,
            release_namespace_after=labels_of(cluster, release.namespace),
            to_patch=sum(expected_after(release, v) != v for v in before.values()),
        )


def test_pods_in_an_opted_out_namespace_are_not_reported(story: Story) -> None:
    assert story.audit_opted_out.status == 0, story.audit_opted_out.stderr
    assert story.audit_opted_out.json()["lacking"] == 0


def test_once_opted_in_audit_reports_each_pod_that_lacks_the_labels_and_exits_1(
    story: Story, release: Release
) -> None:
    assert story.audit_opted_in.status == 1, story.audit_opted_in.stderr
    report = story.audit_opted_in.json()
    lacking = {
        pod["name"]
        for namespace in report["namespaces"]
        for owner in namespace["owners"]
        for pod in owner["podsLacking"]
    }
    assert lacking == {
        name for name, labels in story.before.items() if expected_after(release, labels) != labels
    }


def test_audit_groups_a_deployments_pods_under_it_with_its_template(story: Story) -> None:
    (namespace,) = story.audit_opted_in.json()["namespaces"]
    owners = {(o["kind"], o["name"]): o for o in namespace["owners"]}

    deployment = owners[("Deployment", DEPLOYMENT)]
    assert (deployment["pods"], deployment["lacking"]) == (REPLICAS, REPLICAS)
    assert deployment["templateCarriesLabels"] is False
    assert owners[("Pod", "bare")]["templateCarriesLabels"] is None


def test_a_dry_run_says_what_it_would_patch_and_patches_nothing(story: Story) -> None:
    assert story.dry_run.status == 0, story.dry_run.stderr
    assert "would patch" in story.dry_run.stdout
    assert "dry run" in story.dry_run.stdout
    # The first --apply, after the dry run, still found every Pod to patch.
    assert f"patched {story.to_patch}," in story.first_backfill.stdout


def test_backfill_gives_every_pod_the_labels_the_webhook_would_have(
    story: Story, release: Release
) -> None:
    assert story.first_backfill.status == 0, story.first_backfill.stderr
    assert story.after == {
        name: expected_after(release, labels) for name, labels in story.before.items()
    }


def test_backfill_points_at_the_deployment_whose_template_lacks_the_labels(
    story: Story,
) -> None:
    assert f"Pod template lacks the labels: Deployment/{DEPLOYMENT}" in story.first_backfill.stdout


def test_after_a_backfill_audit_exits_0(story: Story) -> None:
    assert story.audit_after.status == 0, story.audit_after.stdout + story.audit_after.stderr


def test_a_second_backfill_patches_nothing(story: Story) -> None:
    assert story.second_backfill.status == 0, story.second_backfill.stderr
    assert "patched 0," in story.second_backfill.stdout
    assert f"already right {len(story.before)}," in story.second_backfill.stdout


def test_an_opted_out_namespace_and_the_release_namespace_are_untouched(story: Story) -> None:
    assert story.still_opted_out_after == story.still_opted_out_before
    # Webhook Pods of the previous mode may still be going away: compare those that stayed.
    stayed = story.release_namespace_after.keys() & story.release_namespace_before.keys()
    for name in stayed:
        assert story.release_namespace_after[name] == story.release_namespace_before[name]


# --- Pods that change under the backfill ------------------------------------------------


def run_in_process(
    cluster: Cluster, release: Release, namespace: str, before_patch: Any
) -> Summary:
    """backfill() itself, with a hook between listing a Pod and patching it."""
    with Kube.connect(cluster.kubeconfig) as kube:
        settings = settings_from_objects(
            kube.admission_objects(release.name), release.name, release.namespace
        )
        scope = Scope(
            release_namespace=release.namespace,
            namespace_selector=settings.namespace_selector,
            object_selector=settings.object_selector,
            only=(namespace,),
        )
        target = Target(policy=settings.policy, scope=scope, source=settings.source)
        return backfill(kube, target, apply=True, before_patch=before_patch)


@pytest.fixture
def unlabelled_pods(cluster: Cluster, release: Release, namespace: str, mode: str) -> str:
    """Three unlabelled Pods in `namespace`, running, which then opts back in."""
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}=true")
    for name in ("first", "second", "third"):
        cluster.create_pod(namespace, name=name)
    cluster.kubectl("label", "namespace", namespace, f"{release.opt_out_label}-")
    # Where a kubelet runs them, it updates their status until they are Ready: each
    # update is a change between listing and patching too.
    cluster.ready_pods(namespace, 3)
    return namespace


def test_a_pod_deleted_between_listing_and_patching_is_skipped_not_failed(
    cluster: Cluster, release: Release, unlabelled_pods: str
) -> None:
    namespace = unlabelled_pods

    def delete_second(pod: Pod) -> None:
        if pod.name == "second":
            cluster.kubectl(
                "delete", "pod", "second", "-n", namespace, "--grace-period=0", "--force"
            )

    summary = run_in_process(cluster, release, namespace, delete_second)

    assert (summary.patched, summary.skipped, summary.failed) == (2, 1, 0)
    assert set(labels_of(cluster, namespace)) == {"first", "third"}


def test_a_pod_relabelled_between_listing_and_patching_is_read_again_and_keeps_that_label(
    cluster: Cluster, release: Release, unlabelled_pods: str
) -> None:
    namespace = unlabelled_pods

    def relabel_second(pod: Pod) -> None:
        if pod.name == "second":
            cluster.kubectl("label", "pod", "second", "-n", namespace, "meanwhile=yes")

    summary = run_in_process(cluster, release, namespace, relabel_second)

    assert (summary.patched, summary.failed) == (3, 0)
    # At least the relabelling's conflict; a kubelet may write a Pod's status at any
    # time too, and each write is one more conflict, read again and retried.
    assert summary.conflicts >= 1
    assert labels_of(cluster, namespace)["second"] == {
        "meanwhile": "yes",
        **release.original_labels,
    }
