"""The webhook server beside its ceiling, under the same load generator, in one run.

    python -m bench.server [--seconds 10] [--with-reading-thread]

Starts, each in its own process, on loopback:
- ours: `python -m app.main serve` over TLS, exactly as the chart runs it;
- the ceiling: `python -m bench.ceiling`, a minimal waitress+Flask app over plain HTTP
  answering with the same core, with no logging or metrics;
- with `--with-reading-thread`, also `python -m bench.reading_thread`: the same Flask
  app called on asyncio's TLS thread, without waitress (a design measured for a
  decision, not deployed).

Then wrk (keep-alive, one thread) posts the same realistic Pod review (about 3.2 KB,
as a Deployment's Pod looks to the webhook) at 1 and at 8 connections to each, in
interleaved rounds, and prints each run, the medians, their ratios against the
ceiling, and our server's resident memory after the runs, while 1,000 idle TCP
sockets, then 1,000 idle TLS connections, are open, and while 600 TLS connections
trickle request heads and once they are gone.
Asserts nothing: the figures depend on the machine. wrk comes from
`hack/install.sh bench` (Debian's package).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.certs import CertificateAuthority

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = (1, 8)
IDLE_SOCKETS = 1000
TRICKLERS = 600
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def pod_review(namespace: str = "payments") -> bytes:
    """An AdmissionReview for a Pod of a Deployment, with what such Pods carry."""
    container = {
        "name": "api",
        "image": "registry.example.com/payments/api:1.42.0@sha256:" + "0" * 64,
        "args": ["--listen=:8080", "--log-format=json", "--metrics=:9090"],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "GOMAXPROCS", "value": "2"},
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/api", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "imagePullPolicy": "IfNotPresent",
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "api-7d9f8c6b5-",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "api",
                "app.kubernetes.io/instance": "payments-api",
                "app.kubernetes.io/version": "1.42.0",
                "pod-template-hash": "7d9f8c6b5",
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-11-20T09:14:03Z",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "api-7d9f8c6b5",
                    "uid": "7f1c2b4e-9a0d-4c1e-8f5b-2d3e4f5a6b7c",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "api",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": "api-config"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "api"}},
                }
            ],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3f0c9e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "5a6b7c8d-9e0f-1a2b-3c4d-5e6f7a8b9c0d",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    return json.dumps(review).encode()


@dataclass(frozen=True)
class Run:
    target: str
    connections: int
    reviews_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def serving_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a serving pair for localhost in `directory`: (ca, cert, key)."""
    ca = CertificateAuthority("pod-labeler bench CA")
    ca_file = ca.write(directory / "ca.crt")
    cert, key = directory / "tls.crt", directory / "tls.key"
    ca.issue().write(cert, key)
    return ca_file, cert, key


def ours_argv(cert: Path, key: Path, port: int, metrics_port: int = 0) -> list[str]:
    """Our server over TLS on loopback, with the chart's flags and the default label
    (its metrics port a free one unless given)."""
    return [
        *(sys.executable, "-m", "app.main", "serve"),
        *(f"--tls-cert={cert}", f"--tls-key={key}"),
        *("--host=127.0.0.1", f"--port={port}", f"--metrics-port={metrics_port or free_port()}"),
        "--label=environment=production",
    ]


def ceiling_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.ceiling", f"--port={port}"]


