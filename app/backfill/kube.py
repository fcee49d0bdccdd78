"""The Kubernetes API as the audit and backfill use it, through lightkube.

One thin class: it picks the configuration (a kubeconfig and context, or the
in-cluster service account), spaces requests out to `qps`, counts them (the bench
reports API requests per Pod), and hands back plain data (`Pod`, `Namespace`), so
the rest of the package never sees a client object.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG
from lightkube.core.exceptions import ConfigError
from lightkube.resources.admissionregistration_v1 import (
    MutatingAdmissionPolicy,
    MutatingWebhookConfiguration,
)
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Namespace as NamespaceResource
from lightkube.resources.core_v1 import Pod as PodResource
from lightkube.types import PatchType

LIST_CHUNK = 500
FIELD_MANAGER = "pod-labeler-backfill"


class KubeError(RuntimeError):
    """The cluster could not be reached or refused a request this tool needs."""


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    resource_version: str
    labels: Mapping[str, str]
    # The controller from ownerReferences (controller: true), or None for a bare Pod.
    controller: Owner | None = None
    terminating: bool = False

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "resourceVersion": self.resource_version,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Workload:
    """An owner object as far as the report goes: its own controller, its Pod template's labels."""

    controller: Owner | None
    # None when the kind has no Pod template this tool knows how to read.
    template_labels: Mapping[str, str] | None


def load_config(kubeconfig: str | None, context: str | None) -> Any:
    """`--kubeconfig`, else KUBECONFIG (its first file), else the in-cluster service
    account, else ~/.kube/config; `context` or the file's current context."""
    try:
        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        if path:
            return KubeConfig.from_file(Path(path).expanduser()).get(context)
        if context is None:
            return KubeConfig.from_env().get()
        return KubeConfig.from_file(Path(DEFAULT_KUBECONFIG).expanduser()).get(context)
    except (ConfigError, OSError) as error:
        raise KubeError(f"cannot load the Kubernetes configuration: {error}") from error


class RateLimiter:
    """At most `qps` requests a second, evenly spaced; 0 means no limit."""

    def __init__(
        self,
        qps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


class Kube:
    """The API calls this package makes. Every HTTP request, list pages included,
    passes `limiter` and is counted in `requests`."""

    def __init__(self, client: Client, qps: float = 0) -> None:
        self.client = client
        self.limiter = RateLimiter(qps)
        self.requests = 0
        # lightkube keeps its configured httpx client (auth, TLS) here; an httpx
        # request hook sees each request, whichever lightkube call sent it.
        http = client._client._client
        http.event_hooks = {
            **http.event_hooks,
            "request": [*http.event_hooks["request"], self._on_request],
        }

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, qps: float = 0
    ) -> Kube:
        client = Client(
            config=load_config(kubeconfig, context), field_manager=FIELD_MANAGER, lazy=False
        )
        return cls(client, qps)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _on_request(self, _request: Any) -> None:
        self.limiter.wait()
        self.requests += 1

    # --- reads -------------------------------------------------------------------

    def namespaces(self) -> list[Namespace]:
        found = []
        for ns in self.client.list(NamespaceResource):
            metadata = ns.metadata
            if metadata is not None and metadata.name:
                found.append(Namespace(metadata.name, dict(metadata.labels or {})))
        return found

    def pods(self, namespace: str | None = None) -> Iterator[Pod]:
        """Every Pod, of one namespace or of all, LIST_CHUNK a request."""
        listed = self.client.list(PodResource, namespace=namespace or "*", chunk_size=LIST_CHUNK)
        for obj in listed:
            yield _pod(obj.metadata)

    def pod(self, namespace: str, name: str) -> Pod:
        """One Pod, read again (after a conflict); ApiError 404 when it is gone."""
        return _pod(self.client.get(PodResource, name, namespace=namespace).metadata)

    def workload(self, namespace: str, owner: Owner) -> Workload | None:
        """The owner object, or None when its kind is unknown here or it cannot be read."""
        resource = WORKLOADS.get(owner.kind)
        if resource is None:
            return None
        try:
            obj = self.client.get(resource, owner.name, namespace=namespace)
        except ApiError:
            return None
        data = obj.to_dict()
        spec = data.get("spec") or {}
        if owner.kind == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        template = (spec.get("template") or {}).get("metadata") or {}
        return Workload(
            controller=_controller(data.get("metadata") or {}),
            template_labels=dict(template.get("labels") or {}),
        )

    def admission_objects(self, release: str) -> list[dict[str, Any]]:
        """The release's MutatingWebhookConfigurations and MutatingAdmissionPolicies, as
        dicts; a cluster that does not serve the policy API simply has none."""
        selector: dict[str, Any] = {"app.kubernetes.io/instance": release}
        found: list[dict[str, Any]] = []
        resources: tuple[Any, ...] = (MutatingWebhookConfiguration, MutatingAdmissionPolicy)
        for resource in resources:
            try:
                items = list(self.client.list(resource, labels=selector))
            except ApiError as error:
                if error.status.code == 404:
                    continue
                raise
            found.extend(obj.to_dict() for obj in items)
        return found

    # --- writes ------------------------------------------------------------------

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A JSON merge patch; raises ApiError (404 gone, 409 changed since read)."""
        self.client.patch(PodResource, name, patch, namespace=namespace, patch_type=PatchType.MERGE)


WORKLOADS: dict[str, Any] = {
    "ReplicaSet": ReplicaSet,
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
    "DaemonSet": DaemonSet,
    "Job": Job,
    "CronJob": CronJob,
}


def _controller(metadata: Mapping[str, Any]) -> Owner | None:
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("controller"):
            return Owner(kind=ref.get("kind", ""), name=ref.get("name", ""))
    return None


def _pod(metadata: Any) -> Pod:
    """A Pod from its lightkube ObjectMeta."""
    return Pod(
        namespace=metadata.namespace or "",
        name=metadata.name or "",
        resource_version=metadata.resourceVersion or "",
        labels=dict(metadata.labels or {}),
        controller=_controller(
            {"ownerReferences": [ref.to_dict() for ref in metadata.ownerReferences or ()]}
        ),
        terminating=metadata.deletionTimestamp is not None,
    )
