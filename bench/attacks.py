"""Each attack on the serving edge at the connection limit, with legitimate reviews
meanwhile, beside issue 20's target: at least 95 % of them answered within 1 s.

    python -m bench.attacks [--reviews 100] [--attack NAME ...]

Starts our server as `bench.server` does (TLS, the default label) with the connection
limit that the chart's 256Mi memory limit sizes (804), then runs each attack in turn
from a process of its own. The attacker opens as many connections as the limit allows
(issues 11 and 20 used about that many), keeps each doing what the attack does, and
opens a new one whenever the server closes or sheds one. Once they are open,
legitimate reviews go out 0.2 s apart, alternately on a new TLS connection and on a
kept-alive one (opened before the attack) whose head and body are sent in two writes,
as the API server's are. Prints, for each attack, how many reviews were answered
within 1 s, their p50 and p95, the server's memory, the attacker's reconnections and
the error lines the server logged. Asserts nothing: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import select
import socket
import ssl
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

from app.edge.limits import EdgeLimits, MiB, connection_limit, raise_open_files_limit
from bench.server import (
    free_port,
    ours_argv,
    pod_review,
    process,
    resident_mib,
    serving_certificate,
)

CHART_MEMORY_LIMIT = 256 * MiB
DEADLINE = 1.0  # issue 20: answered within 1 s
TARGET = 0.95
REVIEW_INTERVAL = 0.2
TICK = 1.0  # how often each attacking connection does its next step
CONNECT_TIMEOUT = 2.0  # an attacker waiting in the backlog gives up and tries later


@dataclass(frozen=True)
class Ports:
    admission: int
    metrics: int
    context: ssl.SSLContext


def _tls(ports: Ports) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", ports.admission), timeout=CONNECT_TIMEOUT)
    try:
        return ports.context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def _head(length: int | str) -> bytes:
    return (
        "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _send_what_fits(sock: socket.socket, data: bytes) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):  # full buffers: it never reads its answers
        sock.send(data)


@dataclass(frozen=True)
class Attack:
    name: str
    what: str
    opened: Callable[[Ports], socket.socket]  # one attacking connection, its first bytes sent
    tick: Callable[[socket.socket], None] | None = None  # each connection's next step
    # Renewed when the server answers or closes (else, as for a client that never
    # reads its answers, only when a send fails).
    renew_when_readable: bool = True
    metrics_port: bool = False


def _idle_tcp(ports: Ports) -> socket.socket:
    return socket.create_connection(("127.0.0.1", ports.admission), timeout=CONNECT_TIMEOUT)


def _trickling_head(ports: Ports) -> socket.socket:
    sock = _tls(ports)
    sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: webhook\r\n")
    return sock


def _trickling_body(ports: Ports) -> socket.socket:
    sock = _tls(ports)
    sock.sendall(_head(3000) + b"{")
    return sock


def _body_short_of_64_kib(ports: Ports) -> socket.socket:
    sock = _tls(ports)
    sock.sendall(_head(64 * 1024) + b" " * (64 * 1024 - 1))
    return sock


def _large_body_stalled(ports: Ports) -> socket.socket:
    sock = _tls(ports)
    sock.sendall(_head(EdgeLimits().max_body_bytes) + b" " * (64 * 1024))
    return sock


def _giant_content_length(ports: Ports) -> socket.socket:
    sock = _tls(ports)
    sock.sendall(_head("9" * 5000) + b"{}")
    return sock


METRICS_PIPELINE = b"GET /metrics HTTP/1.1\r\nHost: webhook\r\n\r\n" * 2000


def _metrics_pipeline(ports: Ports) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", ports.metrics), timeout=CONNECT_TIMEOUT)
    _send_what_fits(sock, METRICS_PIPELINE)
    return sock


ATTACKS = (
    Attack("idle-tcp", "TCP sockets that never start a handshake (issue 11)", _idle_tcp),
    Attack("idle-tls", "TLS connections that never send a request (issue 11)", _tls),
    Attack(
        "trickling-heads",
        "TLS, a request head one byte a second (issue 11)",
        _trickling_head,
        lambda sock: sock.sendall(b"X"),
    ),
    Attack(
        "trickling-bodies",
        "TLS, a whole head, then its body one byte a second (issue 20)",
        _trickling_body,
        lambda sock: sock.sendall(b" "),
    ),
    Attack(
        "bodies-short-of-64-kib",
        "TLS, a 64 KiB body all but its last byte, then nothing (issue 20)",
        _body_short_of_64_kib,
    ),
    Attack(
        "large-bodies-stalled",
        "TLS, a 3 MiB body declared, 64 KiB of it sent, then nothing (issue 11)",
        _large_body_stalled,
    ),
    Attack(
        "metrics-pipelining",
        "plain HTTP to the metrics port, GET /metrics pipelined, never read (issue 20)",
        _metrics_pipeline,
        lambda sock: _send_what_fits(sock, METRICS_PIPELINE),
        renew_when_readable=False,
        metrics_port=True,
    ),
    Attack(
        "giant-content-length",
        "TLS, a Content-Length of 5,000 digits, again on a new connection (issue 20)",
        _giant_content_length,
    ),
)


def _attacker(
    attack: Attack, ports: Ports, count: int, ready: Synchronized[int], renewed: Synchronized[int]
) -> None:
    """The attack's process: `count` connections kept up until it is terminated."""
    raise_open_files_limit()
    connections = [_opened_or_none(attack, ports) for _ in range(count)]
    ready.value = sum(sock is not None for sock in connections)
    while True:
        time.sleep(TICK)
        answered = _readable(connections) if attack.renew_when_readable else set()
        for index, sock in enumerate(connections):
            try:
                if sock is None or sock.fileno() in answered:
                    raise ConnectionError("closed or answered")
                if attack.tick is not None:
                    attack.tick(sock)
            except (OSError, ssl.SSLError):
                if sock is not None:
                    sock.close()
                connections[index] = _opened_or_none(attack, ports)
                renewed.value += 1


