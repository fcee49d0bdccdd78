"""Framing: where requests and responses end, and what the front refuses to relay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.edge.framing import (
    MAX_CHUNK_LINES,
    ChunkedBody,
    FramingError,
    parse_request_head,
    parse_response_head,
    with_connection_close,
    without_header,
)

MAX_BODY = 1000


def request(*headers: str, line: str = "POST /mutate HTTP/1.1") -> bytes:
    return "\r\n".join([line, "Host: webhook", *headers]).encode()


def test_a_content_length_gives_the_body_length() -> None:
    head = parse_request_head(request("Content-Length: 42"), max_body=MAX_BODY)

    assert (head.method, head.path, head.content_length, head.close) == (
        b"POST",
        b"/mutate",
        42,
        False,
    )


def test_a_request_without_a_body_header_has_an_empty_body() -> None:
    assert (
        parse_request_head(request(line="GET /healthz HTTP/1.1"), max_body=MAX_BODY).content_length
        == 0
    )


def test_the_query_string_is_not_part_of_the_path() -> None:
    head = parse_request_head(request(line="POST /mutate?timeout=10s HTTP/1.1"), max_body=MAX_BODY)

    assert head.path == b"/mutate"


def test_a_chunked_body_has_no_length_up_front() -> None:
    head = parse_request_head(request("Transfer-Encoding: chunked"), max_body=MAX_BODY)

    assert head.content_length is None


@pytest.mark.parametrize(
    ("headers", "line", "status"),
    [
        (("Content-Length: 1001",), "POST /mutate HTTP/1.1", 413),
        (("Content-Length: 5", "Content-Length: 5"), "POST /mutate HTTP/1.1", 400),
        (("Content-Length: -1",), "POST /mutate HTTP/1.1", 400),
        (("Content-Length: 0x10",), "POST /mutate HTTP/1.1", 400),
        (("Content-Length: 5", "Transfer-Encoding: chunked"), "POST /mutate HTTP/1.1", 400),
        (("Transfer-Encoding: gzip, chunked",), "POST /mutate HTTP/1.1", 501),
        (("Bad Header: x",), "POST /mutate HTTP/1.1", 400),
        ((" folded: x",), "POST /mutate HTTP/1.1", 400),
        (("no colon",), "POST /mutate HTTP/1.1", 400),
        ((), "POST /mutate", 400),
        ((), "POST /mutate HTTP/2.0", 505),
        # waitress reads an HTTP/1.0 body as empty whatever Transfer-Encoding says.
        (("Transfer-Encoding: chunked",), "POST /mutate HTTP/1.0", 400),
    ],
)
def test_a_request_that_cannot_be_framed_for_certain_is_refused(
    headers: tuple[str, ...], line: str, status: int
) -> None:
    with pytest.raises(FramingError) as refused:
        parse_request_head(request(*headers, line=line), max_body=MAX_BODY)

    assert refused.value.status == status


@pytest.mark.parametrize(
    ("line", "headers", "close"),
    [
        ("POST /mutate HTTP/1.1", ("Connection: close",), True),
        ("POST /mutate HTTP/1.1", ("Connection: keep-alive, Close",), True),
        ("POST /mutate HTTP/1.0", (), True),
        ("POST /mutate HTTP/1.0", ("Connection: keep-alive",), False),
        ("POST /mutate HTTP/1.1", (), False),
    ],
)
def test_the_client_asks_to_close_as_http_says(
    line: str, headers: tuple[str, ...], close: bool
) -> None:
    assert parse_request_head(request(*headers, line=line), max_body=MAX_BODY).close is close


def test_a_response_with_a_content_length_is_framed() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12", request_method=b"POST")

    assert (head.status, head.content_length, head.close, head.final) == (200, 12, False, True)


def test_100_continue_is_not_the_final_response() -> None:
    head = parse_response_head(b"HTTP/1.1 100 Continue", request_method=b"POST")

    assert (head.final, head.content_length) == (False, 0)


def test_a_response_to_head_has_no_body_whatever_its_length_says() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12", request_method=b"HEAD")

    assert head.content_length == 0


def test_a_response_without_a_length_ends_the_connection() -> None:
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", request_method=b"GET"
    )

    assert (head.content_length, head.close) == (None, True)


def test_a_malformed_status_line_from_the_backend_is_a_502() -> None:
    with pytest.raises(FramingError) as refused:
        parse_response_head(b"garbage", request_method=b"GET")

    assert refused.value.status == 502


def test_connection_close_replaces_any_connection_header() -> None:
    head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"

    assert with_connection_close(head) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    )


CHUNKED = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"


@given(st.lists(st.integers(min_value=0, max_value=len(CHUNKED)), max_size=8))
def test_the_end_of_a_chunked_body_is_found_however_it_is_split(cuts: list[int]) -> None:
    data = CHUNKED + b"NEXT"
    body = ChunkedBody(MAX_BODY)
    used = 0
    points = sorted({*cuts, len(data)})
    start = 0
    for point in points:
        piece = data[start:point]
        if not body.done:
            used += body.feed(piece)
        start = point

    assert body.done
    assert used == len(CHUNKED)


@pytest.mark.parametrize("size_line", [b"0x5", b"+5", b"5_0", b"zz", b""])
def test_a_malformed_chunk_size_is_refused(size_line: bytes) -> None:
    with pytest.raises(FramingError):
        ChunkedBody(MAX_BODY).feed(size_line + b"\r\nhello\r\n")


def test_chunks_over_the_body_cap_are_refused_with_413() -> None:
    with pytest.raises(FramingError) as refused:
        ChunkedBody(MAX_BODY).feed(b"3e9\r\n")

    assert refused.value.status == 413


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"5\nhello\r\n0\r\n\r\n", id="a bare LF after the size"),
        pytest.param(b"5\r\nhelloXX\r\n0\r\n\r\n", id="data longer than its size"),
        pytest.param(b"5\r\nhello0\r\n\r\n", id="no CRLF after the data"),
        pytest.param(b"5\r\nhello\r\n0\r\nTrailer: x\n\r\n", id="a bare LF in trailers"),
    ],
)
def test_a_chunked_body_waitress_would_read_differently_is_refused(body: bytes) -> None:
    with pytest.raises(FramingError) as refused:
        ChunkedBody(MAX_BODY).feed(body)

    assert refused.value.status == 400


def test_a_body_of_too_many_chunks_is_refused_however_small() -> None:
    one_byte_chunks = b"1\r\nx\r\n" * MAX_CHUNK_LINES

    with pytest.raises(FramingError) as refused:
        ChunkedBody(10 * MAX_CHUNK_LINES).feed(one_byte_chunks)

    assert refused.value.status == 400


def test_expect_100_continue_is_noticed_among_other_expectations() -> None:
    head = parse_request_head(request("Expect: 100-Continue", "Content-Length: 3"), max_body=10)

    assert head.expects_continue


def test_a_header_is_removed_from_a_head_whatever_its_case() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nEXPECT: 100-continue\r\nAccept: */*\r\n\r\n"

    assert without_header(head, b"expect") == b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
