"""The front: asyncio's TLS server, relaying each request to waitress.

    client ──TLS──▶ Front (asyncio, one thread) ──unix socket──▶ waitress ──▶ Flask

waitress has no TLS and the API server only calls webhooks over HTTPS, so TLS ends
here, in the standard library's maintained machinery (`loop.connect_accepted_socket`
with `ssl_handshake_timeout`), and the plaintext goes on to waitress over a unix
socket: one backend connection per client connection, opened at its first request.

The front protects the server the way Go's `net/http.Server` does, with deadlines
rather than a thread per connection:
- a handshake, a request head, an exchange and a kept-alive idle connection each
  have a deadline (`EdgeLimits`), checked by one sweep of the connection table;
- the connection limit comes from the open-files limit; at the limit the oldest
  connection still in its handshake, or else the oldest idle one, is shed before
  a new one is taken, and a connection busy with a request is never shed;
- a Content-Length over the cap gets 413 from the head; the request bytes held over
  all connections have a budget, and waitress never spools a body to disk;
- draining (`begin_drain`, then `drain`) puts `Connection: close` on every response
  and closes idle connections, so clients move to another replica and no request a
  client sent goes unanswered.

The certificate comes from a callable at each accept, so a renewed pair is used by
the next handshake: the swap is a reference read (see `app.certificates`).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from app.edge.framing import (
    HEAD_END,
    ChunkedBody,
    FramingError,
    RequestHead,
    error_response,
    parse_request_head,
    parse_response_head,
    with_connection_close,
    without_header,
)
from app.edge.limits import ByteBudget, EdgeLimits
from app.logs import fields

log = logging.getLogger("pod_labeler.front")

# What one connection may read before the byte budget can pause it, at each layer:
# - asyncio gives every TLS connection a 256 KiB buffer for the encrypted bytes,
#   allocated and zeroed up front: 1,000 kept-alive connections would hold 256 MiB,
#   enough for an out-of-memory kill under the chart's limit. A TLS record is at
#   most 16 KiB, so 32 KiB loses nothing but a few reads of large bodies. This class
#   attribute has no public knob; if a release drops it, only memory grows.
# - while a connection is paused, asyncio's TLS keeps reading encrypted bytes until
#   256 KiB wait undecrypted; its transport's `set_read_buffer_limits` brings that
#   down to the same 32 KiB.
# - the plaintext comes into one buffer shared by every connection (Connection is a
#   BufferedProtocol; the loop is one thread and hands each read over at once), so a
#   read is at most 32 KiB for TLS and plain connections alike.
# Measured in test_serving: a connection stalled inside a large body then costs
# well under limits.MEMORY_PER_CONNECTION, as the memory-sized connection limit needs.
TLS_READ_BUFFER = 32 * 1024
if hasattr(asyncio.sslproto.SSLProtocol, "max_size"):
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
READ_CHUNK = 32 * 1024
_read_buffer = memoryview(bytearray(READ_CHUNK))

# How often deadlines are checked: their resolution.
SWEEP_INTERVAL = 0.25
# Accept errors that mean "out of resources for now": back off and retry.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_BACKOFF_MIN = 0.01
ACCEPT_BACKOFF_MAX = 1.0
# Connections accepted per wake-up, so that a flood cannot starve the others.
ACCEPT_BATCH = 64
# At most one log line per this many seconds about failing accepts.
ACCEPT_ERROR_LOG_INTERVAL = 10.0
# A response head from waitress is small; a larger one is a bug, not a response.
MAX_RESPONSE_HEAD = 64 * 1024
# What a refused client may still send before its connection is closed anyway.
LINGER_BYTES = 256 * 1024
# Bytes waiting to go to waitress before the client is paused.
BACKEND_HIGH_WATER = 64 * 1024


@dataclass(frozen=True)
class Listener:
    """A listening socket and what it serves."""

    sock: socket.socket
    # The certificate for each new connection; None serves plain HTTP.
    context: Callable[[], ssl.SSLContext] | None
    # Which request paths this port serves; others get 404.
    serves: Callable[[bytes], bool]
    name: str
    # False: a request with a body gets 413 from its head, before any of it is read
    # into the byte budget that the admission port's reviews share.
    takes_bodies: bool = True


class State(Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"
    HEAD = "head"
    BODY = "body"
    RESPONSE = "response"
    CLOSED = "closed"


class Front:
    """Accepts on each listener and runs every connection on one event loop thread."""

    def __init__(
        self,
        listeners: list[Listener],
        backend_path: str,
        limits: EdgeLimits,
        max_connections: int,
        *,
        on_close: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.listeners = listeners
        self.backend_path = backend_path
        self.limits = limits
        self.max_connections = max_connections
        self.budget = ByteBudget(limits.max_buffered_bytes)
        self.draining = False
        # Called with why a connection was closed by the front (for the metrics).
        self.on_close = on_close
        self.loop = asyncio.new_event_loop()
        # Every connection whose socket is still open, closing ones included.
        self.connections: set[Connection] = set()
        # Those not yet closing: what the connection limit counts.
        self.active = 0
        # Oldest first: who is shed at the limit.
        self._handshaking: dict[Connection, None] = {}
        self._idle: dict[Connection, None] = {}
        self._accepting = False
        self._stopped_accepting = False
        self._backoff = ACCEPT_BACKOFF_MIN
        self._accept_errors = 0
        self._accept_error_logged = 0.0
        self._thread: threading.Thread | None = None
        for listener in listeners:
            listener.sock.setblocking(False)

    # -- control, from any thread -------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="front", daemon=True)
        self._thread.start()

    def begin_drain(self) -> None:
        """From now on every response closes its connection; idle ones are closed."""
        self.loop.call_soon_threadsafe(self._begin_drain)

    def drain(self, timeout: float) -> bool:
        """Stop accepting, let open exchanges finish for up to `timeout` seconds, then
        cut what is left and stop the loop. True when nothing had to be cut."""
        if self._thread is None:
            return True
        future = asyncio.run_coroutine_threadsafe(self._drain(timeout), self.loop)
        try:
            drained = future.result(timeout + 5.0)
        except (TimeoutError, RuntimeError):
            drained = False
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        return drained

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._accept_on()
        sweeper = self.loop.create_task(self._sweep())
        try:
            self.loop.run_forever()
        finally:
            sweeper.cancel()
            self.loop.run_until_complete(self._cut(list(self.connections)))
            # As asyncio.run ends: cancel what is left and let it finish.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self._cut([]))
            for listener in self.listeners:
                listener.sock.close()
            self.loop.close()

    # Accepting is a reader callback rather than a task awaiting loop.sock_accept, so
    # that stopping it can never drop a socket already accepted into a future.

    def _accept_on(self) -> None:
        if self._accepting or self._stopped_accepting:
            return
        self._accepting = True
        for listener in self.listeners:
            self.loop.add_reader(listener.sock.fileno(), self._accept, listener)

    def _accept_off(self) -> None:
        if self._accepting:
            self._accepting = False
            for listener in self.listeners:
                self.loop.remove_reader(listener.sock.fileno())

    def _accept(self, listener: Listener) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.active >= self.max_connections and not (self._handshaking or self._idle):
                # Everyone is busy: leave new clients in the kernel's backlog until a
                # deadline or a finished exchange frees a slot (see `closing`).
                self._accept_off()
                return
            try:
                sock, address = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno not in _RESOURCE_ERRORS:
                    continue  # ECONNABORTED and the like: that client is gone
                self._note_accept_error(error)
                # Out of descriptors: an idle connection is worth less than a new one.
                if not self._shed_one():
                    self._accept_off()
                    self.loop.call_later(self._backoff, self._accept_on)
                    self._backoff = min(self._backoff * 2, ACCEPT_BACKOFF_MAX)
                return
            self._backoff = ACCEPT_BACKOFF_MIN
            # asyncio sets TCP_NODELAY only when the socket says IPPROTO_TCP, and an
            # accepted one says 0: without it a response in two writes waits 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.active >= self.max_connections:
                self._shed_one()
            self._open(listener, sock, address)

    def _note_accept_error(self, error: OSError) -> None:
        self._accept_errors += 1
        now = time.monotonic()
        if now - self._accept_error_logged >= ACCEPT_ERROR_LOG_INTERVAL:
            log.error(
                "cannot accept connections",
                extra=fields(error=str(error), failures=self._accept_errors),
            )
            self._accept_error_logged = now
            self._accept_errors = 0

    def _shed_one(self) -> bool:
        for waiting in (self._handshaking, self._idle):
            if waiting:
                victim = next(iter(waiting))
                victim.shed()
                return True
        return False

    def _open(self, listener: Listener, sock: socket.socket, address: tuple[str, int]) -> None:
        connection = Connection(self, listener, f"{address[0]}:{address[1]}")
        self.connections.add(connection)
        self.active += 1
        self._handshaking[connection] = None
        connection.task = self.loop.create_task(self._handshake(connection, listener, sock))
        # A task cancelled before it starts never runs its body: close the socket here.
        connection.task.add_done_callback(
            lambda task: self._handshake_cancelled(connection, sock) if task.cancelled() else None
        )

    async def _handshake(
        self, connection: Connection, listener: Listener, sock: socket.socket
    ) -> None:
        started = time.monotonic()
        try:
            if listener.context is not None:
                # TLS state (and asyncio's read buffer) is made only once the client
                # speaks: a socket that never sends costs a descriptor, nothing more.
                async with asyncio.timeout(self.limits.handshake_timeout):
                    await self._readable(sock)
            # From here asyncio's transport owns the socket and closes it: closing it
            # here too could close a descriptor number the next accept already reuses.
            connection.socket_taken = True
            await self.loop.connect_accepted_socket(
                lambda: connection,
                sock,
                ssl=listener.context() if listener.context else None,
                ssl_handshake_timeout=max(
                    0.001, self.limits.handshake_timeout - (time.monotonic() - started)
                )
                if listener.context
                else None,
                ssl_shutdown_timeout=self.limits.drain_idle_timeout if listener.context else None,
            )
        except (OSError, ssl.SSLError) as error:  # TimeoutError included
            if not connection.socket_taken:
                sock.close()
            # Load balancers and TCP probes end here too; a wrong caBundle as well.
            log.debug("handshake failed", extra=fields(peer=connection.peer, error=str(error)))
            connection.closed("handshake")
            self.forget(connection)

    async def _readable(self, sock: socket.socket) -> None:
        readable: asyncio.Future[None] = self.loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        self.loop.add_reader(sock.fileno(), ready)
        try:
            await readable
        finally:
            self.loop.remove_reader(sock.fileno())

    def _handshake_cancelled(self, connection: Connection, sock: socket.socket) -> None:
        if not connection.socket_taken:  # cancelled before it started
            sock.close()
        connection.closed("shed")
        self.forget(connection)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for connection in list(self.connections):
                if connection.deadline is not None and now >= connection.deadline:
                    connection.expire()

    def _begin_drain(self) -> None:
        self.draining = True
        for connection in list(self._idle):
            connection.shorten_idle(self.limits.drain_idle_timeout)

    async def _drain(self, timeout: float) -> bool:
        self._begin_drain()
        self._accept_off()
        self._stopped_accepting = True
        for listener in self.listeners:
            listener.sock.close()
        # Those still in their handshake are left to finish it: a TLS 1.3 client may
        # already have sent its request behind its Finished message. Each then gets
        # one answer, with `Connection: close`, or its deadline.
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(SWEEP_INTERVAL / 5)
        left = list(self.connections)
        if left:
            log.warning("cut connections still open after the drain", extra=fields(count=len(left)))
        await self._cut(left)
        return not left

    async def _cut(self, connections: list[Connection]) -> None:
        """Abort these and give the loop the turns it needs to close their sockets."""
        for connection in connections:
            connection.abort()
        for _ in range(3):
            await asyncio.sleep(0)

    # -- bookkeeping, called by connections -------------------------------------

    def handshake_done(self, connection: Connection) -> None:
        self._handshaking.pop(connection, None)

    def became_idle(self, connection: Connection) -> None:
        self._idle[connection] = None

    def became_busy(self, connection: Connection) -> None:
        self._idle.pop(connection, None)

    def closing(self, connection: Connection, reason: str) -> None:
        """The connection will serve nothing more (its socket may take a moment to close)."""
        self.active -= 1
        self._handshaking.pop(connection, None)
        self._idle.pop(connection, None)
        self._accept_on()
        if reason:
            self.on_close(reason)

    def forget(self, connection: Connection) -> None:
        """Its socket is closed."""
        self.connections.discard(connection)


class Connection(asyncio.BufferedProtocol):
    """One client connection, from handshake to close: frames requests and responses,
    relays them, and keeps its deadline."""

    def __init__(self, front: Front, listener: Listener, peer: str) -> None:
        self.front = front
        self.limits = front.limits
        self.listener = listener
        self.peer = peer
        self.state = State.HANDSHAKE
        self.task: asyncio.Task[None] | None = None
        self.socket_taken = False
        self.transport: asyncio.Transport | None = None
        self.deadline: float | None = None
        self.idle_since = 0.0
        self._inbuf = bytearray()
        self._scanned = 0
        self._request: RequestHead | None = None
        self._request_started = 0.0
        self._body_left = 0
        self._chunked: ChunkedBody | None = None
        # Budget accounting: everything received and not released, and the part of it
        # that belongs to the request in progress.
        self._charged = 0
        self._request_bytes = 0
        self._paused: set[str] = set()
        # The request in progress has a large (or chunked) body: see ByteBudget.
        self._large = False
        self._backend: Backend | None = None
        self._response_head = bytearray()
        self._response_left = 0
        self._response_started = False
        self._response_until_eof = False
        self._close_after_response = False
        self._close_reason = ""
        self._linger_left = 0
        # expire() has already waited once for bytes in the kernel this idle period.
        self._idle_grace_used = False

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # asyncio's TLS transport has this since 3.11, undocumented: guarded like max_size.
        limit_reads = getattr(transport, "set_read_buffer_limits", None)
        if limit_reads is not None:
            limit_reads(high=TLS_READ_BUFFER)
        self.front.handshake_done(self)
        # Go's rule: the first request's head deadline runs from the handshake.
        self._become_idle(self.limits.header_timeout)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            self._discard(len(data))
            return
        self._charged += len(data)
        if not self.front.budget.charge(len(data), large=self._large):
            self._pause("budget")
            self.front.budget.wait(self._budget_has_room, large=self._large)
        if self.state is State.BODY:
            data = self._read_body(data)
        # (_read_body may have refused the request and closed the connection.)
        if not data or self.closing:
            return
        self._inbuf += data
        if self.state is State.IDLE:
            self._start_request()
        if self.state is State.HEAD:
            self._read_head()
        self._hold_pipelined()

    def eof_received(self) -> bool | None:
        return None  # close; a TLS client cannot half-close anyway

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed(self._close_reason)
        self.front.forget(self)

    @property
    def closing(self) -> bool:
        return self.state is State.CLOSED

    def pause_writing(self) -> None:
        # A client that does not read its answers: nothing more is read from waitress
        # for it, nor from it, so answers cannot pile up in our memory or the kernel's.
        if self._backend is not None:
            self._backend.pause_reading()
        self._pause("client")

    def resume_writing(self) -> None:
        if self._backend is not None:
            self._backend.resume_reading()
        self._resume("client")

    # -- requests -------------------------------------------------------------------

    def _start_request(self) -> None:
        self.front.became_busy(self)
        self.state = State.HEAD
        self._request_started = time.monotonic()
        self.deadline = self._request_started + self.limits.header_timeout
        self._scanned = 0

    def _read_head(self) -> None:
        end = self._inbuf.find(HEAD_END, max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(self._inbuf)
            if len(self._inbuf) > self.limits.max_header_bytes:
                self._refuse(431, f"the request head is over {self.limits.max_header_bytes} bytes")
            return
        if end > self.limits.max_header_bytes:
            self._refuse(431, f"the request head is over {self.limits.max_header_bytes} bytes")
            return
        head = bytes(self._inbuf[: end + len(HEAD_END)])
        try:
            request = parse_request_head(head[:end], max_body=self.limits.max_body_bytes)
        except FramingError as error:
            self._refuse(error.status, str(error))
            return
        if not self.listener.serves(request.path):
            self._refuse(404, f"not served on the {self.listener.name} port")
            return
        if request.content_length != 0 and not self.listener.takes_bodies:
            self._refuse(413, f"the {self.listener.name} port takes no request body")
            return
        rest = bytes(self._inbuf[len(head) :])
        self._inbuf.clear()
        self._request = request
        self._request_bytes = len(head)  # as received, as charged
        if request.expects_continue and request.content_length == 0:
            # waitress 3.0 answers 100 Continue and then waits for a body that is not
            # coming, while the front holds the next request: nothing to continue.
            head = without_header(head, b"expect")
        self._chunked = (
            None if request.content_length is not None else ChunkedBody(self.limits.max_body_bytes)
        )
        self._body_left = request.content_length or 0
        self._large = (
            request.content_length is None or request.content_length > self.limits.small_body_bytes
        )
        self.state = State.BODY
        self.deadline = self._request_started + self.limits.request_timeout
        self._response_head.clear()
        self._response_started = False
        # One write for the head and what came of the body with it: one send.
        self._inbuf += self._read_body(rest, head=head)

    def _read_body(self, data: bytes, *, head: bytes = b"") -> bytes:
        """Relay (after `head`) the part of `data` that belongs to the body; return the rest."""
        try:
            if self._chunked is not None:
                used = self._chunked.feed(data)
                done = self._chunked.done
            else:
                used = min(len(data), self._body_left)
                self._body_left -= used
                done = self._body_left == 0
        except FramingError as error:
            self._refuse(error.status, str(error))
            return b""
        self._request_bytes += used
        if head or used:
            self._to_backend(head + (data if used == len(data) else data[:used]))
        if done and self.state is State.BODY:
            self.state = State.RESPONSE
        return data[used:]

    def _to_backend(self, data: bytes) -> None:
        if self._backend is None:
            self._backend = Backend(self)
            self._backend.connect()
        self._backend.write(data)

    # -- responses, from the backend ---------------------------------------------

    def backend_data(self, data: bytes) -> None:
        if self.state is State.CLOSED or self.transport is None:
            return
        if self._response_until_eof:
            self.transport.write(data)
            return
        if self._response_left:
            data = self._relay_response_body(data)
            if not data:
                return
        if self._request is None:
            # One request at a time goes to waitress: bytes past its answer, or with
            # no request in flight, mean the two disagree on framing. Never relay them.
            log.error("backend sent bytes with no request in flight", extra=fields(peer=self.peer))
            self._abort("backend")
            return
        self._response_head += data
        self._read_response_head()

    def _read_response_head(self) -> None:
        end = self._response_head.find(HEAD_END)
        if end < 0:
            if len(self._response_head) > MAX_RESPONSE_HEAD:
                self._fail_backend("the backend's response head is too large")
            return
        head = bytes(self._response_head[: end + len(HEAD_END)])
        rest = bytes(self._response_head[end + len(HEAD_END) :])
        self._response_head.clear()
        method = self._request.method if self._request else b"GET"
        try:
            response = parse_response_head(head[: -len(HEAD_END)], request_method=method)
        except FramingError as error:
            self._fail_backend(str(error))
            return
        assert self.transport is not None
        if not response.final:  # 100 Continue: the real response follows
            self.transport.write(head)
            if rest:
                self.backend_data(rest)
            return
        self._release_request()
        self._response_started = True
        # Closing when the request is not fully read: its remaining bytes would be
        # taken for the next request.
        close = (
            response.close
            or (self._request is not None and self._request.close)
            or self.front.draining
            or self.state is not State.RESPONSE
        )
        if close:
            head = with_connection_close(head)
        self._close_after_response = close
        if response.content_length is None:
            self.transport.write(head)
            # No framing to follow: relay until waitress closes, then close too.
            self._response_until_eof = True
            if self._backend is not None:
                self._backend.write_eof()
            if rest:
                self.transport.write(rest)
            return
        if len(rest) > response.content_length:
            self._fail_backend("the backend sent bytes past its response")
            return
        # One write for the head and the body that came with it: one TLS record.
        self.transport.write(head + rest)
        self._response_left = response.content_length - len(rest)
        if self._response_left == 0:
            self._response_done()

    def _relay_response_body(self, data: bytes) -> bytes:
        assert self.transport is not None
        used = min(len(data), self._response_left)
        self.transport.write(data if used == len(data) else data[:used])
        self._response_left -= used
        if self._response_left == 0:
            self._response_done()
        return data[used:]

    def _response_done(self) -> None:
        self._request = None
        self._large = False
        if self._close_after_response or self.state is not State.RESPONSE:
            self._close("")
            return
        self._become_idle(self.limits.idle_timeout)
        if self._inbuf:  # the client sent its next request early
            self._start_request()
            self._read_head()
        self._hold_pipelined()

    def _hold_pipelined(self) -> None:
        """Go's rule: with a request in flight and the next one already here, nothing
        more is read until the answer, so pipelined bytes wait in the kernel, not in
        the byte budget or in memory."""
        if self.state is State.RESPONSE and self._inbuf:
            self._pause("exchange")
        elif "exchange" in self._paused:
            self._resume("exchange")

    def backend_lost(self) -> None:
        """waitress closed its side."""
        self._backend = None
        if self.state is State.CLOSED:
            return
        if self._response_until_eof or self.state is State.IDLE:
            if self._response_until_eof:
                self._close("")
            return
        if self._response_started:
            self._abort("backend")
        elif self.state in (State.BODY, State.RESPONSE):
            self._refuse(502, "the backend closed the connection before answering")

    def _fail_backend(self, message: str) -> None:
        log.error("backend response cannot be relayed", extra=fields(peer=self.peer, error=message))
        if self._response_started:
            self._abort("backend")
        else:
            self._refuse(502, message)

    # -- state, deadlines and closing ------------------------------------------

    def _become_idle(self, timeout: float) -> None:
        self.state = State.IDLE
        self.idle_since = time.monotonic()
        self._idle_grace_used = False
        if self.front.draining:
            timeout = min(timeout, self.limits.drain_idle_timeout)
        self.deadline = self.idle_since + timeout
        self._response_started = False
        self._response_until_eof = False
        self._close_after_response = False
        self.front.became_idle(self)

    def shorten_idle(self, timeout: float) -> None:
        if self.state is State.IDLE and self.deadline is not None:
            self.deadline = min(self.deadline, self.idle_since + timeout)

    def expire(self) -> None:
        """The deadline passed."""
        if self.state is State.CLOSED:  # the end of a lingering close
            self.deadline = None
            if self.transport is not None:
                self.transport.close()
            return
        if self.state is State.IDLE:
            if not self._paused and not self._idle_grace_used and self._bytes_waiting():
                # A request may be arriving: give it one head deadline to show. Once
                # only: TLS records with no plaintext (KeyUpdates) also wait in the
                # kernel, and must not keep a connection open past every deadline.
                self._idle_grace_used = True
                self.deadline = time.monotonic() + self.limits.header_timeout
                return
            self._close("idle")
        elif self.state in (State.HEAD, State.BODY) and not self._response_started:
            what = "head" if self.state is State.HEAD else "body"
            self._refuse(408, f"the request {what} did not arrive in time", reason="timeout")
        else:
            self._abort("timeout")

    def _bytes_waiting(self) -> bool:
        """A request already in the kernel's buffer makes the connection not idle."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None:
            return False
        # asyncio's socket wrapper has no recv: peek through a socket object that
        # borrows the descriptor and gives it back.
        probe = socket.socket(fileno=sock.fileno())
        try:
            return bool(probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            return False
        finally:
            probe.detach()

    def _refuse(self, status: int, message: str, *, reason: str = "refused") -> None:
        """Answer from the front and close: the request cannot be relayed."""
        log.info(
            "request refused by the front",
            extra=fields(peer=self.peer, code=status, error=message),
        )
        if self.transport is None or self._response_started:
            self._close(reason)
            return
        self.transport.write(error_response(status, message))
        self._linger(reason)

    def _linger(self, reason: str) -> None:
        """Close after the client has stopped sending, as Go's server does: a client
        still writing its request would otherwise get a reset instead of our answer.
        What it sends meanwhile is dropped, up to a limit and a deadline."""
        self._close_reason = self._close_reason or reason
        self.closed(self._close_reason)
        self._linger_left = LINGER_BYTES
        self.deadline = time.monotonic() + self.limits.drain_idle_timeout

    def _discard(self, size: int) -> None:
        self._linger_left -= size
        if self._linger_left <= 0 and self.transport is not None:
            self.transport.close()

    def shed(self) -> None:
        """Make room for a new connection: only called on handshaking or idle ones."""
        self._close_reason = "shed"
        self.abort()

    def _close(self, reason: str) -> None:
        """Close gracefully: what was written is sent first."""
        self._close_reason = self._close_reason or reason
        if self.transport is not None:
            self.transport.close()
        self.closed(self._close_reason)

    def _abort(self, reason: str) -> None:
        self._close_reason = self._close_reason or reason
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        elif self.task is not None:
            self.task.cancel()
        self.closed(self._close_reason)

    def closed(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.deadline = None
        self.front.budget.forget(self._budget_has_room)
        self.front.budget.release(self._charged)
        self._charged = self._request_bytes = 0
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        self.front.closing(self, reason)

    # -- flow control ---------------------------------------------------------------

    def _release_request(self) -> None:
        self._charged -= self._request_bytes
        self.front.budget.release(self._request_bytes)
        self._request_bytes = 0

    def _budget_has_room(self) -> None:
        self._resume("budget")

    def _pause(self, why: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(why)

    def _resume(self, why: str) -> None:
        self._paused.discard(why)
        if not self._paused and self.transport is not None and self.state is not State.CLOSED:
            self.transport.resume_reading()


class Backend(asyncio.Protocol):
    """The unix-socket connection to waitress that serves one client connection."""

    def __init__(self, client: Connection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self._pending = bytearray()
        self._eof_pending = False
        self._closed = False

    def connect(self) -> None:
        loop = self.client.front.loop
        loop.create_task(self._connect(loop))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.create_unix_connection(lambda: self, self.client.front.backend_path)
        except OSError as error:
            log.error("cannot reach waitress", extra=fields(error=str(error)))
            if not self._closed:
                self.client.backend_lost()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._closed:
            transport.close()
            return
        self.transport = transport
        transport.set_write_buffer_limits(high=BACKEND_HIGH_WATER)
        if self._pending:
            transport.write(bytes(self._pending))
            self._pending.clear()
        if self._eof_pending:
            transport.write_eof()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self._pending += data
        else:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is None:
            self._eof_pending = True
        elif self.transport.can_write_eof():
            self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.client.backend_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._closed = True
            self.client.backend_lost()

    def pause_writing(self) -> None:
        self.client._pause("backend")

    def resume_writing(self) -> None:
        self.client._resume("backend")

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closing
                self.transport.close()
