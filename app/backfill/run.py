"""The two verbs' work, given a connection and what to check: list, decide, patch, report.

`audit` and `backfill` select Pods the same way (`select_pods`) and decide the same way
(`plan_pod`, which is `app.admission.review`); only what they do with a Pod that lacks
its labels differs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from app.admission.policy import LabelPolicy
from app.backfill.kube import Owner, Pod
from app.backfill.plan import PodPlan, plan_pod
from app.backfill.selection import Scope

# A conflicting patch is re-read, re-decided and retried this many times in all.
MAX_ATTEMPTS = 5


class Api(Protocol):
    """What `run` needs from the cluster: `app.backfill.kube.Kube`, or a test's stand-in."""

    requests: int

    def namespaces(self) -> Any: ...
    def pods(self, namespace: str | None = None) -> Iterator[Pod]: ...
    def pod(self, namespace: str, name: str) -> Pod: ...
    def workload(self, namespace: str, owner: Owner) -> Any: ...
    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Target:
    """What to check: the labels and overwrite rule, the scope, and where they came from."""

    policy: LabelPolicy
    scope: Scope
    source: str


def select_pods(api: Api, scope: Scope) -> list[Pod]:
    """Pods in the namespaces the scope selects, matching its object selector, not
    already being deleted. One request for namespaces, one per page of Pods."""
    namespaces = [
        ns.name for ns in api.namespaces() if scope.namespace_reason(ns.name, ns.labels) is None
    ]
    if scope.only:
        listed = (pod for name in namespaces for pod in api.pods(name))
    else:
        wanted = set(namespaces)
        listed = (pod for pod in api.pods() if pod.namespace in wanted)
    return [pod for pod in listed if not pod.terminating and scope.selects_pod(pod.labels)]


def plan(pod: Pod, policy: LabelPolicy) -> PodPlan:
    return plan_pod({"metadata": pod.metadata}, policy)


# --- audit ---------------------------------------------------------------------------


@dataclass
class OwnerGroup:
    namespace: str
    owner: Owner  # kind "Pod" for a bare Pod
    pods: int = 0
    lacking: list[PodPlan] = field(default_factory=list)
    # Whether the owner's Pod template would need no change; None: no template (a bare
    # Pod, or an owner kind or object this tool cannot read).
    template_carries_labels: bool | None = None


@dataclass
class Audit:
    target: Target
    checked: int
    groups: list[OwnerGroup]

    @property
    def lacking(self) -> int:
        return sum(len(group.lacking) for group in self.groups)

    def to_json(self) -> dict[str, Any]:
        namespaces: dict[str, list[dict[str, Any]]] = {}
        for group in self.groups:
            namespaces.setdefault(group.namespace, []).append(
                {
                    "kind": group.owner.kind,
                    "name": group.owner.name,
                    "pods": group.pods,
                    "lacking": len(group.lacking),
                    "templateCarriesLabels": group.template_carries_labels,
                    "podsLacking": [
                        {"name": item.pod.name, "changes": item.label_updates}
                        for item in group.lacking
                    ],
                }
            )
        return {
            "source": self.target.source,
            "labels": self.target.policy.as_dict(),
            "overwrite": self.target.policy.overwrite,
            "checked": self.checked,
            "compliant": self.checked - self.lacking,
            "lacking": self.lacking,
            "namespaces": [
                {"name": name, "lacking": sum(o["lacking"] for o in owners), "owners": owners}
                for name, owners in namespaces.items()
            ],
        }


