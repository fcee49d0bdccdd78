"""Wiring: certificates → waitress (TLS in its own channels) → Flask, and shutdown.

    client ──TLS──▶ waitress's loop (app.edge: TLS, deadlines, limits) ──▶ worker ──▶ Flask

`WebhookServer` owns every moving part and their order: start loads the certificate
first (a server without one cannot be ready), then opens the ports on one waitress
loop; shutdown stops accepting, lets open exchanges finish, then stops the loop and
the workers. `serve` adds the signal handling for `main`. Every step has a timeout.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from waitress.adjustments import Adjustments
from waitress.task import ThreadedTaskDispatcher

from app.admission.responses import errored
from app.certificates import CertificateWatcher
from app.config import ConfigError, ServerConfig
from app.edge.limits import (
    METRICS_CONNECTIONS,
    SOCKET_BUFFER_BYTES,
    ByteBudget,
    connection_limit,
    raise_open_files_limit,
    read_memory_limit,
)
from app.edge.listener import Listener, run
from app.http import ADMISSION_PATHS, METRICS_PATH, create_app
from app.logs import fields
from app.metrics import Metrics

log = logging.getLogger("pod_labeler.serving")

# How long waitress's loop and workers get to stop once the connections are closed.
STOP_TIMEOUT = 5.0
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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
        self._started = False
        self._map: dict[int, Any] = {}  # waitress's socket map: one loop for both ports
        self._listeners: list[Listener] = []
        self._budget = ByteBudget(config.edge.max_buffered_bytes)
        self._dispatcher = ThreadedTaskDispatcher()
        self._loop: threading.Thread | None = None
        self.address: tuple[str, int] = ("", 0)
        self.metrics_address: tuple[str, int] = ("", 0)

    def start(self) -> None:
        """Start serving; raises `ConfigError` (e.g. `CertificateError`) if it cannot."""
        try:
            self._start()
        except BaseException:
            self.shutdown()  # whatever did start
            raise

    def _start(self) -> None:
        self.certificates.load()
        limits = self.config.edge
        soft, hard = raise_open_files_limit()
        memory_limit = read_memory_limit()
        max_connections = connection_limit(
            soft, limits.max_connections, memory_limit, limits.max_buffered_bytes
        )
        admission = _listen(self.config.host, self.config.port)
        metrics = _listen(self.config.metrics_host, self.config.metrics_port)
        self.address, self.metrics_address = admission.getsockname()[:2], metrics.getsockname()[:2]
        app = create_app(
            self.config.policy,
            self.metrics,
            max_body_bytes=limits.max_body_bytes,
            readiness=self._readiness,
        )
        # "Task queue depth is N" at WARNING for every queued request: noise under load.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._dispatcher.set_thread_count(self.config.threads)
        self._listeners = [
            self._listener(only(ADMISSION_PATHS, app), admission, max_connections, tls=True),
            self._listener(only((METRICS_PATH,), app), metrics, METRICS_CONNECTIONS, tls=False),
        ]
        self.metrics.open_connections.set_function(
            lambda: sum(len(listener.active_channels) for listener in self._listeners)
        )
        self._loop = threading.Thread(
            target=run, args=(self._map, self._listeners), name="waitress", daemon=True
        )
        self._loop.start()
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

    def _listener(
        self, app: WSGIApp, sock: socket.socket, max_connections: int, *, tls: bool
    ) -> Listener:
        limits = self.config.edge
        adjustments = Adjustments(
            # waitress refuses at equality: one more byte than the largest we take.
            max_request_header_size=limits.max_header_bytes + 1,
            max_request_body_size=limits.max_body_bytes + 1,
            # Above the largest request: a body is never spooled to a temporary file.
            inbuf_overflow=limits.max_body_bytes + limits.max_header_bytes + 1,
            url_scheme="https" if tls else "http",
            # Trust no X-Forwarded-* header: no proxy is in front of us.
            trusted_proxy=None,
            clear_untrusted_proxy_headers=True,
            ident="pod-labeler",
            backlog=4096,
            log_socket_errors=False,  # a client going away is not an error of ours
        )
        # waitress's idle timeout (its maintenance closes idle channels); set after
        # parsing, which would round it to whole seconds.
        adjustments.channel_timeout = limits.idle_timeout
        return Listener(
            app,
            sock,
            tls=(lambda: self.certificates.context) if tls else None,
            limits=limits,
            max_connections=max_connections,
            budget=self._budget,
            on_close=lambda reason: (
                self.metrics.connections_closed.labels(reason=reason).inc() if reason else None
            ),
            takes_bodies=tls,
            map=self._map,
            dispatcher=self._dispatcher,
            adj=adjustments,
        )

    def buffered_bytes(self) -> int:
        """Bytes of the budget for large bodies reserved now (app.edge.limits.ByteBudget)."""
        return self._budget.used

    def stop_being_ready(self) -> None:
        """The first step of shutting down: /readyz fails, every response closes its
        connection, idle connections are closed; new connections are still served."""
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
        drained = self._drain(self.config.drain_timeout) if self._loop else True
        self.certificates.stop()
        if self._started:
            log.info("stopped", extra=fields(drained=drained))
        return drained

    def _drain(self, timeout: float) -> bool:
        """Stop accepting; wait for the open connections to finish; cut what is left.
        Those still in their handshake may finish it: a TLS 1.3 client may have sent
        its request behind its Finished message. Each gets its answer, with
        `Connection: close`, or its deadline."""
        self._on_loop(lambda: _each(listener.close for listener in self._listeners))
        deadline = time.monotonic() + timeout
        while self._open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = not self._open_connections()
        self._on_loop(self._close_connections)
        self._dispatcher.shutdown(timeout=STOP_TIMEOUT)
        # waitress's loop ends once its map is empty: the triggers are all that is left.
        self._on_loop(lambda: _each(listener.trigger.close for listener in self._listeners))
        assert self._loop is not None
        self._loop.join(STOP_TIMEOUT)
        return drained

    def _on_loop(self, call: Callable[[], object]) -> None:
        """Run `call` on waitress's loop thread (its loop is not thread-safe)."""
        self._listeners[0].trigger.pull_trigger(call)

    def _open_connections(self) -> int:
        return sum(len(listener.active_channels) for listener in self._listeners)

    def _close_connections(self) -> None:
        for listener in self._listeners:
            for channel in list(listener.active_channels.values()):
                channel.close_now()

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


def _each(calls: Iterable[Callable[[], object]]) -> None:
    for call in calls:
        call()


def only(paths: Iterable[str], app: WSGIApp) -> WSGIApp:
    """`app` for these request targets, compared as sent (query aside); 404 otherwise:
    "/metrics#x", "/%6Detrics" or "http://a/metrics" are not "/metrics", though Flask
    would route them there."""
    allowed = frozenset(paths)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_URI", "").partition("?")[0] in allowed:
            return app(environ, start_response)
        encoded = json.dumps(errored(404, "not found")).encode()
        start_response(
            "404 Not Found",
            [("Content-Type", "application/json"), ("Content-Length", str(len(encoded)))],
        )
        return [encoded]

    return serve


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
