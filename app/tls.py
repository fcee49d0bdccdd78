"""TLS for the webhook: a hand-written TLS front for waitress, and certificate reloading.

Why hand-written: waitress serves plain HTTP by design, the API server only calls
webhooks over HTTPS, and a sidecar is ruled out. So this module terminates TLS with
the standard library's `ssl` and relays the plaintext to waitress on a unix socket:

    client ──TLS──▶ TLSFront (thread per connection) ──unix socket──▶ waitress ──▶ Flask

Each client connection gets exactly one backend connection for its whole life, so
HTTP keep-alive works end to end without the front understanding HTTP. TLS runs on
memory BIOs (`SSLContext.wrap_bio`): OpenSSL never touches a socket, both sockets
are plain non-blocking ones driven by one selector per connection, and there is
no SSLSocket "want read while writing" state to get wrong.

The certificate pair is reloaded without a restart: `CertificateReloader` polls a
hash of the two files (kubelet updates a mounted Secret by swapping a `..data`
symlink, which file-event watchers miss) and swaps in a new SSLContext; every new
connection takes the context current at accept time, existing ones keep theirs.
"""

from __future__ import annotations

import _ssl
import contextlib
import hashlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.config import ConfigError
from app.logs import fields
from app.metrics import Metrics

log = logging.getLogger("pod_labeler.tls")

HANDSHAKE_TIMEOUT = 10.0
RECV_SIZE = 64 * 1024
# Per direction: stop reading from one side while this much waits for the other.
BUFFER_LIMIT = 256 * 1024
MAX_CONNECTIONS = 512


class CertificateError(ConfigError):
    """The certificate/key pair cannot be loaded; the message says which files and why."""


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Client-initiated TLS 1.2 renegotiation only costs us CPU.
    context.options |= ssl.OP_NO_RENEGOTIATION
    # Go's client (the API server) offers h2 first; waitress speaks HTTP/1.1 only.
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_path, key_path)
    return context


def certificate_not_after(cert_path: Path) -> float | None:
    """notAfter of the first certificate in a PEM file, as a Unix timestamp.

    The standard library has no public way to decode a certificate file, and
    `cryptography` is not a runtime dependency. `_ssl._test_decode_cert` is the
    private helper `ssl` itself uses in its tests: OpenSSL parses the file and it
    returns the same dict as `getpeercert()`. Should a Python release drop it, the
    expiry metric is simply not exported.
    """
    decode = getattr(_ssl, "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        not_after = decode(str(cert_path))["notAfter"]
        return float(ssl.cert_time_to_seconds(not_after))
    except (OSError, ssl.SSLError, KeyError, ValueError):
        return None


class CertificateReloader:
    """Holds the current SSLContext and replaces it when the files change.

    Like controller-runtime's certwatcher: poll every `interval` seconds, and when
    the pair fails to load (half-written, or a new certificate with the old key),
    keep serving the old one and log why. A pair that failed is not retried until
    the files change again, so a bad pair is logged once, not every poll.
    """

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        *,
        interval: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self.interval = interval
        self._metrics = metrics
        self._context: ssl.SSLContext | None = None
        self._loaded: str | None = None
        self._failed: str | None = None
        self._read_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def context(self) -> ssl.SSLContext:
        # One attribute read: atomic, so no lock is needed against a concurrent swap.
        context = self._context
        if context is None:
            raise RuntimeError("no certificate has been loaded")
        return context

    @property
    def loaded(self) -> bool:
        return self._context is not None

    def load(self) -> None:
        """The first load, at startup: failing is fatal, so it raises."""
        digest = self._digest()
        try:
            self._install(server_context(self.cert_path, self.key_path), digest)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise CertificateError(
                f"cannot load TLS certificate {str(self.cert_path)!r} "
                f"with key {str(self.key_path)!r}: {error}"
            ) from error

    def check(self) -> bool:
        """Poll once; True when a new pair was loaded and swapped in."""
        try:
            digest = self._digest()
        except CertificateError as error:
            if str(error) != self._read_error:
                self._read_error = str(error)
                log.warning("keeping the current certificate", extra=fields(error=str(error)))
            return False
        self._read_error = None
        if digest in (self._loaded, self._failed):
            return False
        try:
            context = server_context(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError, ValueError) as error:
            self._failed = digest
            if self._metrics:
                self._metrics.certificate_reloads.labels(result="failure").inc()
            log.warning(
                "certificate files changed but do not load; keeping the current certificate",
                extra=fields(cert=str(self.cert_path), key=str(self.key_path), error=str(error)),
            )
            return False
        self._install(context, digest)
        if self._metrics:
            self._metrics.certificate_reloads.labels(result="success").inc()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cert-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def _digest(self) -> str:
        try:
            return hashlib.sha256(
                self.cert_path.read_bytes() + b"\0" + self.key_path.read_bytes()
            ).hexdigest()
        except OSError as error:
            raise CertificateError(f"cannot read the certificate files: {error}") from error

    def _install(self, context: ssl.SSLContext, digest: str) -> None:
        self._context, self._loaded, self._failed = context, digest, None
        not_after = certificate_not_after(self.cert_path)
        if self._metrics and not_after is not None:
            self._metrics.certificate_expiry.set(not_after)
        log.info(
            "certificate loaded",
            extra=fields(
                cert=str(self.cert_path),
                sha256=digest[:16],
                not_after=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))
                if not_after is not None
                else None,
            ),
        )