class OwnerResolver:
    """The top owner of a Pod (ReplicaSet → Deployment, Job → CronJob) and whether its
    Pod template carries the labels; each owner object is read once."""

    def __init__(self, api: Api, policy: LabelPolicy) -> None:
        self.api, self.policy = api, policy
        self._cache: dict[tuple[str, Owner], tuple[Owner, bool | None]] = {}

    def resolve(self, pod: Pod) -> tuple[Owner, bool | None]:
        if pod.controller is None:
            return Owner("Pod", pod.name), None
        key = (pod.namespace, pod.controller)
        if key not in self._cache:
            self._cache[key] = self._resolve(pod.namespace, pod.controller)
        return self._cache[key]

    def _resolve(self, namespace: str, owner: Owner) -> tuple[Owner, bool | None]:
        workload = self.api.workload(namespace, owner)
        if workload is None:
            return owner, None
        parent = workload.controller
        if (owner.kind, getattr(parent, "kind", None)) in (
            ("ReplicaSet", "Deployment"),
            ("Job", "CronJob"),
        ):
            top = self.api.workload(namespace, parent)
            if top is not None:
                workload, owner = top, parent
        return owner, self._template_complies(workload.template_labels)

    def _template_complies(self, labels: Any) -> bool | None:
        if labels is None:
            return None
        return plan_pod({"metadata": {"labels": dict(labels)}}, self.policy).complies


def audit(api: Api, target: Target) -> Audit:
    """Every selected Pod decided, grouped by its top owner; the groups with a Pod that
    lacks the labels are kept. Each distinct owner costs one or two reads."""
    pods = select_pods(api, target.scope)
    resolver = OwnerResolver(api, target.policy)
    groups: dict[tuple[str, Owner], OwnerGroup] = {}
    for pod in pods:
        owner, template = resolver.resolve(pod)
        group = groups.setdefault(
            (pod.namespace, owner),
            OwnerGroup(pod.namespace, owner, template_carries_labels=template),
        )
        group.pods += 1
        item = plan(pod, target.policy)
        if not item.complies:
            group.lacking.append(item)
    lacking = [group for group in groups.values() if group.lacking]
    ordered = sorted(lacking, key=lambda g: (g.namespace, g.owner.kind, g.owner.name))
    return Audit(target=target, checked=len(pods), groups=ordered)


