"""The real server: HTTPS through the TLS front to waitress, rotation, bad input, draining.

Runs on 127.0.0.1 with a throwaway CA. Nothing here asserts a duration: every wait
polls for a condition with a timeout and names what it waited for.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.edge.limits import MEMORY_PER_CONNECTION, EdgeLimits, MiB
from app.serving import WebhookServer
from tests.certs import KeyPair
from tests.unit.conftest import (
    MountedSecret,
    build_review,
    post_review,
    sample,
    served_certificate,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
Connect = Callable[[], http.client.HTTPSConnection]


OpenTLS = Callable[[], ssl.SSLSocket]


@pytest.fixture
def open_tls(server: WebhookServer, client_context: ssl.SSLContext) -> Iterator[OpenTLS]:
    """Opens raw TLS sockets to the server, for requests sent in pieces."""
    opened: list[ssl.SSLSocket] = []

    def open_socket() -> ssl.SSLSocket:
        sock = tls_socket(server.address, client_context)
        opened.append(sock)
        return sock

    yield open_socket
    for sock in opened:
        sock.close()


def tls_socket(address: tuple[str, int], context: ssl.SSLContext) -> ssl.SSLSocket:
    return context.wrap_socket(
        socket.create_connection(address, timeout=10), server_hostname=address[0]
    )


def request_bytes(review: dict[str, Any]) -> bytes:
    body = json.dumps(review).encode()
    head = (
        "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, Any]]:
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    return response.status, json.loads(response.read())


def refuses_connections(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        pass  # queued in the backlog as the listener closed: ask again
    return False


def closed_by_server(sock: ssl.SSLSocket) -> bool:
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True


def test_reviews_are_answered_over_https_on_one_kept_alive_connection(connect: Connect) -> None:
    connection = connect()
    sock = connection.sock

    answers = [post_review(connection, build_review({"n": str(n)})) for n in range(3)]

    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(answer["response"]["patchType"] == "JSONPatch" for _, answer in answers)
    assert connection.sock is sock, "http.client reconnected: keep-alive was not kept"


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/readyz", 200)])
def test_health_endpoints_are_served_on_the_tls_port(
    connect: Connect, path: str, status: int
) -> None:
    connection = connect()
    connection.request("GET", path)

    assert connection.getresponse().status == status


@pytest.fixture
def metrics_port(server: WebhookServer) -> Iterator[http.client.HTTPConnection]:
    """A plain-HTTP connection to the metrics port."""
    connection = http.client.HTTPConnection(*server.metrics_address, timeout=10)
    yield connection
    connection.close()


def test_metrics_are_served_over_plain_http_on_their_own_port(
    metrics_port: http.client.HTTPConnection, connect: Connect
) -> None:
    post_review(connect(), build_review())
    metrics_port.request("GET", "/metrics")

    text = metrics_port.getresponse().read().decode()

    assert 'pod_labeler_reviews_total{outcome="patched"} 1.0' in text
    assert "pod_labeler_certificate_expiry_timestamp_seconds" in text


def test_metrics_are_not_served_on_the_admission_port(connect: Connect) -> None:
    connection = connect()
    connection.request("GET", "/metrics")

    assert connection.getresponse().status == 404


@pytest.mark.parametrize(
    "target",
    ["/metrics#x", "/%6Detrics", "//metrics", "http://webhook/metrics", "/mutate/../metrics"],
)
def test_no_spelling_of_metrics_is_served_on_the_admission_port(
    server: WebhookServer, client_context: ssl.SSLContext, target: str
) -> None:
    assert get_status(server.address, client_context, target) == 404


@pytest.mark.parametrize(
    "framing",
    ["Content-Length: 1000\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\n5\r\n"],
    ids=["length", "chunked"],
)
def test_the_metrics_port_refuses_a_body_before_holding_any_of_it(
    server: WebhookServer, framing: str
) -> None:
    with socket.create_connection(server.metrics_address, timeout=5) as sock:
        sock.sendall(f"POST /metrics HTTP/1.1\r\nHost: webhook\r\n{framing}".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()

    assert response.status == 413


@pytest.mark.parametrize("path", ["/mutate", "/healthz", "/metrics/"])
def test_the_metrics_port_serves_nothing_but_metrics(
    metrics_port: http.client.HTTPConnection, path: str
) -> None:
    metrics_port.request("GET", path)

    assert metrics_port.getresponse().status == 404


def test_tls_below_1_2_is_not_offered(server: WebhookServer) -> None:
    assert server.certificates.context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_tls_1_2_client_is_served(server: WebhookServer, client_context: ssl.SSLContext) -> None:
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2

    with tls_socket(server.address, client_context) as sock:
        sock.sendall(request_bytes(build_review()))

        assert sock.version() == "TLSv1.2"
        assert read_response(sock)[0] == 200


def test_a_malformed_review_gets_400_and_the_same_connection_serves_the_next(
    connect: Connect,
) -> None:
    connection = connect()

    status, answer = post_review(connection, None, body=b'{"apiVersion": ')
    assert status == 400
    assert "not valid JSON" in answer["response"]["status"]["message"]

    assert post_review(connection, build_review())[0] == 200


def test_a_body_over_the_cap_gets_413_and_the_next_request_is_served(connect: Connect) -> None:
    connection = connect()
    connection.request("POST", "/mutate", body=b"x" * (64 * 1024 + 1))

    assert connection.getresponse().status == 413
    assert post_review(connection, build_review())[0] == 200


def test_a_chunked_body_is_accepted(connect: Connect) -> None:
    connection = connect()
    body = json.dumps(build_review()).encode()
    connection.request(
        "POST",
        "/mutate",
        body=iter([body[:100], body[100:]]),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )

    assert connection.getresponse().status == 200


def test_plain_http_on_the_tls_port_fails_and_https_is_still_served(
    server: WebhookServer, connect: Connect
) -> None:
    with socket.create_connection(server.address, timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert not plain.recv(1024).startswith(b"HTTP/")  # a TLS alert, or nothing

    assert post_review(connect(), build_review())[0] == 200


def test_garbage_instead_of_http_gets_400_and_https_is_still_served(
    server: WebhookServer, client_context: ssl.SSLContext, connect: Connect
) -> None:
    with tls_socket(server.address, client_context) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        assert response.status == 400

    assert post_review(connect(), build_review())[0] == 200


class RequestLoop:
    """Sends reviews until stopped, half on one kept-alive connection and half on
    a new connection each time, and keeps every failure."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._stop = threading.Event()
        self.failures: list[str] = []
        self.served = 0
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        kept = self._connect()
        while not self._stop.is_set():
            fresh = self._connect()
            for connection in (kept, fresh):
                try:
                    status, _ = post_review(connection, build_review())
                except (OSError, http.client.HTTPException) as error:
                    self.failures.append(repr(error))
                    continue
                if status != 200:
                    self.failures.append(f"status {status}")
                self.served += 1
            fresh.close()