class TLSFront:
    """Accepts TLS connections and relays each to its own waitress connection.

    `start()` runs the accept loop in a thread; each accepted connection gets a
    thread of its own (`_Connection`), which does the handshake, so a slow client
    cannot hold up the accept loop. `drain()` is the graceful half of shutdown.
    """

    def __init__(
        self,
        listener: socket.socket,
        backend_path: str,
        context: Callable[[], ssl.SSLContext],
        *,
        max_connections: int = MAX_CONNECTIONS,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._listener = listener
        self._listener.setblocking(False)
        # Kept: the socket's own answer is gone once it is closed on shutdown.
        self.address: tuple[str, int] = listener.getsockname()[:2]
        self.backend_path = backend_path
        self._context = context
        self._max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="tls-accept", daemon=True)
        self._thread.start()

    def stop_accepting(self) -> None:
        """Close the listening socket; new connections are refused from here on."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._changed.notify_all()
        self._wake_w.send(b"\0")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._listener.close()

    def drain(self, timeout: float) -> bool:
        """Stop accepting, let in-flight requests finish, close idle connections.

        Returns False if connections were still open after `timeout` seconds;
        those are then cut.
        """
        self.stop_accepting()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.drain()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._connections and (remaining := deadline - time.monotonic()) > 0:
                self._changed.wait(remaining)
            left = list(self._connections)
        for connection in left:
            connection.abort()
        self._wake_r.close()
        self._wake_w.close()
        return not left

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                with self._lock:
                    # At the limit, leave new connections in the kernel's backlog.
                    while len(self._connections) >= self._max_connections and not self._stopping:
                        self._changed.wait()
                    if self._stopping:
                        return
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                self._accept()

    def _accept(self) -> None:
        try:
            client, address = self._listener.accept()
        except BlockingIOError:
            return
        except OSError as error:
            # EMFILE and the like: back off instead of spinning on a ready listener.
            log.error("accept failed", extra=fields(error=str(error)))
            time.sleep(0.1)
            return
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, client, address, self._context())
        except OSError as error:  # ssl.SSLError included
            # The peer may already be gone; one bad connection must not end the accept loop.
            log.info("connection setup failed", extra=fields(error=str(error)))
            client.close()
            return
        with self._lock:
            self._connections.add(connection)
        thread = threading.Thread(target=connection.run, name=f"tls-{connection.peer}", daemon=True)
        try:
            thread.start()
        except RuntimeError as error:  # out of threads: refuse this one, keep accepting
            log.error("cannot start a connection thread", extra=fields(error=str(error)))
            client.close()
            self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._changed.notify_all()


class _ConnectionEndedError(Exception):
    """The connection ended abnormally (reset, TLS error); nothing more to relay."""


class _Connection:
    """One client connection: TLS handshake, then relay to and from waitress.

    Draining: the front cannot see HTTP messages, so it uses who spoke last. If the
    client has sent nothing since waitress last answered, no request is in flight,
    and the backend's write side is shut; waitress reads that EOF only once its
    current response is flushed, then closes, and the close travels back to the
    client. If a request is in flight, the same happens as soon as waitress starts
    answering it. What this cannot see: a client waiting for `100 Continue` before
    sending its body, or one pipelining a second request behind the first, may lose
    that request to a drain. The API server does neither.
    """

    def __init__(
        self,
        front: TLSFront,
        client: socket.socket,
        address: tuple[str, int],
        context: ssl.SSLContext,
    ) -> None:
        self._front = front
        self._client = client
        self.peer = f"{address[0]}:{address[1]}"
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._backend: socket.socket | None = None
        # Guards everything below against drain() from the shutdown thread.
        self._lock = threading.Lock()
        self._to_backend = bytearray()  # plaintext
        self._to_client = bytearray()  # TLS records
        self._client_eof = False
        self._backend_eof = False
        self._backend_shut = False
        self._client_spoke_last = False
        self._draining = False

    def run(self) -> None:
        try:
            self._handshake()
            backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                backend.connect(self._front.backend_path)
            except OSError:
                backend.close()
                raise
            # Published only once connected: drain() half-closes whatever it finds here.
            with self._lock:
                self._backend = backend
            self._client.setblocking(False)
            self._backend.setblocking(False)
            self._relay()
            self._close_tls()
        except _ConnectionEndedError as error:
            log.debug("connection closed", extra=fields(peer=self.peer, reason=str(error)))
        except ssl.SSLError as error:
            # Worth INFO: a wrong caBundle in the webhook configuration shows up here.
            log.info("TLS error", extra=fields(peer=self.peer, error=str(error)))
        except OSError as error:
            log.info("connection error", extra=fields(peer=self.peer, error=str(error)))
        finally:
            for sock in (self._client, self._backend):
                if sock is not None:
                    sock.close()
            self._front._forget(self)

    def drain(self) -> None:
        with self._lock:
            self._draining = True
            self._shut_backend_if_idle()

    def abort(self) -> None:
        """Cut both sockets; wakes the connection's thread wherever it waits."""
        for sock in (self._client, self._backend):
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)

    def _handshake(self) -> None:
        deadline = time.monotonic() + self._front.handshake_timeout
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                self._send_blocking(self._outgoing.read())  # the alert, so the client sees why
                raise
            self._send_blocking(self._outgoing.read())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ConnectionEndedError("TLS handshake timed out")
            self._client.settimeout(remaining)
            try:
                data = self._client.recv(RECV_SIZE)
            except TimeoutError as error:
                raise _ConnectionEndedError("TLS handshake timed out") from error
            if not data:
                # Load balancers and TCP probes do this; not worth more than DEBUG.
                raise _ConnectionEndedError("client closed before the TLS handshake finished")
            self._incoming.write(data)
        self._send_blocking(self._outgoing.read())

    def _send_blocking(self, data: bytes) -> None:
        if data:
            self._client.settimeout(self._front.handshake_timeout)
            self._client.sendall(data)

    def _relay(self) -> None:
        assert self._backend is not None
        client, backend = self._client, self._backend
        with selectors.DefaultSelector() as selector:
            with self._lock:
                # A TLS 1.3 client may send its first request with its Finished message.
                self._decrypt()
            while True:
                with self._lock:
                    if self._backend_eof and not self._to_client:
                        return
                    self._shut_backend_if_idle()
                    wanted = {
                        client: (selectors.EVENT_READ if self._reading_client() else 0)
                        | (selectors.EVENT_WRITE if self._to_client else 0),
                        backend: (selectors.EVENT_READ if self._reading_backend() else 0)
                        | (selectors.EVENT_WRITE if self._writing_backend() else 0),
                    }
                for sock, events in wanted.items():
                    _watch(selector, sock, events)
                if not selector.get_map():
                    return
                for key, events in selector.select():
                    with self._lock:
                        if key.fileobj is client:
                            if events & selectors.EVENT_READ:
                                self._read_client()
                            if events & selectors.EVENT_WRITE:
                                self._write(client, self._to_client)
                        else:
                            if events & selectors.EVENT_READ:
                                self._read_backend()
                            if events & selectors.EVENT_WRITE:
                                self._write(backend, self._to_backend)

    def _reading_client(self) -> bool:
        return not self._client_eof and len(self._to_backend) < BUFFER_LIMIT

    def _reading_backend(self) -> bool:
        return not self._backend_eof and len(self._to_client) < BUFFER_LIMIT

    def _writing_backend(self) -> bool:
        return bool(self._to_backend) and not self._backend_shut

    def _read_client(self) -> None:
        try:
            data = self._client.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            raise _ConnectionEndedError(f"client: {error}") from error
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        self._decrypt()

    def _decrypt(self) -> None:
        while True:
            try:
                chunk = self._tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                # close_notify or TCP EOF: the client sends no more, but may still
                # read (a half-close), so the backend's answer is still relayed.
                self._client_eof = True
                break
            if self._backend_shut:
                log.debug("dropped data sent after draining", extra=fields(peer=self.peer))
                continue
            self._to_backend += chunk
            self._client_spoke_last = True
        # Reading can produce records to send, e.g. a TLS 1.3 KeyUpdate reply.
        self._to_client += self._outgoing.read()

    def _read_backend(self) -> None:
        assert self._backend is not None
        try:
            data = self._backend.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            raise _ConnectionEndedError(f"backend: {error}") from error
        if not data:
            self._backend_eof = True
            return
        self._client_spoke_last = False
        self._tls.write(data)  # a memory BIO grows, so the write is always whole
        self._to_client += self._outgoing.read()

    def _write(self, sock: socket.socket, buffer: bytearray) -> None:
        try:
            sent = sock.send(buffer)
        except BlockingIOError:
            return
        except OSError as error:
            raise _ConnectionEndedError(
                f"{'client' if sock is self._client else 'backend'}: {error}"
            ) from error
        del buffer[:sent]

    def _shut_backend_if_idle(self) -> None:
        """Half-close the backend when the client is done, or when draining and idle."""
        if self._backend is None or self._backend_shut or self._to_backend:
            return
        if self._client_eof or (self._draining and self._idle()):
            self._backend_shut = True
            # OSError: waitress already closed it, and its EOF ends the relay anyway.
            with contextlib.suppress(OSError):
                self._backend.shutdown(socket.SHUT_WR)

    def _idle(self) -> bool:
        if self._client_spoke_last or self._incoming.pending:
            return False
        # Bytes already in the kernel's buffer are a request on its way: not idle.
        try:
            return not self._client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return True  # the client is gone; nothing to wait for

    def _close_tls(self) -> None:
        """Send close_notify; the client's own close_notify is not waited for."""
        # SSLWantReadError: the peer's close_notify has not arrived, as expected.
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        with contextlib.suppress(OSError):  # the client already went away
            self._send_blocking(bytes(self._to_client) + self._outgoing.read())


def _watch(selector: selectors.BaseSelector, sock: socket.socket, events: int) -> None:
    """Make the selector wait for exactly `events` on `sock` (0: not at all)."""
    try:
        current = selector.get_key(sock).events
    except KeyError:
        current = 0
    if events == current:
        return
    if not current:
        selector.register(sock, events)
    elif not events:
        selector.unregister(sock)
    else:
        selector.modify(sock, events)
