"""Throughput and latency of the webhook server over real TLS, on loopback.

    python -m bench.server [--requests 2000] [--clients 2]

Starts `python -m app.main serve` in a subprocess (so the clients do not share its
interpreter lock) with a throwaway certificate, then sends Pod CREATE reviews in
two modes:

- keep-alive: each client thread reuses one TLS connection, as the API server does
  when it keeps its connection to the webhook;
- new connection: a TCP connect and full TLS handshake per review, as happens when
  the connection is not reused.

Prints reviews/s and p50/p99 latency per mode. Asserts nothing: these are figures
for the README, and they depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.certs import CertificateAuthority

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 50


def pod_review(n: int) -> bytes:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"00000000-0000-0000-0000-{n:012d}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "bench",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "web-",
                    "namespace": "bench",
                    "labels": {"app": "web", "pod-template-hash": "5d8f9c7b6"},
                },
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }
    return json.dumps(review).encode()


@dataclass
class Result:
    mode: str
    requests: int
    clients: int
    seconds: float
    latencies: list[float]
    errors: int

    def row(self) -> str:
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return (
            f"{self.mode:<16} {self.requests:>8} {self.clients:>7} "
            f"{self.requests / self.seconds:>10.0f} {cuts[49] * 1000:>8.2f} "
            f"{cuts[98] * 1000:>8.2f} {self.errors:>6}"
        )


class Server:
    """The real server in a subprocess, on 127.0.0.1 and a free port."""

    def __init__(self, directory: Path) -> None:
        ca = CertificateAuthority("pod-labeler bench CA")
        self.ca_file = ca.write(directory / "ca.crt")
        cert, key = directory / "tls.crt", directory / "tls.key"
        ca.issue().write(cert, key)
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.main", "serve"),
                *("--tls-cert", str(cert), "--tls-key", str(key)),
                *("--host", "127.0.0.1", "--port", "0"),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = self._port_from_log()
        # Keep reading its log (a line per review) so the pipe never fills up.
        threading.Thread(target=self._drain_log, daemon=True).start()

    def _port_from_log(self) -> int:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if line.startswith("{") and json.loads(line).get("msg") == "serving":
                port: int = json.loads(line)["port"]
                return port
        raise SystemExit(f"the server exited ({self.process.wait()}) before serving")

    def _drain_log(self) -> None:
        assert self.process.stderr is not None
        for _ in self.process.stderr:
            pass

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def run(
    mode: str,
    requests: int,
    clients: int,
    connect: Callable[[], http.client.HTTPSConnection],
    reuse: bool,
) -> Result:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    share = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def client(count: int, offset: int) -> None:
        nonlocal errors
        mine: list[float] = []
        failed = 0
        connection = connect() if reuse else None
        for n in range(offset, offset + count):
            body = pod_review(n)
            started = time.perf_counter()
            conn = connection or connect()
            try:
                conn.request(
                    "POST", "/mutate", body=body, headers={"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
            finally:
                if connection is None:
                    conn.close()
            mine.append(time.perf_counter() - started)
        if connection is not None:
            connection.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [
        threading.Thread(target=client, args=(count, sum(share[:i])))
        for i, count in enumerate(share)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(mode, requests, clients, time.perf_counter() - started, latencies, errors)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="reviews per mode (default 2000)"
    )
    parser.add_argument("--clients", type=int, default=2, help="client threads (default 2)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pod-labeler-bench-") as directory:
        server = Server(Path(directory))
        context = ssl.create_default_context(cafile=str(server.ca_file))

        def connect() -> http.client.HTTPSConnection:
            return http.client.HTTPSConnection(
                "127.0.0.1", server.port, context=context, timeout=30
            )

        try:
            run("warm-up", WARM_UP, 1, connect, reuse=True)
            results = [
                run("keep-alive", args.requests, args.clients, connect, reuse=True),
                run("new connection", args.requests, args.clients, connect, reuse=False),
            ]
        finally:
            status = server.stop()

    print(
        f"pod-labeler server benchmark: Python {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}, {os.cpu_count()} CPUs, server and clients on one machine"
    )
    header = ("requests", 8), ("clients", 7), ("reviews/s", 10), ("p50 ms", 8), ("p99 ms", 8)
    print(f"{'mode':<16} " + " ".join(f"{name:>{width}}" for name, width in header) + " errors")
    for result in results:
        print(result.row())
    print(f"server exit status after SIGTERM: {status}")


if __name__ == "__main__":
    main()
