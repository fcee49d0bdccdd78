"""One connection: waitress's own HTTP channel, with TLS run through memory BIOs.

waitress parses every request (it is the only HTTP parser); this channel only moves
bytes between the socket and waitress, through an `ssl.SSLObject` on the TLS port,
and reads waitress's parser state to know how far each request has got. Its states:

    HANDSHAKE  TLS not done yet (the TLS port only); deadline: handshake_timeout
    IDLE       no request; waitress's channel_timeout closes it (idle_timeout)
    ARRIVING   a request partly read (`self.request`): each header_timeout window it
               must bring min_request_rate bytes a second (the head must be whole by
               the first window's end), or it gets 408; a large body first waits,
               unread, for its share of the byte budget (WAITING)
    BUSY       a request is whole (`self.requests`) or its answer is being sent: never
               shed; the exchange must end within request_timeout of its first byte
    LINGER     waitress closed it: the answer is flushed, the write side shut, and
               what the client still sends is dropped, briefly, so that it reads our
               answer rather than a reset (Go's server does the same)

A request followed by a half-close is still answered (`_peer_done`), and waitress's
channel, the parser and the tasks are subclassed only through their documented hooks
(`parser_class`, `task_class`, `error_task_class`, `send`, `handle_read`, ...).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import BadRequest, RequestEntityTooLarge

from app.admission.responses import errored
from app.logs import fields

if TYPE_CHECKING:
    from app.edge.listener import Listener

log = logging.getLogger("pod_labeler.edge")

# Ciphertext read from the socket at a time: one full TLS record.
READ_BYTES = 16 * 1024
# Ciphertext waiting for the socket before waitress is told nothing was sent.
CIPHER_HIGH_WATER = 64 * 1024
# Ciphertext in a row with no plaintext in it (KeyUpdates, empty records): a flood
# of records that cost CPU and bring no request.
MAX_DRY_CIPHERTEXT = 64 * 1024
# What a client may still send after our answer before the connection is closed.
LINGER_BYTES = 256 * 1024


_NO_BIO = ssl.MemoryBIO()


class RequestTimeout(BadRequest):  # type: ignore[misc]
    code = 408
    reason = "Request Timeout"


class Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser, with the answers it lacks for three malformed requests."""

    takes_bodies = True
    body_rcv: Any

    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except ValueError as error:  # int() refuses more than 4,300 digits
            raise ParsingError("Content-Length is invalid") from error
        if self.version == "1.0" and "TRANSFER_ENCODING" in self.headers:
            # RFC 9112 6.1: the framing of such a message is faulty.
            raise ParsingError("Transfer-Encoding is not allowed in HTTP/1.0")
        if self.body_rcv is None:
            # Nothing to continue: waitress would answer 100 and wait for a body.
            self.expect_continue = False
        elif not self.takes_bodies:
            self.body_rcv = None
            self.error = RequestEntityTooLarge("this port takes no request body")


class BodilessParser(Parser):
    takes_bodies = False


class Task(WSGITask):  # type: ignore[misc]
    """waitress's task: while draining, every response says `Connection: close`
    (waitress's own flag); a head and a body given whole go out in one write."""

    wrote_header: bool

    def build_response_header(self) -> bytes:
        if self.channel.server.draining:
            self.set_close_on_finish()
        header: bytes = super().build_response_header()
        return header

    def write(self, data: bytes) -> None:
        if self.wrote_header or not self.complete or self.content_length != len(data):
            super().write(data)
            return
        head = self.build_response_header()  # one TLS record and one send, not two
        self.wrote_header = True
        self.content_bytes_written = len(data)
        self.channel.write_soon(head + data if self.has_body else head)


