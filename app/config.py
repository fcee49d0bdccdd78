"""The server's validated settings: ports, timeouts, limits, TLS files, the policy.

Parsed once at startup (by `app.main`) into a frozen dataclass. The label policy
itself lives in the admission core (`app.admission.policy`); this module adds what
only the server needs, and `check_files` is its one look at the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.admission.policy import LabelPolicy
from app.edge.limits import EdgeLimits


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


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
    min_request_rate: int = EdgeLimits.min_request_rate
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
        if problems := edge_problems(self.edge):
            raise ConfigError(problems[0])

    @property
    def edge(self) -> EdgeLimits:
        return EdgeLimits(
            handshake_timeout=self.handshake_timeout,
            header_timeout=self.header_timeout,
            min_request_rate=self.min_request_rate,
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


def edge_problems(limits: EdgeLimits) -> list[str]:
    """What is wrong with the edge's limits, in the words of the flags that set them."""
    found = [
        f"{name.replace('_', ' ')} must be greater than 0"
        for name in ("handshake_timeout", "header_timeout", "request_timeout", "idle_timeout")
        if getattr(limits, name) <= 0
    ]
    for name in ("max_header_bytes", "max_body_bytes", "min_request_rate"):
        if getattr(limits, name) < 1:
            found.append(f"{name.replace('_', ' ')} must be at least 1")
    if limits.max_buffered_bytes < limits.max_body_bytes:
        found.append("max buffered bytes must be at least max body bytes (one whole body)")
    if limits.max_connections is not None and limits.max_connections < 1:
        found.append("max connections must be at least 1")
    return found