def test_new_handshakes_use_a_rotated_certificate_without_a_failed_request(
    connect: Connect, secret: MountedSecret, first_pair: KeyPair, second_pair: KeyPair
) -> None:
    existing = connect()
    assert served_certificate(existing) == first_pair.der

    with RequestLoop(connect) as loop:
        wait_for(lambda: loop.served > 10, "requests to flow before the rotation")
        secret.install(second_pair)
        wait_for(
            lambda: served_certificate(connect()) == second_pair.der,
            "a new TLS connection to be served the rotated certificate",
        )
        served_at_rotation = loop.served
        wait_for(lambda: loop.served > served_at_rotation + 10, "requests after the rotation")

    assert loop.failures == []
    assert post_review(existing, build_review())[0] == 200, "an existing connection broke"


def test_a_mismatched_pair_keeps_the_old_certificate_serving(
    server: WebhookServer,
    connect: Connect,
    secret: MountedSecret,
    first_pair: KeyPair,
    second_pair: KeyPair,
) -> None:
    secret.write(second_pair.cert_pem, first_pair.key_pem)
    wait_for(
        lambda: sample(server.metrics, "pod_labeler_certificate_reloads_total", result="failure"),
        "the reloader to try the mismatched pair",
    )

    connection = connect()

    assert served_certificate(connection) == first_pair.der
    assert post_review(connection, build_review())[0] == 200


