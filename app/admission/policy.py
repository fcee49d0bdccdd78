"""The label policy: which labels every new Pod gets, and the label syntax checks.

Part of the admission core: it imports only the standard library, so the core
can be used (and tested) without the server's settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_LABELS: tuple[tuple[str, str], ...] = (("environment", "production"),)

# Kubernetes' own label syntax (k8s.io/apimachinery/pkg/util/validation):
# a qualified name, optionally prefixed by a DNS-1123 subdomain.
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_NAME_MAX = 63
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_SUBDOMAIN_MAX = 253


class InvalidPolicy(ValueError):  # noqa: N818 - reads as a verdict, like InvalidReview
    """A label policy that cannot be used; the message names the label."""


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid Kubernetes label key, or None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "the prefix before '/' is empty"
        if len(prefix) > _DNS_SUBDOMAIN_MAX:
            return f"the prefix is longer than {_DNS_SUBDOMAIN_MAX} characters"
        # fullmatch, not match with '$': '$' also matches before a trailing newline.
        if not _DNS_SUBDOMAIN.fullmatch(prefix):
            return "the prefix must be a lowercase DNS subdomain (e.g. example.com)"
    if not name:
        return "the name part is empty"
    if len(name) > _NAME_MAX:
        return f"the name part is longer than {_NAME_MAX} characters"
    if not _NAME.fullmatch(name):
        return (
            "the name part must be alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid Kubernetes label value, or None if it is."""
    if not value:
        return None
    if len(value) > _NAME_MAX:
        return f"longer than {_NAME_MAX} characters"
    if not _NAME.fullmatch(value):
        return (
            "must be empty or alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def parse_label(text: str) -> tuple[str, str]:
    """`KEY=VALUE` → (key, value). Values cannot contain '=', so the first one splits."""
    key, equals, value = text.partition("=")
    if not equals:
        raise InvalidPolicy(f"label {text!r} is not KEY=VALUE")
    return key, value


def parse_label_list(text: str) -> tuple[tuple[str, str], ...]:
    """The WEBHOOK_LABELS form: `k=v,k2=v2` (spaces around items are ignored)."""
    return tuple(parse_label(item.strip()) for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class LabelPolicy:
    """Which labels every new Pod gets, and whether an existing value is replaced.

    Validated on construction, so an invalid policy cannot exist.
    """

    labels: tuple[tuple[str, str], ...] = DEFAULT_LABELS
    overwrite: bool = True

    def __post_init__(self) -> None:
        if not self.labels:
            raise InvalidPolicy("at least one label is required")
        seen: set[str] = set()
        for key, value in self.labels:
            if problem := label_key_problem(key):
                raise InvalidPolicy(f"invalid label key {key!r}: {problem}")
            if problem := label_value_problem(value):
                raise InvalidPolicy(f"invalid value {value!r} for label {key!r}: {problem}")
            if key in seen:
                raise InvalidPolicy(f"label {key!r} is given more than once")
            seen.add(key)

    @classmethod
    def from_strings(cls, items: Iterable[str], *, overwrite: bool = True) -> LabelPolicy:
        return cls(labels=tuple(parse_label(item) for item in items), overwrite=overwrite)

    def as_dict(self) -> dict[str, str]:
        return dict(self.labels)
