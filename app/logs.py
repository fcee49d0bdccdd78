"""JSON log lines on stderr through the standard `logging` module.

Structured fields travel in `extra={"fields": {...}}` and become top-level keys,
so an operator can filter on `uid` or `outcome` with jq or the log backend.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

# The attribute `extra={"fields": ...}` sets on a LogRecord.
FIELDS = "fields"
# json.dumps(line, default=str, ensure_ascii=False), without a new encoder per line.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`logger.info("review", extra=fields(uid=...))` reads better than the nested dict."""
    return {FIELDS: values}


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            line.update(extra)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line)


def configure(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every logger (ours and waitress's) to one JSON handler on the root logger."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