def print_audit(report: Audit, out: TextIO) -> None:
    policy = report.target.policy
    labels = ", ".join(f"{k}={v}" for k, v in policy.labels)
    out.write(f"Checking for {labels} (overwrite: {str(policy.overwrite).lower()}), ")
    out.write(f"from {report.target.source}\n")
    if report.groups:
        rows = [("NAMESPACE", "OWNER", "PODS", "LACKING", "POD TEMPLATE")]
        for group in report.groups:
            template = {True: "has the labels", False: "lacks the labels", None: "-"}[
                group.template_carries_labels
            ]
            rows.append(
                (
                    group.namespace,
                    f"{group.owner.kind}/{group.owner.name}",
                    str(group.pods),
                    str(len(group.lacking)),
                    template,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        out.write("\n")
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
        out.write("\n")
    namespaces = len({group.namespace for group in report.groups})
    if report.lacking:
        out.write(
            f"{report.lacking} of {report.checked} Pods lack the labels, in {namespaces} "
            f"namespace{'' if namespaces == 1 else 's'}. `pod-labeler backfill --apply` "
            "labels them; a template that lacks "
            "the labels is where to fix the source.\n"
        )
    else:
        out.write(f"All {report.checked} Pods carry the labels.\n")


# --- backfill ------------------------------------------------------------------------


@dataclass
class Summary:
    patched: int = 0
    already_right: int = 0
    skipped: int = 0
    failed: int = 0
    conflicts: int = 0
    applied: bool = False

    def line(self) -> str:
        verb = "patched" if self.applied else "would patch"
        return (
            f"{verb} {self.patched}, already right {self.already_right}, "
            f"skipped {self.skipped}, failed {self.failed}"
            + (f" ({self.conflicts} conflicts retried)" if self.conflicts else "")
        )


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def write(self, line: str) -> None: ...
    def close(self) -> None: ...


class PlainProgress:
    """No bar: every line as it comes (for a log, a pipe or a Job)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def update(self, n: int = 1) -> None:
        pass

    def write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


def progress_for(total: int, out: TextIO, err: TextIO) -> Progress:
    """A tqdm bar on stderr when it is a terminal; plain lines otherwise."""
    if not err.isatty():
        return PlainProgress(out)
    from tqdm import tqdm

    bar = tqdm(total=total, unit="pod", file=err, dynamic_ncols=True)

    class Bar:
        def update(self, n: int = 1) -> None:
            bar.update(n)

        def write(self, line: str) -> None:
            bar.write(line, file=out)

        def close(self) -> None:
            bar.close()

    return Bar()


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    code = getattr(status, "code", None)
    return code if isinstance(code, int) else None


def backfill(
    api: Api,
    target: Target,
    *,
    apply: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    before_patch: Callable[[Pod], None] | None = None,
) -> Summary:
    """Label every selected Pod that lacks its labels (print what would change unless
    `apply`). `before_patch` runs between listing a Pod and patching it: a test uses it
    to change or delete the Pod at exactly that point."""
    from lightkube import ApiError

    summary = Summary(applied=apply)
    pods = select_pods(api, target.scope)
    progress = progress_for(len(pods), out, err)
    changed: list[Pod] = []
    try:
        for pod in pods:
            item = plan(pod, target.policy)
            if item.complies:
                summary.already_right += 1
            elif not apply:
                changed.append(pod)
                summary.patched += 1
                progress.write(f"would patch {item.pod}: {item.describe()}")
            else:
                changed.append(pod)
                if before_patch is not None:
                    before_patch(pod)
                progress.write(_patch(api, target, item, summary, ApiError))
            progress.update()
    finally:
        progress.close()
    for line in templates_lacking_labels(api, target.policy, changed):
        out.write(line + "\n")
    return summary


def templates_lacking_labels(api: Api, policy: LabelPolicy, pods: list[Pod]) -> list[str]:
    """A line per owner of `pods` whose Pod template lacks the labels: its new Pods are
    labelled at admission, but the template is where to fix the source. An owner this
    run may not read (the hook Job's RBAC reads no workloads) is left out."""
    resolver = OwnerResolver(api, policy)
    counts: dict[tuple[str, Owner], int] = {}
    for pod in pods:
        owner, template = resolver.resolve(pod)
        if template is False:
            counts[(pod.namespace, owner)] = counts.get((pod.namespace, owner), 0) + 1
    return [
        f"Pod template lacks the labels: {kind_name(owner)} in {namespace} ({n} Pods)"
        for (namespace, owner), n in sorted(counts.items(), key=lambda i: (i[0][0], str(i[0][1])))
    ]


def kind_name(owner: Owner) -> str:
    return f"{owner.kind}/{owner.name}"


def _patch(
    api: Api, target: Target, item: PodPlan, summary: Summary, api_error: type[Exception]
) -> str:
    """Patch one Pod, retrying a conflict with a fresh read; returns a line saying
    what happened."""
    for _ in range(MAX_ATTEMPTS):
        try:
            api.patch_pod(item.pod.namespace, item.pod.name, item.merge_patch())
            summary.patched += 1
            return f"patched {item.pod}: {item.describe()}"
        except api_error as error:
            code = _status(error)
            if code == 404:
                summary.skipped += 1
                return f"skipped {item.pod}: gone"
            if code != 409:
                summary.failed += 1
                return f"failed {item.pod}: {code} {error}"
        summary.conflicts += 1
        try:
            pod = api.pod(item.pod.namespace, item.pod.name)
        except api_error as error:
            if _status(error) == 404:
                summary.skipped += 1
                return f"skipped {item.pod}: gone"
            summary.failed += 1
            return f"failed {item.pod}: re-reading it after a conflict: {error}"
        if pod.terminating or not target.scope.selects_pod(pod.labels):
            summary.skipped += 1
            return f"skipped {item.pod}: no longer selected"
        item = plan(pod, target.policy)
        if item.complies:
            summary.already_right += 1
            return f"already right {item.pod}"
    summary.failed += 1
    return f"failed {item.pod}: {MAX_ATTEMPTS} conflicts in a row"
