"""The edge's limits: timeouts, sizes and the minimum rate, the connection limit
sized from the open-files and memory limits, and the budget for large bodies. No I/O
but reading the cgroup's memory limit and raising the process's open-files limit."""

from __future__ import annotations

import contextlib
import resource
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
FILES_PER_CONNECTION = 1  # its socket: TLS ends in waitress's own channel
RESERVED_FILES = 64  # listeners, triggers, the metrics port, logs, the interpreter...
OPEN_FILES_CEILING = 1 << 20  # asked for when the hard limit is unlimited
# The plain-HTTP metrics port's own connection limit (Prometheus scrapes with one).
METRICS_CONNECTIONS = 8
# One connection's memory beside the byte budget: its TLS state and waitress channel
# (about 20 KiB measured when idle), a small request held whole (a 16 KiB head and a
# 64 KiB body, which the budget does not count), and up to 64 KiB of kernel socket
# buffers (SOCKET_BUFFER_BYTES, doubled, each way), charged to the Pod's cgroup too.
MEMORY_PER_CONNECTION = 224 * 1024
# Each connection's kernel send and receive buffers (Linux doubles the figure and
# stops tuning it): a review or its answer is a few KB.
SOCKET_BUFFER_BYTES = 16 * 1024
# The interpreter, Flask, waitress and its threads (about 45 MiB measured), and spare.
BASE_MEMORY = 64 * MiB
CGROUP_MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


@dataclass(frozen=True)
class EdgeLimits:
    """Every timeout (seconds), size (bytes) and rate the edge enforces (docs/edge.md)."""

    handshake_timeout: float = 5.0  # TLS, from accept
    # The whole head, from the request's first byte (Go's ReadHeaderTimeout); also the
    # window over which a request still arriving must keep min_request_rate.
    header_timeout: float = 5.0
    # Bytes a second a request still arriving must bring (mod_reqtimeout's MinRate).
    min_request_rate: int = 16 * 1024
    # From a request's first byte to its answer's last: the API server waits 30 s at
    # most, so this never cuts an exchange it still waits for.
    request_timeout: float = 30.0
    idle_timeout: float = 60.0  # a kept-alive connection with no request (Go's IdleTimeout)
    max_header_bytes: int = 16 * 1024  # the blank line included
    max_body_bytes: int = 3 * MiB  # the API server's own cap on a request body
    # Memory for bodies over small_body_bytes (or chunked) over all connections, each
    # reserved whole from its head (see ByteBudget). Bodies never go to disk.
    max_buffered_bytes: int = 16 * MiB
    small_body_bytes: int = 64 * 1024
    max_connections: int | None = None  # None: sized from the open-files and memory limits
    drain_idle_timeout: float = 1.0  # while draining, a kept-alive connection idle this long


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # else kept; the caller logs it
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft, hard


def connection_limit(
    open_files: int, configured: int | None, memory_limit: int | None = None, buffered: int = 0
) -> int:
    """How many client connections fit in `open_files` descriptors and, when the
    process has a memory limit, in that memory beside the request-byte budget
    (`buffered`); at most `configured`. Past the memory fit an attacker's idle TLS
    connections would get the container OOM-killed before any deadline closed them."""
    fitted = max(1, (open_files - RESERVED_FILES) // FILES_PER_CONNECTION)
    if memory_limit is not None:
        spare = memory_limit - BASE_MEMORY - buffered
        fitted = min(fitted, max(1, spare // MEMORY_PER_CONNECTION))
    return fitted if configured is None else min(configured, fitted)


def read_memory_limit(files: tuple[str, ...] = CGROUP_MEMORY_FILES) -> int | None:
    """The container's memory limit in bytes from its cgroup, or None when unlimited
    or not in a cgroup that says."""
    for name in files:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        # v2 says "max"; v1 says a huge number (a page-rounded LONG_MAX) when unlimited.
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
        return None
    return None


class ByteBudget:
    """Memory for large bodies. Each reserves its declared length (a chunked one, the
    largest allowed) whole from its head, first come first served; one that does not
    fit waits, unread, so large bodies queue instead of each holding part and none
    finishing. Small bodies (a Pod review) never wait here. Loop thread only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()

    def reserve(self, size: int, granted: Callable[[], None]) -> bool:
        """True if `size` bytes are reserved now; else `granted` is called once they are."""
        if not self._waiting and self.used + size <= self.limit:
            self.used += size
            return True
        self._waiting.append((size, granted))
        return False

    def release(self, size: int) -> None:
        self.used -= size
        while self._waiting and self.used + self._waiting[0][0] <= self.limit:
            size, granted = self._waiting.popleft()
            self.used += size
            granted()

    def forget(self, granted: Callable[[], None]) -> None:  # its connection closed
        self._waiting = deque(entry for entry in self._waiting if entry[1] != granted)
