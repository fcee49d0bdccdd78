"""logs: one JSON object per line, with the record's structured fields at the top level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logs import JSONFormatter, configure, fields


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_its_fields(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger

    log.info("review", extra=fields(uid="u-1", labels_set=["environment"]))

    (line,) = lines(stream)
    assert line["msg"] == "review"
    assert line["level"] == "info"
    assert line["logger"] == "test.logs"
    assert (line["uid"], line["labels_set"]) == ("u-1", ["environment"])
    assert str(line["time"]).endswith("+00:00")


def test_an_exception_is_kept_inside_the_one_line(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger

    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    (line,) = lines(stream)
    assert "ValueError: boom" in str(line["exception"])


def test_values_json_cannot_encode_are_written_as_text(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger

    log.info("odd", extra=fields(value={1, 2}.__class__))

    assert lines(stream)[0]["value"] == "<class 'set'>"


def test_configure_sends_every_logger_through_one_json_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(logging.INFO, stream)
        logging.getLogger("waitress").info("from a library")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)

    assert json.loads(stream.getvalue())["logger"] == "waitress"
