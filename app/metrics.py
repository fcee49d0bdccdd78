"""Prometheus metrics, registered on a registry the caller passes in.

A dedicated `CollectorRegistry` per server (not the process-global one) keeps
tests independent and makes /metrics show exactly what this server exports.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.admission import Outcome

PREFIX = "pod_labeler"

# Reviews take well under a millisecond of our own time; the default buckets
# start at 5 ms and would put nearly everything in the first one.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

CLOSE_REASONS = ("idle", "timeout", "shed", "refused", "handshake")


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reviews = Counter(
            f"{PREFIX}_reviews",
            "Admission reviews answered on /mutate, by outcome "
            "(patched, allowed without a patch, invalid request, server error).",
            ["outcome"],
            registry=registry,
        )
        self.review_duration = Histogram(
            f"{PREFIX}_review_duration_seconds",
            "Time to answer a request on /mutate, from body read to response built.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.labels_set = Counter(
            f"{PREFIX}_labels_set",
            "Labels added or changed by a patch, by label key.",
            ["label"],
            registry=registry,
        )
        self.labels_overwritten = Counter(
            f"{PREFIX}_labels_overwritten",
            "Existing labels whose value a patch replaced, by label key.",
            ["label"],
            registry=registry,
        )
        self.certificate_reloads = Counter(
            f"{PREFIX}_certificate_reloads",
            "Attempts to load a changed certificate/key pair, by result (success, failure).",
            ["result"],
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            f"{PREFIX}_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a Unix timestamp.",
            registry=registry,
        )
        self.open_connections = Gauge(
            f"{PREFIX}_open_connections",
            "Client connections open on the admission and metrics ports.",
            registry=registry,
        )
        self.connections_closed = Counter(
            f"{PREFIX}_connections_closed",
            "Connections the server closed itself, by reason (idle, timeout, shed: "
            "dropped at the connection limit, refused: a request it would not relay, "
            "handshake: a failed TLS handshake).",
            ["reason"],
            registry=registry,
        )
        # Export every series at 0 from the start, so rate() and alerts work
        # before the first event of each kind.
        for outcome in Outcome:
            self.reviews.labels(outcome=outcome.value)
        for result in ("success", "failure"):
            self.certificate_reloads.labels(result=result)
        for reason in CLOSE_REASONS:
            self.connections_closed.labels(reason=reason)
