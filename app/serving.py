"""Wiring: certificates → front (TLS) → waitress (unix socket) → Flask, and shutdown.

`WebhookServer` owns every moving part and their order: start loads the certificate
first (a server without one cannot be ready), then waitress, then the ports; shutdown
drains the front before stopping waitress, so every request a client sent is answered.
`serve` adds the signal handling for `main`. Every step of stopping has a timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from waitress.server import create_server

from app.certificates import CertificateWatcher
from app.config import ConfigError, ServerConfig
from app.edge.front import Front, Listener
from app.edge.limits import (
    SOCKET_BUFFER_BYTES,
    connection_limit,
    raise_open_files_limit,
    read_memory_limit,
)
from app.http import ADMISSION_PATHS, METRICS_PATH, create_app
from app.logs import fields
from app.metrics import Metrics

log = logging.getLogger("pod_labeler.serving")

ADMISSION_TARGETS = frozenset(path.encode() for path in ADMISSION_PATHS)
# How long waitress gets to finish its threads after the front has drained.
BACKEND_STOP_TIMEOUT = 5.0


class WebhookServer:
    """The whole server, startable and stoppable in-process (tests, bench) or by `serve`."""

    def __init__(self, config: ServerConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.certificates = CertificateWatcher(
            config.tls_cert,
            config.tls_key,
            interval=config.cert_reload_interval,
            metrics=self.metrics,
        )
        self._draining = False
        self._stopped = False
        self._socket_dir: str | None = None
        self._backend: Any = None  # waitress's server object (untyped)
        self._backend_thread: threading.Thread | None = None
        self._front: Front | None = None
        self._started = False
        self.address: tuple[str, int] = ("", 0)
        self.metrics_address: tuple[str, int] = ("", 0)

    def start(self) -> None:
        """Start serving; raises `ConfigError` (e.g. `CertificateError`) if it cannot."""
        try:
            self._start()
        except BaseException:
            self.shutdown()  # whatever did start: waitress, the socket directory
            raise

    def _start(self) -> None:
        self.certificates.load()
        limits = self.config.edge
        soft, hard = raise_open_files_limit()
        memory_limit = read_memory_limit()
        max_connections = connection_limit(
            soft, limits.max_connections, memory_limit, limits.max_buffered_bytes
        )
        # The root filesystem is read-only in the Pod; the chart mounts an emptyDir
        # at /tmp. mkdtemp gives a directory only we can enter for the socket.
        self._socket_dir = tempfile.mkdtemp(prefix="pod-labeler-")
        socket_path = os.path.join(self._socket_dir, "backend.sock")
        self._start_backend(socket_path, max_connections)
        admission = _listen(self.config.host, self.config.port)
        metrics = _listen(self.config.metrics_host, self.config.metrics_port)
        self.address, self.metrics_address = admission.getsockname()[:2], metrics.getsockname()[:2]
        self._front = Front(
            [
                Listener(
                    admission,
                    lambda: self.certificates.context,
                    lambda path: path in ADMISSION_TARGETS,
                    "admission",
                ),
                Listener(
                    metrics,
                    None,
                    lambda path: path == METRICS_PATH.encode(),
                    "metrics",
                    takes_bodies=False,
                ),
            ],
            socket_path,
            limits,
            max_connections,
            on_close=lambda reason: self.metrics.connections_closed.labels(reason=reason).inc(),
        )
        front = self._front
        self.metrics.open_connections.set_function(lambda: len(front.connections))
        self._front.start()
        self.certificates.start()
        self._started = True
        log.info(
            "serving",
            extra=fields(
                host=self.address[0],
                port=self.address[1],
                metrics_port=self.metrics_address[1],
                labels=self.config.policy.as_dict(),
                overwrite=self.config.policy.overwrite,
                threads=self.config.threads,
                open_files_soft=soft,
                open_files_hard=hard,
                memory_limit_bytes=memory_limit,
                max_connections=max_connections,
            ),
        )

    def _start_backend(self, socket_path: str, max_connections: int) -> None:
        limits = self.config.edge
        app = create_app(
            self.config.policy,
            self.metrics,
            max_body_bytes=limits.max_body_bytes,
            readiness=self._readiness,
        )
        # "Task queue depth is N" at WARNING for every queued request: noise under load.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._backend = create_server(
            app,
            unix_socket=socket_path,
            threads=self.config.threads,
            # One backend connection per client connection, so the front's limit rules.
            connection_limit=max_connections + 16,
            # Only the front connects, and it closes idle connections first.
            channel_timeout=limits.idle_timeout + limits.request_timeout,
            # The front enforces the head's cap exactly; waitress counts the blank line
            # too and refuses at equality, so it gets the few bytes that differ.
            max_request_header_size=limits.max_header_bytes + 64,
            # The front enforces the cap exactly; waitress's own check (which also
            # refuses a body of exactly its size) only backs it up.
            max_request_body_size=limits.max_body_bytes + limits.max_header_bytes,
            # Above the largest request the front lets through: a body is never
            # spooled to a temporary file, so /tmp holds nothing but the socket.
            inbuf_overflow=limits.max_body_bytes + limits.max_header_bytes + 1,
            # Only the front connects, and it terminates TLS itself.
            url_scheme="https",
            # Trust no X-Forwarded-* header: no proxy is in front of us. (The default,
            # spelt out because the front might look like one.)
            trusted_proxy=None,
            clear_untrusted_proxy_headers=True,
            ident="pod-labeler",
            asyncore_use_poll=True,  # select() stops at fd 1024
        )
        self._backend_thread = threading.Thread(
            target=self._backend.run, name="waitress", daemon=True
        )
        self._backend_thread.start()

    def buffered_bytes(self) -> int:
        """Request bytes the front holds now (see app.edge.limits.ByteBudget)."""
        return self._front.budget.used if self._front else 0

    def stop_being_ready(self) -> None:
        """The first step of shutting down: /readyz fails, every response closes its
        connection, idle connections are closed; new connections are still served."""
        self._draining = True
        if self._front is not None:
            self._front.begin_drain()

    def shutdown(self) -> bool:
        """Drain and stop. True if every connection finished within the drain timeout."""
        if self._stopped:
            return True
        self._stopped = True
        self._draining = True
        if self._started:
            log.info("draining", extra=fields(timeout_seconds=self.config.drain_timeout))
        drained = self._front.drain(self.config.drain_timeout) if self._front else True
        self.certificates.stop()
        self._stop_backend()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._started:
            log.info("stopped", extra=fields(drained=drained))
        return drained

    def __enter__(self) -> WebhookServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def _readiness(self) -> str | None:
        if self._draining:
            return "shutting down"
        if not self.certificates.loaded:
            return "no certificate loaded"
        return None

    def _stop_backend(self) -> None:
        if self._backend is None or self._backend_thread is None:
            return
        # waitress's loop is not thread-safe; its trigger runs the close on the loop
        # thread. The loop ends once its map is empty, i.e. every channel is closed.
        self._backend.trigger.pull_trigger(self._backend.close)
        self._backend_thread.join(BACKEND_STOP_TIMEOUT)
        self._backend.task_dispatcher.shutdown(timeout=BACKEND_STOP_TIMEOUT)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server(
            (host, port),
            family=family,
            backlog=4096,
            # "::" then also takes IPv4, as a Pod in a dual-stack cluster needs.
            dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6(),
        )
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    # Accepted connections inherit these, before their handshake. What a client does
    # not read and what it sends while paused wait in kernel buffers that count against
    # the Pod's memory like ours; Linux would let each grow to megabytes.
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    return listening


def serve(config: ServerConfig) -> int:
    """Run until SIGTERM or SIGINT; then fail /readyz and close every connection after
    its next response for the shutdown delay while still serving, drain, and return 0.
    A second signal forces exit."""
    # Block the signals before any thread exists, so every thread inherits the mask
    # and the kernel can only deliver them to sigwait below. With a Python handler
    # instead, a signal landing on a worker thread leaves the main thread asleep in
    # its wait, and the handler never runs.
    signals = {signal.SIGTERM, signal.SIGINT}
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    server = WebhookServer(config, registry=registry)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        server.start()
        received = signal.sigwait(signals)
    finally:
        # From here a second SIGTERM terminates at once (its default action) and a
        # second SIGINT raises KeyboardInterrupt.
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    log.info(
        "signal received",
        extra=fields(signal=signal.Signals(received).name, delay_seconds=config.shutdown_delay),
    )
    server.stop_being_ready()
    time.sleep(config.shutdown_delay)
    server.shutdown()
    return 0
