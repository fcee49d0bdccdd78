"""A design that issue 11 did not allow, measured for the decision: the review answered
on the thread that reads it.

    python -m bench.reading_thread --port 8443 --tls-cert tls.crt --tls-key tls.key

asyncio's TLS server reads each request and calls the same Flask app as the real
server (`app.http.create_app`, with its logging and metrics) on the event loop's own
thread: no unix socket, no waitress loop, no worker thread. It has none of the
edge's limits, deadlines or draining (app/edge/), so it is not a server to deploy:
`python -m bench.server --with-reading-thread` runs it beside ours and the ceiling to
show what the hand-offs between threads cost.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import ssl
import sys
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from app.admission.policy import LabelPolicy
from app.http import create_app
from app.logs import configure
from app.metrics import Metrics

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def answer(app: WSGIApp, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One request through the WSGI app, as a complete HTTP/1.1 response."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
        started["status"], started["headers"] = status, response_headers

    content = b"".join(app(environ, start_response))
    lines = [f"HTTP/1.1 {started['status']}"]
    lines += [f"{name}: {value}" for name, value in started["headers"]]
    if not any(name.lower() == "content-length" for name, _ in started["headers"]):
        lines.append(f"Content-Length: {len(content)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


def handler(app: WSGIApp) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *header_lines = head[:-4].split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                writer.write(answer(app, method, path, headers, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return serve_connection


async def serve(port: int, context: ssl.SSLContext) -> None:
    app = create_app(LabelPolicy(), Metrics(CollectorRegistry()))
    server = await asyncio.start_server(handler(app), "127.0.0.1", port, ssl=context)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reading_thread", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    args = parser.parse_args()
    configure(logging.INFO)  # the review's log line, as the real server writes it
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    asyncio.run(serve(args.port, context))


if __name__ == "__main__":
    main()
