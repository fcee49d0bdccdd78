"""Validated configuration: the label policy and the server settings.

Parsed once at startup (by `app.main`) into frozen dataclasses; nothing here reads
the environment or the filesystem, so the admission core can take a `LabelPolicy`
without knowing where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.edge.limits import EdgeLimits

DEFAULT_LABELS: tuple[tuple[str, str], ...] = (("environment", "production"),)

# Kubernetes' own label syntax (k8s.io/apimachinery/pkg/util/validation):
# a qualified name, optionally prefixed by a DNS-1123 subdomain.
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_NAME_MAX = 63
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_SUBDOMAIN_MAX = 253


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


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
        raise ConfigError(f"label {text!r} is not KEY=VALUE")
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
            raise ConfigError("at least one label is required")
        seen: set[str] = set()
        for key, value in self.labels:
            if problem := label_key_problem(key):
                raise ConfigError(f"invalid label key {key!r}: {problem}")
            if problem := label_value_problem(value):
                raise ConfigError(f"invalid value {value!r} for label {key!r}: {problem}")
            if key in seen:
                raise ConfigError(f"label {key!r} is given more than once")
            seen.add(key)

    @classmethod
    def from_strings(cls, items: Iterable[str], *, overwrite: bool = True) -> LabelPolicy:
        return cls(labels=tuple(parse_label(item) for item in items), overwrite=overwrite)

    def as_dict(self) -> dict[str, str]:
        return dict(self.labels)


DEFAULT_MAX_BODY_BYTES = EdgeLimits.max_body_bytes
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServerConfig:
    """Everything `serve` needs. Paths are checked by `check_files`, not here."""

    tls_cert: Path
    tls_key: Path
    policy: LabelPolicy = field(default_factory=LabelPolicy)
    # A webhook in a Pod is reached on the Pod IP, so it listens on every interface.
    host: str = "0.0.0.0"
    port: int = 8443
    # Plain HTTP, /metrics only: Prometheus scrapes without the webhook's CA.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    cert_reload_interval: float = 10.0
    threads: int = 8
    log_level: str = "info"
    # After SIGTERM, keep accepting for this long while /readyz says 503: the API
    # server's endpoint cache lags the EndpointSlice that drops a terminating Pod, so
    # it may still open connections to us for a moment (kube-apiserver's own
    # --shutdown-delay-duration solves the same problem).
    shutdown_delay: float = 5.0
    # With shutdown_delay, below the default terminationGracePeriodSeconds (30 s), so
    # draining finishes before the kubelet escalates to SIGKILL.
    drain_timeout: float = 20.0
    # The edge's limits (app.edge.limits.EdgeLimits), flat so each is one flag.
    handshake_timeout: float = EdgeLimits.handshake_timeout
    header_timeout: float = EdgeLimits.header_timeout
    request_timeout: float = EdgeLimits.request_timeout
    idle_timeout: float = EdgeLimits.idle_timeout
    max_header_bytes: int = EdgeLimits.max_header_bytes
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_buffered_bytes: int = EdgeLimits.max_buffered_bytes
    # 0: sized from the open-files limit.
    max_connections: int = 0

    def __post_init__(self) -> None:
        for port_field in ("port", "metrics_port"):
            port = getattr(self, port_field)
            if not 0 <= port <= 65535:
                raise ConfigError(
                    f"{port_field.replace('_', ' ')} {port} is not between 0 and 65535"
                )
        if self.cert_reload_interval <= 0:
            raise ConfigError("cert reload interval must be greater than 0 seconds")
        if self.threads < 1:
            raise ConfigError("threads must be at least 1")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        if self.drain_timeout < 0:
            raise ConfigError("drain timeout must not be negative")
        if self.shutdown_delay < 0:
            raise ConfigError("shutdown delay must not be negative")
        if self.max_connections < 0:
            raise ConfigError("max connections must not be negative")
        if problems := self.edge.problems():
            raise ConfigError(problems[0])

    @property
    def edge(self) -> EdgeLimits:
        return EdgeLimits(
            handshake_timeout=self.handshake_timeout,
            header_timeout=self.header_timeout,
            request_timeout=self.request_timeout,
            idle_timeout=self.idle_timeout,
            max_header_bytes=self.max_header_bytes,
            max_body_bytes=self.max_body_bytes,
            max_buffered_bytes=self.max_buffered_bytes,
            max_connections=self.max_connections or None,
        )

    def check_files(self) -> None:
        """Fail early, naming the file, instead of on the first TLS handshake."""
        for what, path in (("certificate", self.tls_cert), ("key", self.tls_key)):
            if not path.is_file():
                raise ConfigError(f"TLS {what} file {str(path)!r} does not exist")
