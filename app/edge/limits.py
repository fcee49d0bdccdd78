"""The edge's limits: its timeouts, sizes and rates, the connection limit sized from
the open-files and memory limits, and the budget of memory for large request bodies.
No I/O but `raise_open_files_limit`, which sets the process's own limit."""

from __future__ import annotations

import resource
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
# Each connection is one socket: TLS ends in waitress's own channel.
FILES_PER_CONNECTION = 1
# Listening sockets, waitress's trigger pipes, the metrics port's connections,
# certificate reads, logs, the interpreter's own files, with room to spare.
RESERVED_FILES = 64
# When the hard limit is unlimited, do not ask the kernel for more than this.
OPEN_FILES_CEILING = 1 << 20
# Connections the plain-HTTP metrics port takes, beside (not out of) the admission
# port's limit: Prometheus scrapes with one.
METRICS_CONNECTIONS = 8
# What one connection may cost in memory, beside the byte budget: its TLS state and
# waitress channel (an idle TLS connection measures about 40 KiB, see docs/edge.md),
# a small request held whole (a head up to 16 KiB and a body up to 64 KiB, which the
# byte budget does not count), and up to 64 KiB of kernel socket buffers
# (SOCKET_BUFFER_BYTES, doubled, each way), which the Pod's cgroup is charged for too.
MEMORY_PER_CONNECTION = 224 * 1024
# Each connection's kernel send and receive buffers (Linux doubles the figure and
# stops tuning it): a review or its answer is a few KB, and a 3 MiB body still
# arrives in a few hundred windows.
SOCKET_BUFFER_BYTES = 16 * 1024
# The interpreter, Flask, waitress and its threads, before any connection (about
# 45 MiB measured), with room to spare.
BASE_MEMORY = 64 * MiB
# Where cgroup v2 (then v1) tells a container its memory limit.
CGROUP_MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


@dataclass(frozen=True)
class EdgeLimits:
    """Every timeout (seconds) and size (bytes) the edge enforces. README lists them."""

    # The TLS handshake, from accept.
    handshake_timeout: float = 5.0
    # The whole request head, from its first byte (Go's ReadHeaderTimeout); also the
    # window over which a request still arriving must keep `min_request_rate`.
    header_timeout: float = 5.0
    # Bytes per second a request still arriving must send, measured over each
    # `header_timeout` window (Apache's mod_reqtimeout MinRate): a slower one gets 408.
    min_request_rate: int = 16 * 1024
    # The rest of the exchange, from the first byte of the request to the last of the
    # response: the API server waits at most 30 s for a webhook, so this never cuts
    # an exchange the API server still waits for.
    request_timeout: float = 30.0
    # A kept-alive connection with no request (Go's IdleTimeout).
    idle_timeout: float = 60.0
    max_header_bytes: int = 16 * 1024
    # The API server's own cap on a request body.
    max_body_bytes: int = 3 * MiB
    # Memory for large bodies (over `small_body_bytes`, or chunked), over all
    # connections; each reserves its declared length whole when its head arrives,
    # first come first served. Bodies are never written to disk.
    max_buffered_bytes: int = 16 * MiB
    # Bodies up to this size are small: the connection limit counts them, not the budget.
    small_body_bytes: int = 64 * 1024
    # None: sized from the open-files and memory limits.
    max_connections: int | None = None
    # While draining, a kept-alive connection idle this long is closed.
    drain_idle_timeout: float = 1.0

    def problems(self) -> list[str]:
        """What is wrong with these limits, in the words of the flags that set them."""
        found = [
            f"{name.replace('_', ' ')} must be greater than 0"
            for name in ("handshake_timeout", "header_timeout", "request_timeout", "idle_timeout")
            if getattr(self, name) <= 0
        ]
        for name in ("max_header_bytes", "max_body_bytes", "min_request_rate"):
            if getattr(self, name) < 1:
                found.append(f"{name.replace('_', ' ')} must be at least 1")
        if self.max_buffered_bytes < self.max_body_bytes:
            found.append("max buffered bytes must be at least max body bytes (one whole body)")
        if self.max_connections is not None and self.max_connections < 1:
            found.append("max connections must be at least 1")
        return found


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # kept as it was; the caller logs what it got
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
    """Memory for large request bodies, over every connection.

    A large body reserves its declared length whole when its head arrives (a chunked
    one, the largest body allowed), first come first served: a connection that cannot
    have its share waits, unread, until enough is released, so many large bodies at
    once queue instead of each holding part of the budget and none finishing. Small
    bodies (a Pod review is a few KB) never wait here. Used only from the event
    loop's thread, so it needs no lock.
    """

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

    def forget(self, granted: Callable[[], None]) -> None:
        """Stop waiting for `granted` (its connection closed)."""
        self._waiting = deque(entry for entry in self._waiting if entry[1] != granted)
