"""Wiring: certificates → waitress's loop (app.edge: TLS, deadlines, limits) → Flask.

`WebhookServer` owns every moving part and their order: start loads the certificate
first (a server without one cannot be ready), then opens both ports on one waitress
loop; shutdown stops accepting, lets open exchanges finish, then stops the workers
and the loop. Every step has a timeout. The process's signals are `app.main`'s."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from waitress.task import ThreadedTaskDispatcher

from app.certificates import CertificateWatcher
from app.config import ConfigError, ServerConfig
from app.edge import limits as edge
from app.edge.server import Listener, run
from app.http import ADMISSION_PATHS, METRICS_PATH, create_app, only
from app.logs import fields
from app.metrics import Metrics

log = logging.getLogger("pod_labeler.serving")

STOP_TIMEOUT = 5.0  # for waitress's workers and loop, once the connections are closed


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
        self._draining = self._stopped = self._started = False
        self._map: dict[int, Any] = {}  # waitress's socket map: one loop for both ports
        self._listeners: list[Listener] = []
        self._budget = edge.ByteBudget(config.edge.max_buffered_bytes)
        self._dispatcher = ThreadedTaskDispatcher()  # waitress's worker threads
        self._loop: threading.Thread | None = None
        self._stopping = threading.Event()
        self.address = self.metrics_address = ("", 0)

    def start(self) -> None:
        """Start serving; raises `ConfigError` (e.g. `CertificateError`) if it cannot."""
        try:
            self._start()
        except BaseException:
            self.shutdown()  # whatever did start
            raise

    def _start(self) -> None:
        self.certificates.load()
        config, limits = self.config, self.config.edge
        soft, hard = edge.raise_open_files_limit()
        memory = edge.read_memory_limit()
        wanted, budget = limits.max_connections, limits.max_buffered_bytes
        most = edge.connection_limit(soft, wanted, memory, budget)
        admission = _listen(config.host, config.port)
        metrics = _listen(config.metrics_host, config.metrics_port)
        self.address, self.metrics_address = admission.getsockname()[:2], metrics.getsockname()[:2]
        cap = limits.max_body_bytes
        app = create_app(config.policy, self.metrics, max_body_bytes=cap, readiness=self._readiness)
        # "Task queue depth is N" at WARNING for every queued request: noise under load.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._dispatcher.set_thread_count(config.threads)
        self._listeners = [
            self._listener(only(ADMISSION_PATHS, app), admission, most, self._context),
            self._listener(only((METRICS_PATH,), app), metrics, edge.METRICS_CONNECTIONS, None),
        ]
        self.metrics.open_connections.set_function(self._open_connections)
        self._loop = threading.Thread(target=run, args=(self._map, self._listeners, self._stopping))
        self._loop.name, self._loop.daemon = "waitress", True
        self._loop.start()
        self.certificates.start()
        self._started = True
        serving = fields(
            host=self.address[0],
            port=self.address[1],
            metrics_port=self.metrics_address[1],
            labels=config.policy.as_dict(),
            overwrite=config.policy.overwrite,
            threads=config.threads,
            open_files_soft=soft,
            open_files_hard=hard,
            memory_limit_bytes=memory,
            max_connections=most,
        )
        log.info("serving", extra=serving)

    def _listener(self, app: Any, sock: socket.socket, most: int, tls: Any) -> Listener:
        edge = (self.config.edge, self._budget, self._closed)
        return Listener(app, sock, most, tls, *edge, map=self._map, dispatcher=self._dispatcher)

    def _context(self) -> ssl.SSLContext:
        return self.certificates.context  # a renewed pair serves the next handshake

    def _closed(self, reason: str) -> None:
        if reason:  # the server closed it (idle, timeout, shed, refused, handshake)
            self.metrics.connections_closed.labels(reason=reason).inc()

    def buffered_bytes(self) -> int:
        return self._budget.used  # reserved for large bodies now (see ByteBudget)

    def stop_being_ready(self) -> None:
        """/readyz fails, answers close their connections, idle ones close; still serving."""
        self._draining = True
        for listener in self._listeners:
            listener.draining = True

    def shutdown(self) -> bool:
        """Drain and stop. True if every connection finished within the drain timeout."""
        if self._stopped:
            return True
        self._stopped = True
        self.stop_being_ready()
        if self._started:
            log.info("draining", extra=fields(timeout_seconds=self.config.drain_timeout))
        drained = self._drain(self._loop, self.config.drain_timeout) if self._loop else True
        self.certificates.stop()
        if self._started:
            log.info("stopped", extra=fields(drained=drained))
        return drained

    def _drain(self, loop: threading.Thread, timeout: float) -> bool:
        """Stop accepting, let open exchanges (and handshakes) finish, cut what is left,
        and stop the workers and the loop."""
        self._on_loop(*(listener.close for listener in self._listeners))
        deadline = time.monotonic() + timeout
        while self._open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = not self._open_connections()
        self._on_loop(self._cut)
        self._dispatcher.shutdown(timeout=STOP_TIMEOUT)
        self._stopping.set()
        self._on_loop()  # wakes the loop, which then ends
        loop.join(STOP_TIMEOUT)
        for listener in self._listeners:  # not by a thunk: it could close a pipe mid-pull
            listener.trigger.close()
        return drained

    def _on_loop(self, *calls: Callable[[], object]) -> None:
        """Run `calls` on waitress's loop thread (its loop is not thread-safe)."""
        self._listeners[0].trigger.pull_trigger(lambda: [call() for call in calls])

    def _cut(self) -> None:
        for listener in self._listeners:
            for channel in list(listener.active_channels.values()):
                channel.close_now()

    def _open_connections(self) -> int:
        return sum(len(listener.active_channels) for listener in self._listeners)

    def __enter__(self) -> WebhookServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def _readiness(self) -> str | None:
        if self._draining:
            return "shutting down"
        return None if self.certificates.loaded else "no certificate loaded"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = host == "::" and socket.has_dualstack_ipv6()  # IPv4 too, for dual-stack Pods
    try:
        sock = socket.create_server((host, port), family=family, dualstack_ipv6=dualstack)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    # Accepted sockets inherit these. What a client does not read, and what it sends
    # while it waits, sit in kernel buffers that count against the Pod's memory.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, edge.SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, edge.SOCKET_BUFFER_BYTES)
    return sock
