"""audit and backfill against an in-memory API that keeps resourceVersions and answers
404 and 409 the way the API server does (the e2e tests run the real one)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from app.admission.policy import LabelPolicy
from app.backfill.kube import Namespace, Owner, Pod, Workload
from app.backfill.run import Target, audit, backfill, print_audit
from app.backfill.selection import Scope

POLICY = LabelPolicy(labels=(("environment", "production"),), overwrite=True)
OPT_OUT = {
    "matchExpressions": [{"key": "pod-labeler/skip", "operator": "NotIn", "values": ["true"]}]
}


def api_error(code: int) -> ApiError:
    return ApiError(status=Status(code=code, message=f"status {code}"))


@dataclass
class MemoryApi:
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    stored: dict[tuple[str, str], Pod] = field(default_factory=dict)
    workloads: dict[tuple[str, Owner], Workload] = field(default_factory=dict)
    requests: int = 0
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    version: int = 100

    def add(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str] | None = None,
        controller: Owner | None = None,
    ) -> None:
        self.namespace_labels.setdefault(namespace, {})
        self.version += 1
        self.stored[(namespace, name)] = Pod(
            namespace, name, str(self.version), labels or {}, controller
        )

    def relabel(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        self.version += 1
        pod = self.stored[(namespace, name)]
        self.stored[(namespace, name)] = replace(
            pod, labels=labels, resource_version=str(self.version)
        )

    def labels(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.stored[(namespace, name)].labels)

    def namespaces(self) -> list[Namespace]:
        self.requests += 1
        return [Namespace(name, labels) for name, labels in self.namespace_labels.items()]

    def pods(self, namespace: str | None = None) -> Iterator[Pod]:
        self.requests += 1
        return iter([p for p in self.stored.values() if namespace in (None, p.namespace)])

    def pod(self, namespace: str, name: str) -> Pod:
        self.requests += 1
        if (namespace, name) not in self.stored:
            raise api_error(404)
        return self.stored[(namespace, name)]

    def workload(self, namespace: str, owner: Owner) -> Workload | None:
        self.requests += 1
        return self.workloads.get((namespace, owner))

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.requests += 1
        self.patches.append((namespace, name, patch))
        current = self.pod(namespace, name)
        if patch["metadata"]["resourceVersion"] != current.resource_version:
            raise api_error(409)
        self.relabel(namespace, name, {**current.labels, **patch["metadata"]["labels"]})


def target(only: tuple[str, ...] = (), policy: LabelPolicy = POLICY) -> Target:
    scope = Scope(release_namespace="pod-labeler", namespace_selector=OPT_OUT, only=only)
    return Target(policy=policy, scope=scope, source="test")


def run(api: MemoryApi, *, apply: bool = True, before_patch: Callable[[Pod], None] | None = None):
    out = io.StringIO()
    summary = backfill(
        api, target(), apply=apply, out=out, err=io.StringIO(), before_patch=before_patch
    )
    return summary, out.getvalue()


@pytest.fixture
def api() -> MemoryApi:
    api = MemoryApi()
    api.add("team-a", "bare")
    api.add("team-a", "right", {"environment": "production"})
    api.add("team-a", "wrong", {"environment": "staging", "app": "shop"})
    return api


def test_backfill_patches_each_pod_that_lacks_the_labels_and_counts_the_rest(api):
    summary, _ = run(api)

    assert (summary.patched, summary.already_right, summary.skipped, summary.failed) == (2, 1, 0, 0)
    assert api.labels("team-a", "bare") == {"environment": "production"}
    assert api.labels("team-a", "wrong") == {"environment": "production", "app": "shop"}


def test_a_second_backfill_patches_nothing(api):
    run(api)
    api.patches.clear()

    summary, _ = run(api)

    assert api.patches == []
    assert (summary.patched, summary.already_right) == (0, 3)


def test_a_dry_run_prints_the_changes_and_patches_nothing(api):
    summary, out = run(api, apply=False)

    assert api.patches == []
    assert summary.patched == 2
    assert "would patch team-a/wrong: environment=staging -> production" in out
    assert "would patch team-a/bare: +environment=production" in out


def test_a_pod_deleted_before_its_patch_is_skipped_not_failed(api):
    def delete(pod: Pod) -> None:
        if pod.name == "bare":
            del api.stored[("team-a", "bare")]

    summary, out = run(api, before_patch=delete)

    assert (summary.patched, summary.skipped, summary.failed) == (1, 1, 0)
    assert "skipped team-a/bare: gone" in out


def test_a_pod_changed_before_its_patch_is_read_again_and_patched_from_its_new_labels(api):
    def change(pod: Pod) -> None:
        if pod.name == "bare":
            api.relabel("team-a", "bare", {"app": "added-meanwhile"})

    summary, _ = run(api, before_patch=change)

    assert (summary.patched, summary.conflicts, summary.failed) == (2, 1, 0)
    assert api.labels("team-a", "bare") == {"app": "added-meanwhile", "environment": "production"}


def test_a_pod_labelled_right_meanwhile_counts_as_already_right(api):
    def fix(pod: Pod) -> None:
        if pod.name == "bare":
            api.relabel("team-a", "bare", {"environment": "production"})

    summary, _ = run(api, before_patch=fix)

    assert (summary.patched, summary.already_right, summary.conflicts) == (1, 2, 1)


def test_excluded_and_opted_out_namespaces_are_not_touched(api):
    for namespace in ("pod-labeler", "kube-system", "legacy"):
        api.add(namespace, "unlabelled")
    api.namespace_labels["legacy"] = {"pod-labeler/skip": "true"}

    run(api)

    for namespace in ("pod-labeler", "kube-system", "legacy"):
        assert api.labels(namespace, "unlabelled") == {}
        assert all(patch[0] != namespace for patch in api.patches)


def test_a_terminating_pod_is_left_alone(api):
    api.stored[("team-a", "bare")] = replace(api.stored[("team-a", "bare")], terminating=True)

    summary, _ = run(api)

    assert api.labels("team-a", "bare") == {}
    assert summary.patched == 1


def test_an_error_other_than_gone_or_conflict_is_a_failure(api):
    def forbid(namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise api_error(403)

    api.patch_pod = forbid  # type: ignore[method-assign]

    summary, out = run(api)

    assert summary.failed == 2
    assert "failed team-a/bare: 403" in out


def test_audit_groups_pods_by_top_owner_and_reads_its_template():
    api = MemoryApi()
    replica_set, deployment = Owner("ReplicaSet", "shop-7d9"), Owner("Deployment", "shop")
    api.workloads[("team-a", replica_set)] = Workload(controller=deployment, template_labels={})
    api.workloads[("team-a", deployment)] = Workload(
        controller=None, template_labels={"app": "shop"}
    )
    for index in range(3):
        api.add("team-a", f"shop-7d9-{index}", {"app": "shop"}, controller=replica_set)
    api.relabel("team-a", "shop-7d9-2", {"app": "shop", "environment": "production"})
    api.add("team-b", "debug")

    report = audit(api, target())

    assert [
        (g.namespace, g.owner, g.pods, len(g.lacking), g.template_carries_labels)
        for g in report.groups
    ] == [
        ("team-a", deployment, 3, 2, False),
        ("team-b", Owner("Pod", "debug"), 1, 1, None),
    ]
    assert (report.checked, report.lacking) == (4, 3)


def test_each_owner_is_read_once_however_many_pods_it_has():
    api = MemoryApi()
    job = Owner("Job", "nightly")
    api.workloads[("team-a", job)] = Workload(
        controller=None, template_labels={"environment": "production"}
    )
    for index in range(50):
        api.add("team-a", f"nightly-{index}", controller=job)

    report = audit(api, target())

    assert report.groups[0].template_carries_labels is True
    assert api.requests == 3  # namespaces, pods, the Job


def test_audit_json_groups_by_namespace_and_names_each_pod_with_its_changes(api):
    document = audit(api, target()).to_json()

    assert document["lacking"] == 2
    assert document["compliant"] == 1
    (namespace,) = document["namespaces"]
    assert namespace["name"] == "team-a"
    pods = {p["name"]: p["changes"] for o in namespace["owners"] for p in o["podsLacking"]}
    assert pods == {"bare": {"environment": "production"}, "wrong": {"environment": "production"}}


def test_audit_text_has_one_row_per_owner_and_a_total(api):
    out = io.StringIO()
    print_audit(audit(api, target()), out)

    text = out.getvalue()
    assert "team-a     Pod/bare" in text
    assert "2 of 3 Pods lack the labels, in 1 namespace." in text


def test_backfill_names_each_owner_whose_pod_template_lacks_the_labels(api):
    replica_set, deployment = Owner("ReplicaSet", "shop-7d9"), Owner("Deployment", "shop")
    api.workloads[("team-a", replica_set)] = Workload(controller=deployment, template_labels={})
    api.workloads[("team-a", deployment)] = Workload(controller=None, template_labels={})
    api.add("team-a", "shop-7d9-1", controller=replica_set)
    api.add("team-a", "shop-7d9-2", controller=replica_set)

    _, out = run(api, apply=False)

    assert "Pod template lacks the labels: Deployment/shop in team-a (2 Pods)" in out


def test_an_owner_that_cannot_be_read_is_left_out_of_the_template_report(api):
    api.add("team-a", "worker-1", controller=Owner("ReplicaSet", "unreadable"))

    _, out = run(api)

    assert "Pod template" not in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_progress_bar_goes_to_stderr_and_each_pod_line_to_stdout(api):
    out, err = io.StringIO(), Terminal()

    backfill(api, target(), apply=True, out=out, err=err)

    assert "patched team-a/bare" in out.getvalue()
    assert "3/3" in err.getvalue()
    assert "patched" not in err.getvalue()


def test_off_a_terminal_there_is_no_bar_only_lines(api):
    out, err = io.StringIO(), io.StringIO()

    backfill(api, target(), apply=True, out=out, err=err)

    assert err.getvalue() == ""
    assert out.getvalue().count("\n") == 2