def _readable(connections: list[socket.socket | None]) -> set[int]:
    """The descriptors with an answer or an end to read (poll: select stops at 1,024)."""
    poller = select.poll()
    for sock in connections:
        if sock is not None:
            poller.register(sock, select.POLLIN)
    return {descriptor for descriptor, _ in poller.poll(0)}


def _opened_or_none(attack: Attack, ports: Ports) -> socket.socket | None:
    try:
        return attack.opened(ports)
    except (OSError, ssl.SSLError):
        return None  # shed at once, or waiting in the backlog: tried again next tick


@dataclass(frozen=True)
class Outcome:
    attack: str
    attackers: int
    answered: int
    reviews: int
    p50_ms: float
    p95_ms: float
    rss_mib: float
    renewed: int
    error_lines: int
    missed: Counter[str]  # why each review that was not answered within 1 s was not


class LegitimateClient:
    """The API server's side: reviews on new connections and on a kept-alive one."""

    def __init__(self, ports: Ports, body: bytes) -> None:
        self.ports, self.body = ports, body
        self.kept: ssl.SSLSocket | None = None

    def review(self, kept_alive: bool) -> float | str:
        """Seconds to the answer of one review, or why it was not a 200 within DEADLINE."""
        kind = "kept-alive" if kept_alive else "new"
        started = time.perf_counter()
        head = _head(len(self.body))
        try:
            if kept_alive:
                sock = self.kept = self.kept or self._connect()
                sock.settimeout(DEADLINE)
                sock.sendall(head)  # the head and the body in two writes
                sock.sendall(self.body)
                status = _status(sock)
            else:
                with self._connect() as sock:
                    sock.sendall(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
                    sock.sendall(self.body)
                    status = _status(sock)
        except (OSError, ssl.SSLError, http.client.HTTPException) as error:
            if kept_alive:
                self.close()
            return f"{kind}: {type(error).__name__}"
        elapsed = time.perf_counter() - started
        if status != 200:
            return f"{kind}: status {status}"
        return elapsed if elapsed <= DEADLINE else f"{kind}: answered after {elapsed:.1f} s"

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.ports.admission), timeout=DEADLINE)
        return self.ports.context.wrap_socket(raw, server_hostname="localhost")

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()
        self.kept = None


