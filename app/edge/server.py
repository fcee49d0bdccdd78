"""waitress's server and channel, with TLS, deadlines and limits: the serving edge.

waitress is the only HTTP parser. A `Channel` (one connection) moves bytes between the
socket and waitress, through an `ssl.SSLObject` on memory BIOs on the TLS port, and
reads waitress's parser state to know how far a request has got. Its states:

    HANDSHAKE  TLS not done (the TLS port only): closed at handshake_timeout
    IDLE       no request: waitress's channel_timeout (idle_timeout) closes it
    ARRIVING   `self.request` partly read: each header_timeout window it must bring
               min_request_rate bytes a second, its head whole by the first window's
               end, or it gets 408. A large body first waits, unread, for its share
               of the byte budget (WAITING).
    BUSY       `self.requests` whole, or its answer not sent yet: never shed; ends
               within request_timeout of the request's first byte, or is closed
    LINGER     answered and closing: the write side is shut and what the client
               still sends is dropped, briefly, so it reads our answer, not a reset

A `Listener` (one port) has its own connection limit; at it the connection most behind
(`Channel.behind`) is shed, never a BUSY one. `run` is waitress's loop with the sweep.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import WSGITask
from waitress.utilities import BadRequest

from app.edge.limits import ByteBudget, EdgeLimits
from app.logs import fields

log = logging.getLogger("pod_labeler.edge")

READ_BYTES = 16 * 1024  # ciphertext per read: one full TLS record
# Ciphertext waiting for the socket, past which waitress is told nothing was sent.
CIPHER_HIGH_WATER = 64 * 1024
# Ciphertext in a row with no plaintext (KeyUpdates, empty records): CPU, no request.
MAX_DRY_CIPHERTEXT = 64 * 1024
LINGER_BYTES = 256 * 1024  # what a client may still send after our closing answer
SWEEP_INTERVAL = 0.25  # how often deadlines are checked: their resolution
ACCEPT_BATCH = 64
# "Out of resources for now": shed one, pause accepting, log once per 10 s.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_BACKOFF, ACCEPT_ERROR_LOG_INTERVAL = 0.1, 10.0
_NO_BIO = ssl.MemoryBIO()


class Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser, with an answer for three requests it mishandles."""

    body_rcv: Any

    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except ValueError as error:  # int() refuses more than 4,300 digits
            raise ParsingError("Content-Length is invalid") from error
        if self.version == "1.0" and "TRANSFER_ENCODING" in self.headers:
            raise ParsingError("Transfer-Encoding in HTTP/1.0")  # RFC 9112 6.1: faulty
        if self.body_rcv is None:
            self.expect_continue = False  # else waitress answers 100 and waits for a body


class Task(WSGITask):  # type: ignore[misc]
    """While draining every answer says `Connection: close`; a whole body, one write."""

    wrote_header: bool

    def execute(self) -> None:
        if self.channel.server.draining:
            self.set_close_on_finish()
        super().execute()

    def write(self, data: bytes) -> None:
        if self.wrote_header or not self.complete or self.content_length != len(data):
            super().write(data)
            return
        head = self.build_response_header()  # one TLS record and one send, not two
        self.wrote_header, self.content_bytes_written = True, len(data)
        self.channel.write_soon(head + data if self.has_body else head)