class ErrorAnswer(ErrorTask):  # type: ignore[misc]
    """waitress's error answers (400, 408, 413, 431, 501) as JSON, like the app's."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps(errored(error.code, error.body)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.channel.reason = "timeout" if error.code == 408 else "refused"
        log.info("request refused", extra=fields(code=error.code, error=error.body))
        self.write(body)


class Channel(HTTPChannel):  # type: ignore[misc]
    parser_class = Parser
    task_class = Task
    error_task_class = ErrorAnswer
    server: Listener
    request: Any  # waitress's parser of the request being read, if any
    requests: list[Any]  # whole requests, being answered
    sent_continue: bool

    def __init__(self, server: Listener, sock: socket.socket, addr: Any, adj: Any, **kw: Any):
        super().__init__(server, sock, addr, adj, **kw)
        now = time.time()
        self.reason = ""  # why the server closed it, for the metrics
        self._tls: ssl.SSLObject | None = None  # made at the first byte, with its BIOs
        self._incoming = self._outgoing = _NO_BIO
        self._handshaken = server.tls is None
        self._lock = threading.Lock()  # the SSLObject: the loop reads, workers write
        self._cipher = bytearray()  # ciphertext the socket has not taken yet
        self._dry = 0
        self._taken = 0  # plaintext bytes given to waitress
        self._window = (now, 0)  # (start, _taken then): the rate's current window
        self._since = now  # when the current exchange (or idle time) began
        self._busy = False
        self._reserved = 0  # bytes of the byte budget this request holds
        self._held = b""  # plaintext after a whole request, until it is answered
        self._waiting = False
        self._peer_done = False  # the client half-closed after a whole request
        self._linger_until = 0.0
        self._linger_left = 0
        self._closed = False

    # -- reading ----------------------------------------------------------------

    def readable(self) -> bool:
        if self._linger_until:
            return True
        if self._peer_done:
            if not (self.requests or self.total_outbufs_len or self._cipher):
                self.will_close = True  # answered: now close
            return False
        readable: bool = super().readable()
        return readable and not self._waiting and not self._cipher

    def handle_read(self) -> None:
        try:
            data = self.socket.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close_now()
            return
        if self._linger_until:
            self._linger_left -= len(data)
            if not data or self._linger_left <= 0:
                self.close_now()
            return
        if not data:
            self._peer_closed()
            return
        if self.server.tls is None:
            self._take(data)
            return
        plaintext, ended = self._decrypt(data)
        if plaintext:
            self._take(plaintext)
        if ended:
            self._peer_closed()

    def _decrypt(self, data: bytes) -> tuple[bytes, bool]:
        """The plaintext in `data`, and whether the TLS session ended."""
        chunks: list[bytes] = []
        failed: ssl.SSLError | None = None
        with self._lock:
            if self._tls is None:
                assert self.server.tls is not None
                self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                self._tls = self.server.tls().wrap_bio(
                    self._incoming, self._outgoing, server_side=True
                )
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
            except ssl.SSLError as error:  # SSLZeroReturnError: close_notify
                failed = error
            pushed = self._push()
        self._dry = 0 if chunks else self._dry + len(data)
        if not pushed or self._dry > MAX_DRY_CIPHERTEXT or (failed and not self._handshaken):
            if not self._handshaken:
                log.debug("handshake failed", extra=fields(peer=self.addr, error=str(failed)))
            self.reason = self.reason or "handshake"
            self.close_now()
            return b"", False
        return b"".join(chunks), failed is not None

    def _take(self, data: bytes) -> None:
        """Give plaintext to waitress's parser; note when a new request begins."""
        now = time.time()
        if self.request is None and not self.requests:
            self._enter(now)
        self._taken += len(data)
        self.last_activity = now
        self.received(data)
        request = self.request
        if request is not None and request.headers_finished and not self._reserved:
            self._reserve(request)
        if self.requests:
            self._busy = True

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
                    if not request.empty:
                        self.requests.append(request)
                        self.server.add_task(self)
            self._held = data
        return True

    def _answered(self) -> None:
        """On the loop, once a request is answered: give back its memory, and go on
        with a request held behind it once its answer is out."""
        if self._reserved and not self._waiting:
            self.server.budget.release(self._reserved)
            self._reserved = 0
        if self._held and not (self.requests or self.total_outbufs_len or self._cipher):
            self.received(b"")

    def _reserve(self, request: Any) -> None:
        limits = self.server.limits
        size = limits.max_body_bytes if request.chunked else request.content_length
        if size > limits.small_body_bytes and not self._waiting:
            if self.server.budget.reserve(size, self._granted):
                self._reserved = size
            else:
                self._reserved, self._waiting = size, True

    def _granted(self) -> None:
        self._waiting = False
        self._window = (time.time(), self._taken)

    def _peer_closed(self) -> None:
        """The client sent EOF: answer a whole request first, else close now."""
        if self.requests or self.total_outbufs_len:
            self._peer_done = True
        else:
            self.close_now()

    def service(self) -> None:
        super().service()
        if self._reserved or self._held:
            self.server.trigger.pull_trigger(self._answered)

    # -- writing ------------------------------------------------------------------

    def send(self, data: bytes, do_close: bool = True) -> int:
        """waitress's flush calls this with plaintext, on the loop or a worker thread;
        0 means nothing was taken (the client is not reading)."""
        if self.server.tls is None:
            sent: int = super().send(data, do_close)
            return sent
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
                sent = self.socket.send(self._cipher)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._cipher.clear()
                return False
            del self._cipher[:sent]
        return True

    def writable(self) -> bool:
        if self._linger_until:
            return bool(self._cipher)
        writable: bool = super().writable()
        return writable or bool(self._cipher)

    def handle_write(self) -> None:
        if self._cipher:
            with self._lock:
                pushed = self._push()
            if not pushed:
                self.close_now()
                return
            if self._cipher or self._linger_until:
                if self._linger_until and not self._cipher:
                    self._shut_write()
                return
        super().handle_write()
        if self._held:
            self._answered()

    # -- closing --------------------------------------------------------------------

    def handle_close(self) -> None:
        """waitress closes a channel here: after an answer that closes it (linger),
        or on a socket error (at once)."""
        if self.will_close and not self._linger_until and self.socket is not None:
            self._linger()
        elif not self._linger_until:
            self.close_now()

    def _linger(self) -> None:
        if not self.reason and self.last_activity < time.time() - self.adj.channel_timeout:
            self.reason = "idle"
        self._linger_until = time.time() + self.server.limits.drain_idle_timeout
        self._linger_left = LINGER_BYTES
        if self._tls is not None and self._handshaken:
            with self._lock:
                with contextlib.suppress(ssl.SSLError, ValueError):
                    self._tls.unwrap()  # close_notify
                if not self._push():
                    self.close_now()
                    return
        if not self._cipher:
            self._shut_write()

    def _shut_write(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_now()

    def close_now(self, reason: str = "") -> None:
        """Close at once, on the loop's thread."""
        if self._closed:
            return
        self._closed = True
        self.reason = self.reason or reason
        self.server.budget.forget(self._granted)
        self._waiting, self._held = False, b""
        self._answered()
        self.server.on_close(self.reason)
        super().handle_close()

    # -- deadlines and shedding, from the listener's sweep ------------------------------

    def _enter(self, now: float) -> None:
        self._since = now
        self._window = (now, self._taken)

    def sweep(self, now: float) -> None:
        """Close or answer what is past its deadline (see the states above)."""
        limits = self.server.limits
        if self._linger_until:
            if now >= self._linger_until:
                self.close_now()
        elif not self._handshaken:
            if now - self.creation_time >= limits.handshake_timeout:
                self.close_now("handshake")
        elif self.requests or self.total_outbufs_len or self._cipher or self._waiting:
            self._busy = True
            if now - self._since >= limits.request_timeout:
                self.close_now("timeout")
        elif self._busy:  # the answer is out: idle, or a pipelined request arriving
            self._busy = False
            self._enter(now)
        elif self.request is None:
            drained = self.server.draining and now - self._since >= limits.drain_idle_timeout
            if drained and not self._bytes_waiting():
                self.reason = "idle"
                self.will_close = True
        elif now - self._window[0] >= limits.header_timeout:
            self._check_rate(now)

    def _check_rate(self, now: float) -> None:
        start, taken = self._window
        wanted = self.server.limits.min_request_rate * (now - start)
        if self.request.headers_finished and self._taken - taken >= wanted:
            self._window = (now, self._taken)
            return
        what = "body" if self.request.headers_finished else "head"
        with self.requests_lock:
            request, self.request = self.request, None
            request.error = RequestTimeout(f"the request {what} did not arrive in time")
            request.completed = True
            self.requests.append(request)
        self._busy = True
        self.server.add_task(self)

    def _bytes_waiting(self) -> bool:
        """A request may be in the kernel's buffer: then the connection is not idle."""
        try:
            return bool(self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            return False

    def behind(self, now: float) -> float:
        """Seconds this connection is behind min_request_rate in its current window:
        the largest is the slowest to send its request, shed first at the limit."""
        if self._linger_until:
            return math.inf
        start, taken = self._window
        return now - start - (self._taken - taken) / self.server.limits.min_request_rate

    @property
    def sheddable(self) -> bool:
        """Anything but a connection whose request is whole or waits for the budget."""
        return not (self.requests or self.total_outbufs_len or self._waiting)
