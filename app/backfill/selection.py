"""Which existing Pods the release would have labelled: its selectors, evaluated here.

The API server sends a Pod CREATE to the webhook (or runs the policy) when the Pod's
namespace matches `namespaceSelector` and the Pod matches `objectSelector`. This
module evaluates those two LabelSelectors the way the API server does
(k8s.io/apimachinery `metav1.LabelSelectorAsSelector`): `matchLabels` and every
`matchExpressions` entry must all hold; `In` needs the key with one of the values,
`NotIn` holds when the key is absent or has another value, `Exists` and
`DoesNotExist` look at the key only; an absent or empty selector matches everything.
No I/O: the labels come in as mappings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Set by the API server on every namespace (Kubernetes 1.21 and later), which is what
# the chart's `kubernetes.io/metadata.name NotIn [...]` expression relies on.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Never touched, whatever the selectors say: the webhook must always be able to
# restart itself, and kube-system belongs to the cluster.
ALWAYS_EXCLUDED = ("kube-system",)

LabelSelector = Mapping[str, Any]
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class SelectorError(ValueError):
    """A LabelSelector the API server would have rejected."""


def check_selector(selector: object, what: str) -> LabelSelector:
    """`selector` as a LabelSelector, or SelectorError naming `what` is wrong with it."""
    if selector is None:
        return {}
    if not isinstance(selector, Mapping):
        raise SelectorError(f"{what} must be an object")
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping) or not all(
        isinstance(v, str) for v in match_labels.values()
    ):
        raise SelectorError(f"{what}.matchLabels must map keys to strings")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, Sequence) or isinstance(expressions, str):
        raise SelectorError(f"{what}.matchExpressions must be a list")
    for index, expression in enumerate(expressions):
        where = f"{what}.matchExpressions[{index}]"
        if not isinstance(expression, Mapping) or not isinstance(expression.get("key"), str):
            raise SelectorError(f"{where} must have a string key")
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator not in OPERATORS:
            raise SelectorError(f"{where}.operator must be one of {', '.join(OPERATORS)}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SelectorError(f"{where}.values must be a list of strings")
        if operator in ("In", "NotIn") and not values:
            raise SelectorError(f"{where}: {operator} needs at least one value")
        if operator in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"{where}: {operator} takes no values")
    return selector


def matches(selector: LabelSelector | None, labels: Mapping[str, str] | None) -> bool:
    """Whether an object with `labels` is selected by `selector` (checked already)."""
    if not selector:
        return True
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or ()
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Scope:
    """The namespaces and Pods a release labels, plus what this run is limited to."""

    release_namespace: str
    namespace_selector: LabelSelector = field(default_factory=dict)
    object_selector: LabelSelector = field(default_factory=dict)
    # Only these namespaces (`--in`); empty means every namespace.
    only: tuple[str, ...] = ()

    def excluded(self) -> tuple[str, ...]:
        return (self.release_namespace, *ALWAYS_EXCLUDED)

    def namespace_reason(self, name: str, labels: Mapping[str, str] | None) -> str | None:
        """None when the release labels Pods in this namespace, else why not."""
        if self.only and name not in self.only:
            return "not asked for"
        if name in self.excluded():
            return "always excluded"
        # The API server evaluates the selector on the namespace's labels, which
        # include kubernetes.io/metadata.name; an object read from an old cluster
        # might lack it, so it is filled in from the name.
        with_name = {**(labels or {}), NAMESPACE_NAME_LABEL: name}
        if not matches(self.namespace_selector, with_name):
            return "not selected by the namespaceSelector"
        return None

    def selects_pod(self, labels: Mapping[str, str] | None) -> bool:
        return matches(self.object_selector, labels)
