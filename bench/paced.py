"""Latency when reviews come one at a time with pauses between, as from the API server.

    python -m bench.paced [--reviews 300] [--with-reading-thread]

The API server sends a webhook one review at a time, milliseconds apart, so each one
finds the server idle. This starts our server (TLS, as deployed), the ceiling
(`bench.ceiling`, plain HTTP) and the reference webhook of `bench.modes`
(`bench/refwebhook`, Go's standard library, TLS) and posts the same Pod review to each
over one keep-alive connection, with no pause, then 3 ms and 10 ms between reviews,
and prints p50 and p90 for each and each p50 over the reference's (with
`--with-reading-thread`, also `bench.reading_thread`, the app answered on the TLS
thread). Asserts nothing.
`.cache/bin/refwebhook` is built by hack/install.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ssl
import tempfile
import time
from pathlib import Path

from bench.server import (
    ROOT,
    ceiling_argv,
    free_port,
    ours_argv,
    pod_review,
    process,
    reading_thread_argv,
    serving_certificate,
)

PAUSES = (0.0, 0.003, 0.010)
REFERENCE = ROOT / ".cache" / "bin" / "refwebhook"
WARM_UP = 50


def latencies_ms(
    connection: http.client.HTTPConnection, body: bytes, pause: float, n: int
) -> list[float]:
    def one() -> float:
        started = time.perf_counter()
        connection.request(
            "POST", "/mutate", body=body, headers={"Content-Type": "application/json"}
        )
        connection.getresponse().read()
        return (time.perf_counter() - started) * 1000

    for _ in range(WARM_UP):
        one()
    found = []
    for _ in range(n):
        found.append(one())
        time.sleep(pause)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.paced", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--reviews", type=int, default=300, help="per pause (default 300)")
    parser.add_argument(
        "--with-reading-thread",
        action="store_true",
        help="also bench/reading_thread.py, the app answered on the TLS thread",
    )
    args = parser.parse_args()
    if not REFERENCE.exists():
        raise SystemExit(f"{REFERENCE} is missing: run hack/install.sh")
    body = pod_review()
    with tempfile.TemporaryDirectory(prefix="pod-labeler-paced-") as name:
        directory = Path(name)
        ca_file, cert, key = serving_certificate(directory)
        ours_port, ceiling_port, reference_port = free_port(), free_port(), free_port()
        reading_port = free_port()
        reference_argv = [
            *(str(REFERENCE), f"--tls-cert={cert}", f"--tls-key={key}"),
            *(f"--port={reference_port}", "--label=environment=production"),
        ]
        context = ssl.create_default_context(cafile=str(ca_file))
        print(f"one keep-alive connection, {args.reviews} reviews per pause")
        print(f"{'target':<11}{'pause ms':>9}{'p50 ms':>9}{'p90 ms':>9}{'p50 / reference':>17}")
        with contextlib.ExitStack() as servers:
            servers.enter_context(
                process(ceiling_argv(ceiling_port), ceiling_port, directory / "ceiling.log")
            )
            servers.enter_context(
                process(ours_argv(cert, key, ours_port), ours_port, directory / "ours.log")
            )
            servers.enter_context(
                process(reference_argv, reference_port, directory / "reference.log")
            )
            targets: dict[str, http.client.HTTPConnection] = {
                "reference": http.client.HTTPSConnection(
                    "localhost", reference_port, context=context
                ),
                "ceiling": http.client.HTTPConnection("127.0.0.1", ceiling_port),
                "ours": http.client.HTTPSConnection("localhost", ours_port, context=context),
            }
            if args.with_reading_thread:
                argv = reading_thread_argv(cert, key, reading_port)
                servers.enter_context(process(argv, reading_port, directory / "reading.log"))
                targets["reading"] = http.client.HTTPSConnection(
                    "localhost", reading_port, context=context
                )
            for pause in PAUSES:
                reference_p50 = 0.0
                for target, connection in targets.items():
                    found = latencies_ms(connection, body, pause, args.reviews)
                    p50, p90 = found[len(found) // 2], found[len(found) * 9 // 10]
                    reference_p50 = reference_p50 or p50
                    print(
                        f"{target:<11}{pause * 1000:>9.0f}{p50:>9.2f}{p90:>9.2f}"
                        f"{p50 / reference_p50:>16.2f}x"
                    )


if __name__ == "__main__":
    main()