class Channel(HTTPChannel):  # type: ignore[misc]
    parser_class = Parser
    task_class = Task
    server: Listener
    request: Any  # waitress's parser of the request being read
    requests: list[Any]  # whole requests, being answered
    sent_continue: bool
    will_close: bool

    def __init__(self, server: Listener, sock: socket.socket, addr: Any, adj: Any, **kw: Any):
        super().__init__(server, sock, addr, adj, **kw)
        self.reason = ""  # why the server closed it, for the metrics
        self._tls: ssl.SSLObject | None = None  # made at the first byte, with its BIOs
        self._incoming = self._outgoing = _NO_BIO
        self._handshaken = server.tls is None
        self._lock = threading.Lock()  # for the SSLObject: the loop reads, workers write
        self._cipher = bytearray()  # ciphertext the socket has not taken yet
        self._dry = self._taken = 0  # _taken: plaintext bytes given to waitress
        self._window: tuple[float, int] = (self.creation_time, 0)  # (start, _taken then)
        self._since = self.creation_time  # when this exchange (or idle time) began
        self._reserved = 0  # bytes of the byte budget this request holds
        self._held = b""  # plaintext after a whole request, until it is answered
        self._busy = self._waiting = self._peer_done = self._closed = self._served = False
        self._linger_until, self._linger_left = 0.0, LINGER_BYTES

    @property
    def _answering(self) -> bool:
        return bool(self.requests or self.total_outbufs_len or self._cipher)

    def readable(self) -> bool:
        if self._linger_until:
            return True
        if self._peer_done:  # half-closed: close once the answer is out
            self.will_close = self.will_close or not self._answering
            return False
        return bool(super().readable()) and not (self._waiting or self._cipher)

    def handle_read(self) -> None:
        try:
            data = self.socket.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if self._linger_until:
            self._linger_left -= len(data)
            if not data or self._linger_left <= 0:
                self.close_now()
        elif not data:
            self._peer_closed()
        elif not self.server.tls:
            self._take(data)
        else:
            self._decrypt(data)

    def _decrypt(self, data: bytes) -> None:
        chunks: list[bytes] = []
        ended: ssl.SSLError | None = None
        with self._lock:
            if self._tls is None:
                assert self.server.tls is not None
                self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                context = self.server.tls()
                self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
            self._incoming.write(data)
            try:
                if not self._handshaken:
                    self._tls.do_handshake()
                    self._handshaken = True
                    self._enter(time.time())
                while chunk := self._tls.read(READ_BYTES):
                    chunks.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as error:  # SSLZeroReturnError: the client's close_notify
                ended = error
            pushed = self._push()
        self._dry = 0 if chunks else self._dry + len(data)
        if not pushed or self._dry > MAX_DRY_CIPHERTEXT or (ended and not self._handshaken):
            log.debug("TLS failed", extra=fields(peer=self.addr, error=str(ended)))
            self.close_now("" if self._handshaken else "handshake")
            return
        if chunks:
            self._take(b"".join(chunks))
        if ended:
            self._peer_closed()

    def _take(self, data: bytes) -> None:
        now = time.time()
        if self.request is None and not self.requests:
            self._enter(now)  # a new request begins
        self._taken += len(data)
        self.last_activity = now
        self.received(data)
        request = self.request
        if request is not None and request.headers_finished and not self._reserved:
            limits = self.server.limits
            size = limits.max_body_bytes if request.chunked else request.content_length
            if size > limits.small_body_bytes:  # a large body: reserve it, or wait
                self._reserved = size
                self._waiting = not self.server.budget.reserve(size, self._granted)
        self._busy = self._busy or bool(self.requests)

    def received(self, data: bytes) -> bool:
        """waitress's own `received`, except that it stops after one whole request and
        holds the rest until that request is answered and its answer sent (Go's rule):
        a client pipelining without reading holds one answer, not hundreds."""
        data, self._held = self._held + data, b""
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            while data and not self.requests:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                request = self.request
                data = data[request.received(data) :]
                if request.expect_continue and request.headers_finished and not self.sent_continue:
                    self.send_continue()
                if request.completed:
                    self.sent_continue, self.request = False, None
                    if request.error:  # waitress answers it (400, 408, 413, 431, 501)
                        self.reason = "timeout" if request.error.code == 408 else "refused"
                        log.info("request refused", extra=fields(error=str(request.error.body)))
                    if not request.empty:
                        self.requests.append(request)
                        self.server.add_task(self)
            self._held = data
        return True

    def _granted(self) -> None:
        self._waiting, self._window = False, (time.time(), self._taken)

    def _peer_closed(self) -> None:
        """EOF: a whole request is still answered (a half-close), else close now."""
        self._peer_done = bool(self.requests or self.total_outbufs_len)
        if not self._peer_done:
            self.close_now()

    def service(self) -> None:
        super().service()
        if self._reserved or self._held:
            self.server.trigger.pull_trigger(self._answered)

    def _answered(self) -> None:
        """On the loop, once a request is answered: give back its share of the budget,
        and go on with what was held behind it once the answer is out."""
        if self._reserved and not self._waiting:
            self.server.budget.release(self._reserved)
            self._reserved = 0
        if self._held and not self._answering:
            self.received(b"")

    def send(self, data: bytes, do_close: bool = True) -> int:
        """waitress's flush calls this with plaintext, on the loop or a worker thread;
        0 means nothing was taken (the client is not reading)."""
        if not self.server.tls:
            return int(super().send(data, do_close))
        with self._lock:
            taken = 0
            if (pushed := self._push()) and len(self._cipher) < CIPHER_HIGH_WATER:
                try:
                    taken = self._tls.write(data) if self._tls else 0
                    pushed = self._push()
                except ssl.SSLError:
                    pushed = False
        if not pushed and do_close:
            self.close_now()
        return taken if pushed else 0

    def _push(self) -> bool:
        """Send what TLS has written; False if the socket is broken. Holds the lock."""
        if self._tls is not None:
            self._cipher += self._outgoing.read()
        while self._cipher:
            try:
                del self._cipher[: self.socket.send(self._cipher)]
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._cipher.clear()
                return False
        return True

    def writable(self) -> bool:
        return not self._linger_until and bool(super().writable() or self._cipher)

    def handle_write(self) -> None:
        if self._cipher:
            with self._lock:
                pushed = self._push()
            if not pushed:
                self.close_now()
            if not pushed or self._cipher:
                return
        super().handle_write()
        if self._held:
            self._answered()

    def handle_close(self) -> None:
        """waitress closes here: after a closing answer (then linger), or on an error."""
        if self.will_close and self.socket is not None and not self._linger_until:
            self._linger()
        elif not self._linger_until:
            self.close_now()

    def _linger(self) -> None:
        if not self.reason and self.last_activity < time.time() - self.adj.channel_timeout:
            self.reason = "idle"
        self._linger_until = time.time() + self.server.limits.drain_idle_timeout
        with self._lock:
            if self._tls is not None and self._handshaken:
                with contextlib.suppress(ssl.SSLError, ValueError):
                    self._tls.unwrap()  # close_notify
            self._push()
            self._cipher.clear()  # only a client that does not read loses anything here
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_now()

    def close_now(self, reason: str = "") -> None:
        """Close at once (on the loop's thread), giving back what it held."""
        if self._closed:
            return
        self._closed, self.reason = True, self.reason or reason
        if self._waiting:  # never granted: nothing to give back
            self.server.budget.forget(self._granted)
            self._reserved, self._waiting = 0, False
        self._held = b""
        self._answered()
        self.server.on_close(self.reason)
        super().handle_close()

    def _enter(self, now: float) -> None:
        self._since, self._window = now, (now, self._taken)

    def sweep(self, now: float) -> None:
        """Close or answer what is past its deadline (see the states above)."""
        limits = self.server.limits
        if self._linger_until:
            if now >= self._linger_until:
                self.close_now()
        elif not self._handshaken:
            if now - self.creation_time >= limits.handshake_timeout:
                self.close_now("handshake")
        elif self._answering or self._waiting:
            self._busy = True
            if now - self._since >= limits.request_timeout:
                self.close_now("timeout")
        elif self._busy:  # the answer is out: idle, or a request held behind it arriving
            self._busy, self._served = False, True
            self._enter(now)
        elif self.request is None:
            drained = self.server.draining and now - self._since >= limits.drain_idle_timeout
            if drained and not self._bytes_waiting():
                self.reason, self.will_close = "idle", True
        elif now - self._window[0] >= limits.header_timeout:
            start, taken = self._window
            wanted = limits.min_request_rate * (now - start)
            if self.request.headers_finished and self._taken - taken >= wanted:
                self._window = (now, self._taken)
            else:
                self._too_slow()

    def _too_slow(self) -> None:
        """Answer 408 through waitress, as its parser answers its own errors."""
        what = "body" if self.request.headers_finished else "head"
        with self.requests_lock:
            request, self.request = self.request, None
            request.error = BadRequest(f"the request {what} did not arrive in time")
            request.error.code, request.error.reason = 408, "Request Timeout"
            request.completed = True
            self.requests.append(request)
        self._busy, self.reason = True, "timeout"
        self.server.add_task(self)

    def _bytes_waiting(self) -> bool:
        """A request may be in the kernel's buffer: then it is not idle (drain race)."""
        try:
            return bool(self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            return False

    def behind(self, now: float) -> float:
        """Seconds behind min_request_rate in this window, or since its last byte if more
        (a burst earns no credit): the most behind is shed first, and one that has sent
        a whole request before (less by the idle timeout) after all that have not."""
        if self._linger_until:
            return math.inf
        start, taken, limits = *self._window, self.server.limits
        owed = now - start - (self._taken - taken) / limits.min_request_rate
        whole = self._served or self._busy  # _busy: from its whole request to the sweep
        return max(owed, now - self.last_activity) - whole * limits.idle_timeout

    @property
    def sheddable(self) -> bool:
        """Not a connection whose request is whole (one waiting for the budget may go)."""
        return not (self.requests or self.total_outbufs_len)


class Listener(TcpWSGIServer):  # type: ignore[misc]
    channel_class = Channel

    def __init__(
        self,
        application: Any,
        sock: socket.socket,
        max_connections: int,
        tls: Callable[[], ssl.SSLContext] | None,  # each connection's context; None: plain
        limits: EdgeLimits,
        budget: ByteBudget,
        on_close: Callable[[str], None],
        **kw: Any,
    ) -> None:
        self.tls, self.limits, self.budget, self.on_close = tls, limits, budget, on_close
        self.max_connections, self.draining = max_connections, False
        self._paused_until = self._error_logged = 0.0
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
        for _ in range(ACCEPT_BATCH):  # a flood is taken in batches, not one per loop turn
            try:
                sock, address = self.socket.accept()
            except OSError as error:  # none waiting, the client left, or no descriptor
                if error.errno in _RESOURCE_ERRORS:  # EMFILE and the like
                    self.shed_one()
                    self._paused_until = now = time.time() + ACCEPT_BACKOFF
                    if now - self._error_logged >= ACCEPT_ERROR_LOG_INTERVAL:
                        log.error("cannot accept connections", extra=fields(error=str(error)))
                        self._error_logged = now
                return
            if len(self.active_channels) >= self.max_connections and not self.shed_one():
                sock.close()  # every connection's request is whole: none may go
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.channel_class(self, sock, address, self.adj, map=self._map)

    def shed_one(self) -> bool:
        """Close the connection slowest to send its request; False if none may go."""
        now = time.time()
        candidates = [channel for channel in self.active_channels.values() if channel.sheddable]
        if candidates:
            max(candidates, key=lambda channel: channel.behind(now)).close_now("shed")
        return bool(candidates)

    def sweep(self, now: float) -> None:
        for channel in list(self.active_channels.values()):
            channel.sweep(now)
        self.maintenance(now)  # waitress's own: channel_timeout closes idle channels

    def close(self) -> None:
        """Stop accepting: the connections and waitress's trigger stay."""
        wasyncore.dispatcher.close(self)


def run(socket_map: dict[int, Any], listeners: list[Listener], stop: threading.Event) -> None:
    """waitress's loop (`wasyncore.loop`), with the deadline sweep between polls."""
    next_sweep = 0.0
    while socket_map and not stop.is_set():
        wasyncore.poll2(SWEEP_INTERVAL, socket_map)
        if (now := time.time()) >= next_sweep:
            next_sweep = now + SWEEP_INTERVAL
            for listener in listeners:
                listener.sweep(now)
    wasyncore.poll2(0, socket_map)  # what was pulled before `stop` (the drain's last calls)
