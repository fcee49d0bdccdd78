"""What the installed release labels, read from the objects it installed.

The chart renders its namespaceSelector and objectSelector into the admission object
the API server acts on: the MutatingWebhookConfiguration (webhook mode) or the
MutatingAdmissionPolicy (policy mode). It also writes the labels and the overwrite
rule on that object as two annotations (`pod-labeler/labels`, `pod-labeler/overwrite`),
rendered from the same helper as the server's `--label` flags and the policy's CEL.
Reading that one object works the same in both modes, sees exactly the selectors the
API server evaluates (the release namespace, kube-system, excludedNamespaces and the
opt-out label are already folded in), and needs only read access to one cluster-scoped
kind, not to the Secrets where helm keeps its release records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.admission.policy import InvalidPolicy, LabelPolicy
from app.backfill.selection import LabelSelector, SelectorError, check_selector

LABELS_ANNOTATION = "pod-labeler/labels"
OVERWRITE_ANNOTATION = "pod-labeler/overwrite"
RELEASE_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"


class ReleaseError(RuntimeError):
    """The release cannot be found, or its objects do not say what it labels."""


@dataclass(frozen=True)
class ReleaseSettings:
    mode: str  # "webhook" or "policy"
    source: str  # the object read, for the report: "MutatingWebhookConfiguration/name"
    policy: LabelPolicy
    namespace_selector: LabelSelector
    object_selector: LabelSelector


def _belongs(obj: Mapping[str, Any], namespace: str) -> bool:
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if RELEASE_NAMESPACE_ANNOTATION in annotations:
        return bool(annotations[RELEASE_NAMESPACE_ANNOTATION] == namespace)
    # Not installed by helm (e.g. `helm template | kubectl apply`): the webhook's
    # Service names the namespace; a policy has nothing to tell, so it is taken.
    for webhook in obj.get("webhooks") or ():
        service = (webhook.get("clientConfig") or {}).get("service") or {}
        return bool(service.get("namespace") == namespace)
    return True


def settings_from_objects(
    objects: list[dict[str, Any]], release: str, namespace: str
) -> ReleaseSettings:
    """The settings of release `release` in `namespace`, from its admission objects."""
    ours = [obj for obj in objects if _belongs(obj, namespace)]
    if not ours:
        raise ReleaseError(
            f"no release {release!r} in namespace {namespace!r}: found no "
            f"MutatingWebhookConfiguration or MutatingAdmissionPolicy labelled "
            f"app.kubernetes.io/instance={release} (use --release and --namespace)"
        )
    if len(ours) > 1:
        names = ", ".join(_name(obj) for obj in ours)
        raise ReleaseError(f"release {release!r} has more than one admission object: {names}")
    (obj,) = ours
    if obj.get("kind") == "MutatingAdmissionPolicy":
        constraints = (obj.get("spec") or {}).get("matchConstraints") or {}
        mode = "policy"
    else:
        webhooks = obj.get("webhooks") or []
        if len(webhooks) != 1:
            raise ReleaseError(f"{_name(obj)} has {len(webhooks)} webhooks, expected 1")
        constraints, mode = webhooks[0], "webhook"
    try:
        namespace_selector = check_selector(
            constraints.get("namespaceSelector"), f"{_name(obj)} namespaceSelector"
        )
        object_selector = check_selector(
            constraints.get("objectSelector"), f"{_name(obj)} objectSelector"
        )
    except SelectorError as error:
        raise ReleaseError(str(error)) from error
    return ReleaseSettings(
        mode=mode,
        source=_name(obj),
        policy=_policy(obj),
        namespace_selector=namespace_selector,
        object_selector=object_selector,
    )


def _policy(obj: Mapping[str, Any]) -> LabelPolicy:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(LABELS_ANNOTATION)
    if text is None:
        raise ReleaseError(
            f"{_name(obj)} has no {LABELS_ANNOTATION} annotation (a release of an older "
            "chart): upgrade it, or pass --label and --overwrite/--no-overwrite"
        )
    try:
        labels = json.loads(text)
    except ValueError as error:
        raise ReleaseError(f"{_name(obj)}: {LABELS_ANNOTATION} is not JSON: {error}") from error
    if not isinstance(labels, dict) or not labels:
        raise ReleaseError(f"{_name(obj)}: {LABELS_ANNOTATION} must be a non-empty object")
    if not all(isinstance(value, str) for value in labels.values()):
        raise ReleaseError(f"{_name(obj)}: {LABELS_ANNOTATION} must map keys to strings")
    overwrite = annotations.get(OVERWRITE_ANNOTATION, "true")
    if overwrite not in ("true", "false"):
        raise ReleaseError(f"{_name(obj)}: {OVERWRITE_ANNOTATION} must be true or false")
    try:
        return LabelPolicy(labels=tuple(labels.items()), overwrite=overwrite == "true")
    except InvalidPolicy as error:
        raise ReleaseError(f"{_name(obj)}: {error}") from error


def _name(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
