"""The serving edge under hostile and careless clients: idle and stalled sockets,
trickled heads, oversized and stalled bodies, the connection limit, and draining.

Each test runs the real server (TLS front, waitress, Flask) on 127.0.0.1. Where the
issue names a deadline for a legitimate client ("answered within 1 s"), the client's
socket timeout is that deadline; nothing else here depends on timing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import re
import resource
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

import app.http
from app.admission import review_request
from app.config import ServerConfig
from app.edge.limits import SOCKET_BUFFER_BYTES, connection_limit
from app.edge.server import Channel
from app.serving import WebhookServer
from tests.unit.conftest import UID, build_review, wait_for

StartServer = Callable[..., WebhookServer]
LEGITIMATE_DEADLINE = 1.0


@pytest.fixture
def start_server(server_config: ServerConfig) -> Iterator[StartServer]:
    """Starts a server with some settings changed; stops it after the test."""
    with ExitStack() as stack:

        def start(**changes: Any) -> WebhookServer:
            return stack.enter_context(WebhookServer(dataclasses.replace(server_config, **changes)))

        yield start


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Client sockets the test opens; all closed afterwards."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@dataclass(frozen=True)
class SlowReview:
    """A review whose uid is "slow" stays in the app until `release` is set."""

    answering: threading.Event
    release: threading.Event


@pytest.fixture
def slow_review(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowReview]:
    slow = SlowReview(threading.Event(), threading.Event())

    def slow_for_one_uid(request: Any, policy: Any) -> Any:
        if request.uid == "slow":
            slow.answering.set()
            slow.release.wait(10)
        return review_request(request, policy)

    monkeypatch.setattr(app.http, "review_request", slow_for_one_uid)
    yield slow
    slow.release.set()


def need_open_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} open files; the hard limit here is {hard}")
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def review_bytes(*, close: bool = False, uid: str = UID) -> bytes:
    body = json.dumps(build_review(uid=uid)).encode()
    head = (
        "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


def exchange(
    server: WebhookServer, context: ssl.SSLContext, request: bytes, *, timeout: float = 10.0
) -> http.client.HTTPResponse:
    """A new TLS connection, one request, the whole response, within `timeout`."""
    sock = context.wrap_socket(
        socket.create_connection(server.address, timeout=timeout), server_hostname="127.0.0.1"
    )
    sock.sendall(request)
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    response.read()
    sock.close()
    return response


def tls_connection(server: WebhookServer, context: ssl.SSLContext) -> ssl.SSLSocket:
    return context.wrap_socket(
        socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"
    )


def read_status(sock: socket.socket) -> int:
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    response.read()
    return response.status


def legitimate_review_is_answered(
    server: WebhookServer, context: ssl.SSLContext, *, deadline: float = LEGITIMATE_DEADLINE
) -> None:
    response = exchange(server, context, review_bytes(close=True), timeout=deadline)
    assert response.status == 200


@contextmanager
def kept_alive_after_a_review(
    server: WebhookServer, context: ssl.SSLContext
) -> Iterator[ssl.SSLSocket]:
    """A TLS connection whose one review has been answered, left open by the client."""
    sock = context.wrap_socket(
        socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"
    )
    with sock:
        sock.sendall(review_bytes())
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        response.read()
        yield sock


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True


def test_a_review_is_answered_within_a_second_while_1000_idle_sockets_are_open(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    need_open_files(2600)
    server = start_server()
    sockets.extend(socket.create_connection(server.address) for _ in range(1000))

    legitimate_review_is_answered(server, client_context)


def test_a_review_is_answered_within_a_second_while_600_tls_clients_trickle_their_heads(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    need_open_files(2600)
    server = start_server()
    for _ in range(600):
        trickler = client_context.wrap_socket(
            socket.create_connection(server.address), server_hostname="127.0.0.1"
        )
        trickler.sendall(b"P")
        sockets.append(trickler)
    for trickler in sockets:
        trickler.sendall(b"O")

    legitimate_review_is_answered(server, client_context)


def test_a_trickled_request_head_gets_408_at_the_header_deadline(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server(header_timeout=0.5)
    sock = client_context.wrap_socket(
        socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"
    )
    sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: web")

    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()

    assert response.status == 408
    assert response.getheader("Connection") == "close"
    sock.close()


def test_a_client_that_never_starts_its_handshake_is_closed_at_the_handshake_deadline(
    start_server: StartServer, sockets: list[socket.socket]
) -> None:
    server = start_server(handshake_timeout=0.5)
    silent = socket.create_connection(server.address, timeout=10)
    sockets.append(silent)

    assert closed_by_server(silent)


def test_an_idle_kept_alive_connection_is_closed_at_the_idle_deadline(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server(idle_timeout=0.5)

    with kept_alive_after_a_review(server, client_context) as sock:
        assert closed_by_server(sock)


def test_bytes_that_never_become_a_request_do_not_keep_an_idle_connection_open(
    start_server: StartServer, client_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TLS records with no plaintext (a flood of KeyUpdates) leave bytes waiting in the
    # kernel that never reach data_received: as if bytes were always waiting.
    monkeypatch.setattr(Channel, "_bytes_waiting", lambda self: True)
    server = start_server(idle_timeout=0.5, header_timeout=0.5)

    with kept_alive_after_a_review(server, client_context) as sock:
        assert closed_by_server(sock)


def test_at_the_connection_limit_sockets_that_never_handshake_are_shed_for_a_new_client(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_connections=20)
    sockets.extend(socket.create_connection(server.address) for _ in range(40))

    legitimate_review_is_answered(server, client_context)
    assert closed_by_server(sockets[0]), "the oldest idle socket was not the one shed"


def test_at_the_connection_limit_a_client_whose_request_is_whole_is_never_shed(
    start_server: StartServer,
    client_context: ssl.SSLContext,
    sockets: list[socket.socket],
    slow_review: SlowReview,
) -> None:
    server = start_server(max_connections=2)
    whole = tls_connection(server, client_context)
    sockets.append(whole)
    whole.sendall(review_bytes(uid="slow"))
    wait_for(slow_review.answering.is_set, "the slow review to reach the app")
    sockets.extend(socket.create_connection(server.address) for _ in range(5))
    legitimate_review_is_answered(server, client_context)
    slow_review.release.set()

    assert read_status(whole) == 200


def test_at_the_connection_limit_a_kept_alive_client_outlasts_bodies_stalled_after_a_burst(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_connections=3, **FAR)
    with kept_alive_after_a_review(server, client_context) as kept:
        time.sleep(0.5)  # idle for longer than the bursts below will have stalled
        for _ in range(2):  # a burst earns no credit against the minimum rate
            stalled = tls_connection(server, client_context)
            stalled.sendall(post_head(64 * 1024) + b" " * (64 * 1024 - 1))
            sockets.append(stalled)
        legitimate_review_is_answered(server, client_context)  # one of the three is shed
        kept.settimeout(GENEROUS_DEADLINE)
        kept.sendall(review_bytes())

        assert read_status(kept) == 200


def test_at_the_connection_limit_a_client_is_spared_from_its_first_whole_request_on(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_connections=3)
    with kept_alive_after_a_review(server, client_context) as kept:
        # Newer than its answer, and in before the edge's next sweep.
        sockets.extend(socket.create_connection(server.address) for _ in range(2))
        legitimate_review_is_answered(server, client_context)  # one of the three is shed
        kept.settimeout(GENEROUS_DEADLINE)
        kept.sendall(review_bytes())

        assert read_status(kept) == 200


def test_at_the_connection_limit_a_blank_line_does_not_count_as_a_request(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_connections=2, **FAR)
    blank = tls_connection(server, client_context)
    sockets.append(blank)
    blank.sendall(b"\r\n\r\n")  # waitress reads it as no request at all
    time.sleep(0.3)  # older than the socket below
    sockets.append(socket.create_connection(server.address))
    legitimate_review_is_answered(server, client_context)  # one of the two is shed

    assert closed_by_server(blank)


def test_at_the_connection_limit_a_body_waiting_for_the_byte_budget_is_shed_for_a_new_client(
    start_server: StartServer,
    client_context: ssl.SSLContext,
    sockets: list[socket.socket],
    slow_review: SlowReview,
) -> None:
    cap = 128 * 1024
    server = start_server(max_connections=2, max_body_bytes=cap, max_buffered_bytes=cap, **FAR)
    review = build_review(uid="slow")
    review["request"]["object"]["metadata"]["annotations"] = {"padding": "x" * 100_000}
    body = json.dumps(review).encode()
    whole = tls_connection(server, client_context)  # a large body: it holds the whole budget
    sockets.append(whole)
    whole.sendall(post_head(len(body)) + body)
    wait_for(slow_review.answering.is_set, "the large review to reach the app")
    waiting = tls_connection(server, client_context)
    sockets.append(waiting)
    waiting.sendall(post_head(100_000))  # waits, unread, for the budget
    time.sleep(0.2)
    legitimate_review_is_answered(server, client_context)
    slow_review.release.set()

    assert read_status(whole) == 200
    assert closed_by_server(waiting)


def test_the_open_files_limit_is_raised_to_the_hard_one_and_logged_with_the_connection_limit(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pod_labeler.serving")
    start_server()
    serving = next(record for record in caplog.records if record.getMessage() == "serving")
    logged = serving.fields  # type: ignore[attr-defined]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    assert soft == hard or hard == resource.RLIM_INFINITY
    assert (logged["open_files_soft"], logged["open_files_hard"]) == (soft, hard)
    assert logged["max_connections"] == connection_limit(soft, None)


def test_a_content_length_over_the_cap_gets_413_before_the_body_is_sent(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server(max_body_bytes=3 * 1024 * 1024, max_buffered_bytes=16 * 1024 * 1024)
    head = (
        "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        f"Content-Length: {5_500_000}\r\n\r\n"
    ).encode()

    response = exchange(server, client_context, head)

    assert response.status == 413


def test_a_chunked_body_over_the_cap_gets_413(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server(max_body_bytes=1024, max_buffered_bytes=64 * 1024)
    chunk = b"x" * 2048
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + chunk + b"\r\n0\r\n\r\n"
    )

    assert exchange(server, client_context, request).status == 413


def test_clients_stalled_in_large_bodies_cannot_keep_a_review_out(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    limit = 4 * 1024 * 1024
    server = start_server(max_body_bytes=1024 * 1024, max_buffered_bytes=limit)
    declared = 1024 * 1024
    for _ in range(12):
        stalled = client_context.wrap_socket(
            socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"
        )
        stalled.setblocking(False)
        stalled.send(
            b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
        )
        _send_what_fits(stalled, b"{" * (declared - 100))
        sockets.append(stalled)

    legitimate_review_is_answered(server, client_context)
    assert server.buffered_bytes() <= limit + 12 * 64 * 1024


def test_pipelined_requests_from_a_client_that_never_reads_take_no_budget(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server()
    flood = client_context.wrap_socket(
        socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"
    )
    sockets.append(flood)
    flood.setblocking(False)
    _send_what_fits(flood, b"GET /healthz HTTP/1.1\r\nHost: webhook\r\n\r\n" * 200_000)

    legitimate_review_is_answered(server, client_context)
    # One read of the next requests may have come in before reading paused.
    assert server.buffered_bytes() <= 64 * 1024


def server_socket_kernel_bytes(port: int) -> int:
    """What the kernel holds for the server's side of each connection on `port`:
    received and unread, sent and unacknowledged, and queued to send (ss's skmem)."""
    listed = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.findall(r"skmem:\(r(\d+),rb\d+,t(\d+),tb\d+,f\d+,w(\d+)", listed)
    assert found, f"ss listed no connection on port {port}"
    return sum(int(received) + int(sent) + int(queued) for received, sent, queued in found)


def test_clients_that_send_without_reading_are_held_to_small_kernel_buffers(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server()
    clients = 100
    for _ in range(clients):
        flood = client_context.wrap_socket(
            socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"
        )
        sockets.append(flood)
        flood.setblocking(False)
        _send_what_fits(flood, b"GET /healthz HTTP/1.1\r\nHost: webhook\r\n\r\n" * 3_000)

    held = wait_for(
        lambda: server_socket_kernel_bytes(server.address[1]) or None,
        "ss to list the server's connections",
    )
    # Send and receive buffers of SOCKET_BUFFER_BYTES, which Linux doubles.
    assert held <= clients * 4 * SOCKET_BUFFER_BYTES


def test_a_request_waitress_would_frame_differently_is_refused_and_its_connection_closed(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    # HTTP/1.0 with chunked: waitress reads no body, so the "chunk" would be taken
    # for a request of its own, and its answer for the next request's.
    server = start_server()
    smuggling = (
        b"GET /healthz HTTP/1.0\r\nHost: webhook\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"ADD ;x HTTP/1.1\r\nHost: webhook\r\nContent-Length: 100\r\n\r\n0\r\n\r\n"
    )
    sock = client_context.wrap_socket(
        socket.create_connection(server.address, timeout=5), server_hostname="127.0.0.1"
    )
    with sock:
        sock.sendall(smuggling)
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        response.read()

        assert response.status == 400
        assert closed_by_server(sock)


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (
            b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nContent-Length: 0\r\n\r\n",
            400,  # an empty review
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: webhook\r\nExpect: 100-continue\r\n\r\n", 200),
    ],
    ids=["POST with an empty body", "GET"],
)
def test_expect_100_continue_with_no_body_gets_its_answer_and_the_next_request_too(
    start_server: StartServer, client_context: ssl.SSLContext, request_head: bytes, status: int
) -> None:
    server = start_server()
    sock = client_context.wrap_socket(
        socket.create_connection(server.address, timeout=5), server_hostname="127.0.0.1"
    )
    with sock:
        sock.sendall(request_head + review_bytes())
        answers = []
        for _ in range(2):
            response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
            response.begin()
            response.read()
            answers.append(response.status)

    assert answers == [status, 200]


def test_a_head_of_the_largest_size_is_served_and_one_byte_more_gets_431(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    start = b"GET /healthz HTTP/1.1\r\nHost: webhook\r\nX-Padding: "
    largest = server.config.edge.max_header_bytes  # the blank line included
    head = start + b"x" * (largest - len(start) - 4) + b"\r\n\r\n"

    assert exchange(server, client_context, head).status == 200
    assert exchange(server, client_context, b"\r\n" + head).status == 431


def _send_what_fits(sock: ssl.SSLSocket | socket.socket, data: bytes) -> None:
    """Send until the server stops reading (its budget is spent), closes the connection
    (it shed it: what an attacker past the limit sees), or all is sent."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view[: 64 * 1024])
        except (ssl.SSLWantWriteError, BlockingIOError, BrokenPipeError, ConnectionResetError):
            return
        view = view[sent:]


@contextmanager
def busy_clients(
    server: WebhookServer, context: ssl.SSLContext, count: int
) -> Iterator[dict[str, int]]:
    """`count` threads posting reviews on kept-alive connections, reconnecting when the
    server says `Connection: close`; counts what was sent, answered and lost."""
    tally = {"sent": 0, "answered": 0, "lost": 0, "closes": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        connection: http.client.HTTPSConnection | None = None
        while not stop.is_set():
            if connection is None:
                try:
                    connection = http.client.HTTPSConnection(
                        *server.address, context=context, timeout=10
                    )
                    connection.connect()
                except OSError:
                    connection = None  # the listener is closed: nothing was sent
                    continue
            with lock:
                tally["sent"] += 1
            try:
                connection.request(
                    "POST",
                    "/mutate",
                    body=json.dumps(build_review()),
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    tally["lost"] += 1
                connection.close()
                connection = None
                continue
            with lock:
                tally["answered"] += 1
            if response.getheader("Connection") == "close":
                with lock:
                    tally["closes"] += 1
                connection.close()
                connection = None

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield tally
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def test_while_draining_every_response_closes_its_connection(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    connection = http.client.HTTPSConnection(*server.address, context=client_context, timeout=10)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read()

    server.stop_being_ready()
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()

    assert response.getheader("Connection") == "close"
    connection.close()


def test_16_busy_keep_alive_clients_lose_no_request_across_a_drain(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server()
    with busy_clients(server, client_context, 16) as tally:
        wait_for(lambda: tally["answered"] > 200, "the clients to get going")
        server.stop_being_ready()
        wait_for(lambda: tally["closes"] >= 16, "every client to be told to close")
        drained = server.shutdown()

    assert drained
    assert tally["lost"] == 0, tally
    assert tally["sent"] == tally["answered"]


# --- issue 20: slow clients hold no slot and no byte for long -----------------------
# Each test sets the deadlines it does not test far away, so that only the behaviour
# under test can let the legitimate client through; that client gets several seconds.
GENEROUS_DEADLINE = 5.0
FAR = {"header_timeout": 60.0, "request_timeout": 60.0}


def post_head(length: int | str) -> bytes:
    return (
        "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_clients_trickling_their_bodies_cannot_hold_every_connection_slot(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_connections=20, **FAR)
    for _ in range(20):
        trickler = tls_connection(server, client_context)
        trickler.sendall(post_head(3000) + b"{")
        sockets.append(trickler)
    for trickler in sockets:
        trickler.sendall(b" ")  # still arriving, a byte at a time

    legitimate_review_is_answered(server, client_context, deadline=GENEROUS_DEADLINE)


def test_a_body_arriving_below_the_minimum_rate_gets_408(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server(header_timeout=0.5, request_timeout=60.0, min_request_rate=1024)
    with tls_connection(server, client_context) as sock:
        sock.sendall(post_head(3000) + b"{")

        assert read_status(sock) == 408
        assert closed_by_server(sock)


def test_bodies_stalled_one_byte_short_of_64_kib_leave_a_kept_alive_review_unpaused(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_body_bytes=64 * 1024, max_buffered_bytes=256 * 1024, **FAR)
    with kept_alive_after_a_review(server, client_context) as kept:
        for _ in range(8):  # twice the byte budget, were small bodies counted in it
            stalled = tls_connection(server, client_context)
            stalled.sendall(post_head(64 * 1024) + b" " * (64 * 1024 - 1))
            sockets.append(stalled)
        request = review_bytes()
        head_end = request.index(b"\r\n\r\n") + 4
        kept.settimeout(GENEROUS_DEADLINE)
        kept.sendall(request[:head_end])  # the head and the body in two reads
        kept.sendall(request[head_end:])

        assert read_status(kept) == 200


def test_clients_pipelining_metrics_requests_cannot_take_the_admission_ports_slots(
    start_server: StartServer, client_context: ssl.SSLContext, sockets: list[socket.socket]
) -> None:
    server = start_server(max_connections=20, **FAR)
    for _ in range(40):
        flood = socket.create_connection(server.metrics_address, timeout=10)
        flood.setblocking(False)
        sockets.append(flood)
        _send_what_fits(flood, b"GET /metrics HTTP/1.1\r\nHost: webhook\r\n\r\n" * 2000)

    legitimate_review_is_answered(server, client_context, deadline=GENEROUS_DEADLINE)


def test_a_content_length_of_thousands_of_digits_gets_400_without_a_traceback(
    start_server: StartServer, client_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()

    response = exchange(server, client_context, post_head("9" * 5000))

    assert response.status == 400
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def half_closed_exchange(server: WebhookServer, context: ssl.SSLContext, request: bytes) -> int:
    """Send `request` over TLS, then shut the socket's write side (a TCP half-close),
    and read the answer: TLS run by hand on memory BIOs, as ssl.SSLSocket cannot."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(server.address, timeout=10) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        tls.write(request)
        sock.sendall(outgoing.read())
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while data := sock.recv(65536):
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                while chunk := tls.read(65536):
                    answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_request_followed_by_a_half_close_is_answered_over_tls(
    start_server: StartServer, client_context: ssl.SSLContext
) -> None:
    server = start_server()

    assert half_closed_exchange(server, client_context, review_bytes()) == 200


def test_a_request_followed_by_a_half_close_is_answered_on_the_metrics_port(
    start_server: StartServer,
) -> None:
    server = start_server()
    with socket.create_connection(server.metrics_address, timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: webhook\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)

        assert read_status(sock) == 200
