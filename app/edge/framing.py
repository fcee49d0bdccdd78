"""HTTP/1.1 framing for the TLS front: where each message ends, and nothing more.

waitress parses HTTP; the front only relays bytes to it. But to give a slow client a
deadline for its request head, to refuse an oversized body from its Content-Length,
to know when a connection is idle, and to add `Connection: close` while draining, the
front must know where each request and each response ends (RFC 9112 section 6).
This module answers exactly that, on bytes, with no I/O. It is hand-written because
the well-kept parsers (h11, httptools) would parse every header for a second time, at
a cost comparable to serving the request; framing needs only three headers.

Anything it cannot frame with certainty it refuses (`FramingError`, answered with a
4xx and a closed connection), as a proxy must to avoid request smuggling.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from app.admission.responses import errored

HEAD_END = b"\r\n\r\n"
# Chunk-size lines are short; anything longer is not a client we want.
MAX_CHUNK_LINE = 1024
# Lines in one chunked body (sizes, the CRLF after each chunk's data, trailers): a
# 3 MiB body in 8 KiB chunks has about 800. Each line is a turn of a Python loop here
# and in waitress, so a body of one-byte chunks would cost CPU for every byte.
MAX_CHUNK_LINES = 8192
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    505: "HTTP Version Not Supported",
}


class FramingError(Exception):
    """A request the front will not relay: answered with `status` and then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    path: bytes
    # None: the body is chunked (its end is found by `ChunkedBody`).
    content_length: int | None
    # The client asked for the connection to close after this exchange.
    close: bool
    # The client sent `Expect: 100-continue`.
    expects_continue: bool = False


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    # None: no Content-Length, so the end is not known (the front then closes).
    content_length: int | None
    close: bool

    @property
    def final(self) -> bool:
        """1xx responses (100 Continue) come before the real one."""
        return self.status >= 200


def _headers(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        # No whitespace before the colon and no obsolete line folding (RFC 9112 5.1, 5.2).
        if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
            raise FramingError(400, f"malformed header line {line[:64]!r}")
        headers.setdefault(name.lower(), []).append(value.strip(b" \t"))
    return headers


def _content_length(values: list[bytes]) -> int:
    if len(values) != 1 or not values[0].isdigit():
        raise FramingError(400, "Content-Length must be given once, as a number")
    return int(values[0])


def _tokens(headers: dict[bytes, list[bytes]], name: bytes) -> set[bytes]:
    return {token.strip().lower() for value in headers.get(name, ()) for token in value.split(b",")}


def _wants_close(headers: dict[bytes, list[bytes]], http10: bool) -> bool:
    tokens = _tokens(headers, b"connection")
    return b"close" in tokens or (http10 and b"keep-alive" not in tokens)


def parse_request_head(head: bytes, *, max_body: int) -> RequestHead:
    """The head up to and excluding the blank line. Raises `FramingError`."""
    request_line, *lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise FramingError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise FramingError(505, "only HTTP/1.1 and HTTP/1.0 are served")
    headers = _headers(lines)
    encodings = headers.get(b"transfer-encoding")
    if encodings is not None:
        # waitress ignores it in HTTP/1.0 and reads the body as empty: relaying it
        # chunked would let the chunks pass for the next request (RFC 9112 6.1).
        if version == b"HTTP/1.0":
            raise FramingError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        if b"content-length" in headers:
            raise FramingError(400, "both Transfer-Encoding and Content-Length")
        if [value.lower() for value in encodings] != [b"chunked"]:
            raise FramingError(501, "the only Transfer-Encoding served is chunked")
        length = None
    elif b"content-length" in headers:
        length = _content_length(headers[b"content-length"])
        if length > max_body:
            raise FramingError(413, f"the body is larger than {max_body} bytes")
    else:
        length = 0
    return RequestHead(
        method=method,
        path=target.partition(b"?")[0],
        content_length=length,
        close=_wants_close(headers, version == b"HTTP/1.0"),
        expects_continue=b"100-continue" in _tokens(headers, b"expect"),
    )


def parse_response_head(head: bytes, *, request_method: bytes) -> ResponseHead:
    """waitress's response head. Raises `FramingError` (502) if it is not HTTP."""
    status_line, *lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise FramingError(502, "the backend sent a malformed status line")
    status = int(parts[1])
    headers = _headers(lines)
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        length: int | None = 0
    elif b"content-length" in headers:
        length = _content_length(headers[b"content-length"])
    else:
        length = None
    close = _wants_close(headers, parts[0] == b"HTTP/1.0") or length is None
    return ResponseHead(status=status, content_length=length, close=close)


def without_header(head: bytes, name: bytes) -> bytes:
    """The same head (with its blank line) without the header `name` (lowercase)."""
    first_line, *lines = head[: -len(HEAD_END)].split(b"\r\n")
    kept = [line for line in lines if line.partition(b":")[0].strip().lower() != name]
    return b"\r\n".join([first_line, *kept]) + HEAD_END


def with_connection_close(head: bytes) -> bytes:
    """The same response head (with its blank line) saying `Connection: close`."""
    return without_header(head, b"connection")[: -len(b"\r\n")] + b"Connection: close\r\n\r\n"


def error_response(status: int, message: str) -> bytes:
    """A complete response from the front itself, always closing the connection.

    The body is an AdmissionReview with the status, like every error the server sends,
    so the API server's log shows the reason.
    """
    body = json.dumps(errored(status, message)).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ChunkedBody:
    """Finds the end of a chunked body (RFC 9112 section 7.1) in the bytes fed to it.

    The bytes themselves are relayed unchanged; waitress decodes them. Whatever
    waitress would read differently (a bare LF ending a line, chunk data not followed
    by CRLF) is refused here, so that the two always agree on where the body ends.
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._size = 0  # of the chunk data still to come
        self._after_data = False  # the next line is the CRLF that ends chunk data
        self._line = bytearray()
        self._lines = 0
        self._in_trailers = False
        self._received = 0
        self.done = False

    def feed(self, data: bytes) -> int:
        """How many bytes of `data` belong to the body; the rest is the next request."""
        used = 0
        while used < len(data) and not self.done:
            if self._size:
                step = min(self._size, len(data) - used)
                self._size -= step
                used += step
                continue
            newline = data.find(b"\n", used)
            end = len(data) if newline < 0 else newline + 1
            self._line += data[used:end]
            used = end
            if len(self._line) > MAX_CHUNK_LINE:
                raise FramingError(400, "a chunk-size or trailer line is too long")
            if newline >= 0:
                if not self._line.endswith(b"\r\n"):
                    raise FramingError(400, "a chunked body's lines must end with CRLF")
                self._lines += 1
                if self._lines > MAX_CHUNK_LINES:
                    raise FramingError(400, f"more than {MAX_CHUNK_LINES} chunk lines")
                self._end_of_line(bytes(self._line[:-2]))
                self._line.clear()
        return used

    def _end_of_line(self, line: bytes) -> None:
        if self._after_data:
            if line:
                raise FramingError(400, "chunk data must be followed by CRLF")
            self._after_data = False
            return
        if self._in_trailers:
            self.done = not line
            return
        size_text = line.partition(b";")[0].strip(b" \t")
        # 1*HEXDIG only: int(x, 16) alone would also take "0x1f", "+1f" and "1_f".
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise FramingError(400, f"malformed chunk size {size_text[:16]!r}")
        size = int(size_text, 16)
        self._received += size
        if self._received > self._max_body:
            raise FramingError(413, f"the body is larger than {self._max_body} bytes")
        if size == 0:
            self._in_trailers = True
        else:
            self._size, self._after_data = size, True