def _status(sock: socket.socket) -> int:
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def run_attack(
    attack: Attack, ports: Ports, count: int, reviews: int, pid: int, log: Path
) -> Outcome:
    client = LegitimateClient(ports, pod_review())
    if not isinstance(first := client.review(kept_alive=True), float):
        raise SystemExit(f"no answer before {attack.name} ({first}); see {log}")
    fork = multiprocessing.get_context("fork")
    ready, renewed = fork.Value("i", -1), fork.Value("i", 0)
    attacker = fork.Process(target=_attacker, args=(attack, ports, count, ready, renewed))
    logged_before = _error_lines(log)
    attacker.start()
    try:
        while ready.value < 0 and attacker.is_alive():
            time.sleep(0.1)
        results = []
        for index in range(reviews):
            started = time.monotonic()
            results.append(client.review(kept_alive=index % 2 == 1))
            time.sleep(max(0.0, REVIEW_INTERVAL - (time.monotonic() - started)))
        rss = resident_mib(pid)
    finally:
        attacker.terminate()
        attacker.join()
        client.close()
    answered = sorted(result * 1000 for result in results if isinstance(result, float))
    ranked = answered + [float("inf")] * (reviews - len(answered))  # unanswered rank last
    return Outcome(
        attack.name,
        ready.value,
        len(answered),
        reviews,
        statistics.median(ranked),
        ranked[min(reviews - 1, round(reviews * 0.95) - 1)],
        rss,
        renewed.value,
        _error_lines(log) - logged_before,
        Counter(result for result in results if isinstance(result, str)),
    )


def _error_lines(log: Path) -> int:
    text = log.read_text(errors="replace")
    return text.count('"level": "error"') + text.count("Traceback")


def report(outcomes: list[Outcome], limit: int) -> None:
    print(
        f"attacks at the connection limit ({limit}, what the chart's 256Mi sizes); legitimate "
        f"reviews {REVIEW_INTERVAL:g} s apart, new and kept-alive connections alternately"
    )
    print(
        f"{'attack':<24} {'attackers':>9} {'within 1 s':>11} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'RSS MiB':>7} {'renewed':>7} {'errors':>6}  target >= 95 %"
    )
    for outcome in outcomes:
        share = outcome.answered / outcome.reviews
        print(
            f"{outcome.attack:<24} {outcome.attackers:>9} "
            f"{outcome.answered:>4}/{outcome.reviews:<4} {share:>3.0%} "
            f"{outcome.p50_ms:>7.1f} {outcome.p95_ms:>7.1f} {outcome.rss_mib:>7.1f} "
            f"{outcome.renewed:>7} {outcome.error_lines:>6}  "
            + ("met" if share >= TARGET else "NOT MET")
        )
    for outcome in outcomes:
        for why, times in outcome.missed.most_common():
            print(f"  {outcome.attack}, not answered within 1 s: {why} ({times})")
    for attack in ATTACKS:
        if attack.name in {outcome.attack for outcome in outcomes}:
            print(f"  {attack.name}: {attack.what}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__)
    parser.add_argument("--reviews", type=int, default=100, help="per attack (default 100)")
    names = [attack.name for attack in ATTACKS]
    parser.add_argument("--attack", action="append", choices=names, help="only these")
    args = parser.parse_args()
    limits = EdgeLimits()
    limit = connection_limit(1 << 20, None, CHART_MEMORY_LIMIT, limits.max_buffered_bytes)
    chosen = [attack for attack in ATTACKS if attack.name in (args.attack or names)]
    with tempfile.TemporaryDirectory(prefix="pod-labeler-attacks-") as name:
        directory = Path(name)
        ca_file, cert, key = serving_certificate(directory)
        port, metrics_port, log = free_port(), free_port(), directory / "ours.log"
        argv = [*ours_argv(cert, key, port, metrics_port), f"--max-connections={limit}"]
        context = ssl.create_default_context(cafile=str(ca_file))
        ports = Ports(port, metrics_port, context)
        with process(argv, port, log) as ours:
            outcomes = [
                run_attack(attack, ports, limit, args.reviews, ours.pid, log) for attack in chosen
            ]
    report(outcomes, limit)


if __name__ == "__main__":
    main()
