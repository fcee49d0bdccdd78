"""A listening port: waitress's TCP server with our channel, its own connection
limit (so the metrics port cannot use up the admission port's), and the loop that
sweeps deadlines. At the limit the connection furthest behind the minimum request
rate is shed for the new one (`Channel.behind`), never one whose request is whole.
Everything here runs on waitress's loop thread.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer

from app.edge.channel import Channel
from app.edge.limits import ByteBudget, EdgeLimits
from app.logs import fields

log = logging.getLogger("pod_labeler.edge")

SWEEP_INTERVAL = 0.25  # how often deadlines are checked: their resolution
ACCEPT_BATCH = 64  # accepted per wake-up, so that a flood cannot starve the others
# "Out of resources for now": shed one, pause accepting, log once per 10 s.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_BACKOFF, ACCEPT_ERROR_LOG_INTERVAL = 0.1, 10.0


class Listener(TcpWSGIServer):  # type: ignore[misc]
    channel_class = Channel

    def __init__(
        self,
        application: Any,
        sock: socket.socket,
        max_connections: int,
        tls: Callable[[], ssl.SSLContext] | None,  # each connection's context; None: plain
        *,
        limits: EdgeLimits,
        budget: ByteBudget,
        on_close: Callable[[str], None],
        **kw: Any,
    ) -> None:
        self.tls, self.limits, self.budget, self.on_close = tls, limits, budget, on_close
        self.max_connections, self.draining = max_connections, False
        self._paused_until = self._error_logged = 0.0
        self._errors = 0
        adjustments = Adjustments(
            # waitress refuses at equality: one byte more than the largest we take.
            max_request_header_size=limits.max_header_bytes + 1,
            # The plain (metrics) port takes no body: 413 from the head, or the first byte.
            max_request_body_size=limits.max_body_bytes + 1 if tls else 1,
            # Above the largest request: a body is never spooled to a temporary file.
            inbuf_overflow=limits.max_body_bytes + limits.max_header_bytes + 1,
            url_scheme="https" if tls else "http",
            ident="pod-labeler",
            backlog=4096,
            log_socket_errors=False,  # a client going away is not an error of ours
        )
        # waitress's idle timeout; set after parsing, which rounds it to whole seconds.
        adjustments.channel_timeout = limits.idle_timeout
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        kw |= {"_sock": sock, "sockinfo": sockinfo, "bind_socket": False, "adj": adjustments}
        super().__init__(application, **kw)

    def readable(self) -> bool:
        if not self.accepting or time.time() < self._paused_until:
            return False
        return len(self.active_channels) < self.max_connections or any(
            channel.sheddable for channel in self.active_channels.values()
        )

    def handle_accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _RESOURCE_ERRORS:
                    self._accept_failed(error)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.active_channels) >= self.max_connections and not self.shed_one():
                sock.close()  # the room readable() saw has gone meanwhile
                return
            self.channel_class(self, sock, address, self.adj, map=self._map)

    def shed_one(self) -> bool:
        """Close the connection slowest to send its request; False if none may go."""
        now = time.time()
        candidates = [channel for channel in self.active_channels.values() if channel.sheddable]
        if candidates:
            max(candidates, key=lambda channel: channel.behind(now)).close_now("shed")
        return bool(candidates)

    def _accept_failed(self, error: OSError) -> None:
        self._errors += 1
        now = time.time()
        if now - self._error_logged >= ACCEPT_ERROR_LOG_INTERVAL:
            failed = fields(error=str(error), failures=self._errors)
            log.error("cannot accept connections", extra=failed)
            self._error_logged, self._errors = now, 0
        self.shed_one()  # out of descriptors: the slowest connection is worth less
        self._paused_until = now + ACCEPT_BACKOFF

    def sweep(self, now: float) -> None:
        for channel in list(self.active_channels.values()):
            channel.sweep(now)
        self.maintenance(now)  # waitress's own: channel_timeout closes idle channels

    def close(self) -> None:
        """Stop accepting: the connections and waitress's trigger stay."""
        wasyncore.dispatcher.close(self)


def run(socket_map: dict[int, Any], listeners: list[Listener]) -> None:
    """waitress's loop (`wasyncore.loop`) with the deadline sweep between polls; it
    ends when the map is empty."""
    next_sweep = 0.0
    while socket_map:
        wasyncore.poll2(SWEEP_INTERVAL, socket_map)
        if (now := time.time()) >= next_sweep:
            next_sweep = now + SWEEP_INTERVAL
            for listener in listeners:
                listener.sweep(now)