def test_shutdown_answers_an_in_flight_request_and_closes_idle_connections(
    server: WebhookServer, open_tls: OpenTLS
) -> None:
    idle = open_tls()
    idle.sendall(request_bytes(build_review()))
    assert read_response(idle)[0] == 200
    in_flight = open_tls()
    request = request_bytes(build_review())
    in_flight.sendall(request[:50])
    shutdown = threading.Thread(target=server.shutdown)

    shutdown.start()
    wait_for(lambda: refuses_connections(server.address), "the server to stop accepting")
    wait_for(lambda: closed_by_server(idle), "the idle connection to be closed")
    in_flight.sendall(request[50:])
    status, answer = read_response(in_flight)
    shutdown.join()

    assert status == 200
    assert answer["response"]["patchType"] == "JSONPatch"
    assert closed_by_server(in_flight)


def test_readyz_fails_once_shutdown_has_begun(server: WebhookServer, open_tls: OpenTLS) -> None:
    sock = open_tls()
    probe = b"GET /readyz HTTP/1.1\r\nHost: webhook\r\n\r\n"
    sock.sendall(probe[:10])
    shutdown = threading.Thread(target=server.shutdown)

    shutdown.start()
    wait_for(lambda: refuses_connections(server.address), "the server to stop accepting")
    sock.sendall(probe[10:])
    status, body = read_response(sock)
    shutdown.join()

    assert (status, body["reason"]) == (503, "shutting down")