def reading_thread_argv(cert: Path, key: Path, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "bench.reading_thread", f"--port={port}"),
        *(f"--tls-cert={cert}", f"--tls-key={key}"),
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def process(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server in its own process, stopped with SIGTERM (then SIGKILL) afterwards."""
    with log.open("wb") as output:
        child = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{argv[2]} did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wrk(url: str, connections: int, seconds: float, body: Path) -> tuple[float, float, float, int]:
    script = body.with_suffix(".lua")
    script.write_text(
        f'local f = io.open("{body}", "rb")\n'
        'wrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout

    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if found is None:
            raise SystemExit(f"wrk printed no {percent}% latency:\n{text}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if rate is None:
        raise SystemExit(f"wrk printed no rate:\n{text}")
    # Non-2xx answers and socket errors (connect, read, write, timeout) both count.
    errors = sum(
        int(n)
        for n in re.findall(
            r"(?:Non-2xx or 3xx responses|connect|read|write|timeout):? (\d+)", text
        )
    )
    return float(rate.group(1)), latency("50"), latency("99"), errors


def resident_mib(pid: int) -> float:
    """VmRSS of the process and its children (waitress runs in-process: one process)."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        status = Path(f"/proc/{candidate}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total / 1024


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def idle_tls_connections(port: int, count: int, context: ssl.SSLContext) -> list[ssl.SSLSocket]:
    """`count` connections that finish their handshake and then send nothing."""
    opened = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        opened.append(context.wrap_socket(raw, server_hostname="localhost"))
    return opened


def trickling_heads(port: int, count: int, context: ssl.SSLContext) -> list[ssl.SSLSocket]:
    """`count` TLS connections that each send the first bytes of a request head, then
    one more byte each once all are open: the trickle the edge's minimum rate cuts."""
    opened = idle_tls_connections(port, count, context)
    for sock in opened:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
    for sock in opened:
        sock.sendall(b"X")
    return opened


def settled_mib(pid: int, seconds: float = 2.0) -> float:
    """Resident memory once the server has had `seconds` to let go of what it held."""
    time.sleep(seconds)
    return resident_mib(pid)


def one_review_ms(port: int, context: ssl.SSLContext, body: bytes) -> float:
    started = time.perf_counter()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        while tls.recv(65536):
            pass
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=8, help="per wrk run (default 8)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="runs of each, interleaved; medians shown (5)"
    )
    parser.add_argument(
        "--with-reading-thread",
        action="store_true",
        help="also run bench/reading_thread.py, the app answered on the TLS thread",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `hack/install.sh bench`")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pod-labeler-bench-") as name:
        directory = Path(name)
        ca_file, cert, key = serving_certificate(directory)
        body = directory / "review.json"
        body.write_bytes(pod_review())
        ours_port, ceiling_port, reading_port = free_port(), free_port(), free_port()
        runs: list[Run] = []
        urls = {
            "ceiling": f"http://127.0.0.1:{ceiling_port}/mutate",
            "ours": f"https://localhost:{ours_port}/mutate",
        }
        with contextlib.ExitStack() as servers:
            servers.enter_context(
                process(ceiling_argv(ceiling_port), ceiling_port, directory / "ceiling.log")
            )
            ours = servers.enter_context(
                process(ours_argv(cert, key, ours_port), ours_port, directory / "ours.log")
            )
            if args.with_reading_thread:
                argv = reading_thread_argv(cert, key, reading_port)
                servers.enter_context(process(argv, reading_port, directory / "reading.log"))
                urls["reading"] = f"https://localhost:{reading_port}/mutate"
            # Interleaved, so that a burst of other load on the machine hits both.
            for _ in range(args.rounds):
                for connections in CONNECTIONS:
                    for target, url in urls.items():
                        rate, p50, p99, errors = wrk(url, connections, args.seconds, body)
                        runs.append(Run(target, connections, rate, p50, p99, errors))
            rss_after = resident_mib(ours.pid)
            context = ssl.create_default_context(cafile=str(ca_file))
            idle_tcp = [
                socket.create_connection(("127.0.0.1", ours_port)) for _ in range(IDLE_SOCKETS)
            ]
            review_with_idle = one_review_ms(ours_port, context, body.read_bytes())
            rss_idle = resident_mib(ours.pid)
            for sock in idle_tcp:
                sock.close()
            idle_tls = idle_tls_connections(ours_port, IDLE_SOCKETS, context)
            rss_idle_tls = resident_mib(ours.pid)
            for sock in idle_tls:
                sock.close()
            tricklers = trickling_heads(ours_port, TRICKLERS, context)
            rss_trickling = resident_mib(ours.pid)
            review_with_tricklers = one_review_ms(ours_port, context, body.read_bytes())
            for sock in tricklers:
                sock.close()
            rss_trickled = settled_mib(ours.pid)
    print(
        f"load average (1 min) before the runs: {load_before:.2f}; the runs add about 2, "
        "and other work on the machine moves the ratios: run it with nothing else running"
    )
    report(runs, rss_after, (rss_idle, rss_idle_tls), review_with_idle, len(pod_review()))
    print(
        f"ours, resident memory while {TRICKLERS} TLS connections trickle request heads: "
        f"{rss_trickling:.1f} MiB (a review on a new connection meanwhile: "
        f"{review_with_tricklers:.1f} ms); once they are gone: {rss_trickled:.1f} MiB"
    )


def median_run(runs: list[Run]) -> Run:
    """Each figure's median over the rounds (errors summed)."""
    return Run(
        runs[0].target,
        runs[0].connections,
        statistics.median(run.reviews_per_second for run in runs),
        statistics.median(run.p50_ms for run in runs),
        statistics.median(run.p99_ms for run in runs),
        sum(run.errors for run in runs),
    )


def report(
    runs: list[Run],
    rss_after: float,
    rss_idle: tuple[float, float],
    review_with_idle: float,
    size: int,
) -> None:
    print(
        f"pod-labeler server vs ceiling: Python {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}, {os.cpu_count()} CPUs, wrk -t1 keep-alive, "
        f"a {size}-byte Pod review"
    )
    print(
        f"{'target':<10} {'conns':>5} {'reviews/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for run in runs:
        print(
            f"{run.target:<10} {run.connections:>5} {run.reviews_per_second:>10.0f} "
            f"{run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {run.errors:>6}"
        )
    targets = list(dict.fromkeys(run.target for run in runs))
    medians = {
        (target, connections): median_run(
            [run for run in runs if (run.target, run.connections) == (target, connections)]
        )
        for target in targets
        for connections in CONNECTIONS
    }
    print("medians:")
    for run in medians.values():
        print(
            f"{run.target:<10} {run.connections:>5} {run.reviews_per_second:>10.0f} "
            f"{run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {run.errors:>6}"
        )
    for target in targets[1:]:
        for connections in CONNECTIONS:
            run, ceiling = medians[target, connections], medians["ceiling", connections]
            rate = run.reviews_per_second / ceiling.reviews_per_second
            p50, p99 = run.p50_ms / ceiling.p50_ms, run.p99_ms / ceiling.p99_ms
            print(
                f"{target}, ratio at {connections} conn (medians): reviews/s {rate:.2f} of "
                f"the ceiling, p50 {p50:.2f}x, p99 {p99:.2f}x"
            )
    print(f"ours, resident memory after the runs: {rss_after:.1f} MiB")
    tcp, tls = rss_idle
    print(f"ours, resident memory with {IDLE_SOCKETS} idle TCP sockets open: {tcp:.1f} MiB")
    print(f"ours, one review on a new connection while they are open: {review_with_idle:.1f} ms")
    print(
        f"ours, resident memory with {IDLE_SOCKETS} idle TLS connections open "
        f"(handshake done, no request): {tls:.1f} MiB"
    )


if __name__ == "__main__":
    main()
