"""A listening port: waitress's TCP server, with our channel, limit and deadlines.

Each port (the TLS admission port, the plain metrics port) counts its own
connections against its own limit, so one cannot use up the other's. At the limit,
the connection that is furthest behind the minimum request rate is shed for the
new one (`Channel.behind`): an idle or handshaking one, or one whose request is
still trickling in, never one whose request is whole. Accept errors back off, with
one log line per 10 s. All of it runs on waitress's loop thread.
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
from waitress.server import TcpWSGIServer

from app.edge.channel import BodilessParser, Channel
from app.edge.limits import ByteBudget, EdgeLimits
from app.logs import fields

log = logging.getLogger("pod_labeler.edge")

# How often deadlines are checked: their resolution.
SWEEP_INTERVAL = 0.25
# Connections accepted per wake-up, so that a flood cannot starve the others.
ACCEPT_BATCH = 64
# Accept errors that mean "out of resources for now": shed, back off and retry.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_BACKOFF = 0.1
ACCEPT_ERROR_LOG_INTERVAL = 10.0


class BodilessChannel(Channel):
    parser_class = BodilessParser


class Listener(TcpWSGIServer):  # type: ignore[misc]
    channel_class = Channel

    def __init__(
        self,
        application: Any,
        sock: socket.socket,
        *,
        tls: Callable[[], ssl.SSLContext] | None,
        limits: EdgeLimits,
        max_connections: int,
        budget: ByteBudget,
        on_close: Callable[[str], None],
        takes_bodies: bool = True,
        **kw: Any,
    ) -> None:
        # A port that takes no body answers 413 from the head of a request with one.
        self.channel_class = Channel if takes_bodies else BodilessChannel
        self.tls = tls  # the certificate for each new connection; None: plain HTTP
        self.limits = limits
        self.max_connections = max_connections
        self.budget = budget
        self.on_close = on_close
        self.draining = False
        self._paused_until = 0.0
        self._accept_errors = 0
        self._accept_error_logged = 0.0
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        super().__init__(application, _sock=sock, sockinfo=sockinfo, bind_socket=False, **kw)

    def readable(self) -> bool:
        if not self.accepting or time.time() < self._paused_until:
            return False
        return len(self.active_channels) < self.max_connections or any(
            channel.sheddable for channel in self.active_channels.values()
        )

    def sweep(self, now: float) -> None:
        for channel in list(self.active_channels.values()):
            channel.sweep(now)
        self.maintenance(now)  # waitress's own: channel_timeout closes idle channels

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
                sock.close()  # readable() said there was room: it went meanwhile
                return
            self.channel_class(self, sock, address, self.adj, map=self._map)

    def shed_one(self) -> bool:
        """Close the connection slowest to send its request; False if none may go."""
        now = time.time()
        candidates = [channel for channel in self.active_channels.values() if channel.sheddable]
        if not candidates:
            return False
        max(candidates, key=lambda channel: channel.behind(now)).close_now("shed")
        return True

    def _accept_failed(self, error: OSError) -> None:
        self._accept_errors += 1
        now = time.time()
        if now - self._accept_error_logged >= ACCEPT_ERROR_LOG_INTERVAL:
            log.error(
                "cannot accept connections",
                extra=fields(error=str(error), failures=self._accept_errors),
            )
            self._accept_error_logged, self._accept_errors = now, 0
        self.shed_one()  # out of descriptors: the slowest connection is worth less
        self._paused_until = now + ACCEPT_BACKOFF

    def close(self) -> None:
        """Close the listening socket; the connections stay, and waitress's trigger."""
        wasyncore.dispatcher.close(self)


def run(socket_map: dict[int, Any], listeners: list[Listener]) -> None:
    """waitress's loop, as `wasyncore.loop` runs it, with the deadline sweep between
    polls; it ends when the map is empty."""
    next_sweep = 0.0
    while socket_map:
        wasyncore.poll2(SWEEP_INTERVAL, socket_map)
        now = time.time()
        if now >= next_sweep:
            next_sweep = now + SWEEP_INTERVAL
            for listener in listeners:
                listener.sweep(now)