class ServerProcess:
    """`python -m app.main serve` in a subprocess, with its JSON log lines collected."""

    def __init__(self, secret: MountedSecret, *extra: str, open_files: int | None = None) -> None:
        def limit_open_files() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.main", "serve"),
                *("--tls-cert", str(secret.cert_path), "--tls-key", str(secret.key_path)),
                *("--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", *extra),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit_open_files,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.logs: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for_log(self, message: str) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            while not self.lines.empty():
                line = self.lines.get()
                self.logs.append(json.loads(line) if line.startswith("{") else {"msg": line})
            return next((log for log in self.logs if log.get("msg") == message), None)

        found: dict[str, Any] = wait_for(seen, f"the server to log {message!r}")
        return found

    @property
    def address(self) -> tuple[str, int]:
        serving = self.wait_for_log("serving")
        return serving["host"], serving["port"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join()  # it ends at the pipe's EOF
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def server_process(secret: MountedSecret) -> Iterator[ServerProcess]:
    process = ServerProcess(secret, "--shutdown-delay=0")
    yield process
    process.stop()


@pytest.fixture
def delayed_server_process(secret: MountedSecret) -> Iterator[ServerProcess]:
    # Long enough for two handshakes on a loaded 2-core machine; the test waits for
    # nothing but the exit, so a longer delay costs only this test's own time.
    process = ServerProcess(secret, "--shutdown-delay=6")
    yield process
    process.stop()


def get_status(address: tuple[str, int], context: ssl.SSLContext, path: str) -> int:
    sock = tls_socket(address, context)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: webhook\r\n\r\n".encode())
    status, _ = read_response(sock)
    sock.close()
    return status


def test_during_the_shutdown_delay_new_connections_are_served_and_readyz_fails(
    delayed_server_process: ServerProcess, client_context: ssl.SSLContext
) -> None:
    address = delayed_server_process.address

    delayed_server_process.process.send_signal(signal.SIGTERM)
    delayed_server_process.wait_for_log("signal received")
    readyz = get_status(address, client_context, "/readyz")
    sock = tls_socket(address, client_context)
    sock.sendall(request_bytes(build_review()))
    review_status, _ = read_response(sock)
    sock.close()

    assert readyz == 503
    assert review_status == 200
    assert delayed_server_process.process.wait(timeout=30) == 0


def test_sigterm_finishes_the_in_flight_request_and_exits_0(
    server_process: ServerProcess, client_context: ssl.SSLContext
) -> None:
    address = server_process.address
    sock = tls_socket(address, client_context)
    request = request_bytes(build_review())
    sock.sendall(request[:50])

    server_process.process.send_signal(signal.SIGTERM)
    wait_for(lambda: refuses_connections(address), "the server to stop accepting after SIGTERM")
    sock.sendall(request[50:])
    status, _ = read_response(sock)

    sock.close()
    assert status == 200
    assert server_process.process.wait(timeout=10) == 0
    assert server_process.wait_for_log("stopped")["drained"] is True


def test_sigint_also_drains_and_exits_0(server_process: ServerProcess) -> None:
    server_process.wait_for_log("serving")

    server_process.process.send_signal(signal.SIGINT)

    assert server_process.process.wait(timeout=10) == 0


def test_the_server_logs_each_review_as_one_json_line(
    server_process: ServerProcess, client_context: ssl.SSLContext
) -> None:
    host, port = server_process.address
    connection = http.client.HTTPSConnection(host, port, context=client_context, timeout=10)
    post_review(connection, build_review({"environment": "dev"}))
    connection.close()

    line = server_process.wait_for_log("review")

    assert line["labels_overwritten"] == [{"key": "environment", "old": "dev", "new": "production"}]
    assert line["outcome"] == "patched"


def test_an_invalid_label_stops_the_real_command_with_status_2(secret: MountedSecret) -> None:
    server = ServerProcess(secret, "--label", "bad key=x")

    status = server.process.wait(timeout=10)
    server.stop()

    assert status == 2
    assert "invalid label key 'bad key'" in "".join(server.lines.queue)


def test_a_flood_of_sockets_under_a_low_open_files_limit_stops_neither_service_nor_the_log(
    secret: MountedSecret, client_context: ssl.SSLContext
) -> None:
    process = ServerProcess(secret, "--shutdown-delay=0", open_files=128)
    flood: list[socket.socket] = []
    try:
        host, port = process.address
        flood.extend(socket.create_connection((host, port)) for _ in range(300))
        with tls_socket((host, port), client_context) as legitimate:
            legitimate.settimeout(1.0)
            legitimate.sendall(request_bytes(build_review()))
            status, _ = read_response(legitimate)
        process.wait_for_log("serving")
        accept_failures = [
            log for log in process.logs if log.get("msg") == "cannot accept connections"
        ]
    finally:
        for sock in flood:
            sock.close()
        process.stop()

    assert status == 200
    assert len(accept_failures) <= 1
    assert not any("Traceback" in str(log.get("msg")) for log in process.logs)


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled_resident_bytes(pid: int) -> int:
    """The resident size once it has stopped growing for half a second."""
    last, steady_since, deadline = resident_bytes(pid), time.monotonic(), time.monotonic() + 20
    while time.monotonic() - steady_since < 0.5 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = resident_bytes(pid)
        if now > last:
            last, steady_since = now, time.monotonic()
    return last


def stall_inside_a_large_body(address: tuple[str, int], context: ssl.SSLContext) -> ssl.SSLSocket:
    """A client that declares a 2 MiB body, sends what the server will take of 256 KiB
    of it without waiting, and then sends nothing more."""
    sock = tls_socket(address, context)
    sock.sendall(
        b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (2 * MiB)
    )
    sock.setblocking(False)
    with contextlib.suppress(ssl.SSLWantWriteError, BlockingIOError):
        sock.send(b" " * (256 * 1024))
    return sock


def test_connections_stalled_inside_large_bodies_cost_no_more_memory_than_the_limit_counts(
    server_process: ServerProcess, client_context: ssl.SSLContext
) -> None:
    # The memory-sized connection limit (app.edge.limits.connection_limit) counts
    # MEMORY_PER_CONNECTION for each connection beside the byte budget.
    address, pid = server_process.address, server_process.process.pid
    post_review_over_tls(address, client_context)  # what the first review builds lazily
    before = settled_resident_bytes(pid)
    stalled: list[ssl.SSLSocket] = []
    try:
        stalled.extend(stall_inside_a_large_body(address, client_context) for _ in range(300))
        grown = settled_resident_bytes(pid) - before
    finally:
        for sock in stalled:
            sock.close()

    assert grown <= len(stalled) * MEMORY_PER_CONNECTION + EdgeLimits().max_buffered_bytes


def post_review_over_tls(address: tuple[str, int], context: ssl.SSLContext) -> None:
    with tls_socket(address, context) as sock:
        sock.sendall(request_bytes(build_review()))
        status, _ = read_response(sock)
    assert status == 200
