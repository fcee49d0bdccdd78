"""The edge's limits: its timeouts and sizes, the connection limit sized from the
open-files limit, and the budget of request bytes held in memory. No I/O but
`raise_open_files_limit`, which sets the process's own limit."""

from __future__ import annotations

import resource
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
# Each connection can hold three descriptors: the client's socket and both ends of
# its unix socket to waitress.
FILES_PER_CONNECTION = 3
# Listening sockets, certificate reads, logs, waitress's trigger pipe, the
# interpreter's own files, with room to spare.
RESERVED_FILES = 64
# When the hard limit is unlimited, do not ask the kernel for more than this.
OPEN_FILES_CEILING = 1 << 20
# What one connection may cost in memory, beside the byte budget: an idle TLS
# connection was measured at 56 to 135 KiB (bench/server.py), one stalled inside a
# large body at about 130 KiB, with its asyncio buffers, OpenSSL state and allocator
# overhead (test_serving checks it stays under this), plus up to 64 KiB of kernel
# socket buffers (SOCKET_BUFFER_BYTES, doubled, each way), which the Pod's cgroup
# is charged for too.
MEMORY_PER_CONNECTION = 224 * 1024
# Each connection's kernel send and receive buffers (Linux doubles the figure and
# stops tuning it): a review or its answer is a few KB, and a 3 MiB body still
# arrives in a few hundred windows.
SOCKET_BUFFER_BYTES = 16 * 1024
# The interpreter, Flask, waitress and its threads, before any connection (about
# 48 MiB measured), with room to spare.
BASE_MEMORY = 64 * MiB
# Where cgroup v2 (then v1) tells a container its memory limit.
CGROUP_MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


@dataclass(frozen=True)
class EdgeLimits:
    """Every timeout (seconds) and size (bytes) the edge enforces. README lists them."""

    # The TLS handshake, from accept.
    handshake_timeout: float = 5.0
    # The whole request head, from its first byte (Go's ReadHeaderTimeout).
    header_timeout: float = 5.0
    # The rest of the exchange, from the first byte of the request to the last of the
    # response: the API server waits at most 30 s for a webhook, so this never cuts
    # an exchange the API server still waits for.
    request_timeout: float = 30.0
    # A kept-alive connection with no request (Go's IdleTimeout).
    idle_timeout: float = 60.0
    max_header_bytes: int = 16 * 1024
    # The API server's own cap on a request body.
    max_body_bytes: int = 3 * MiB
    # Request bytes held at once, over all connections (in memory only, never on disk).
    max_buffered_bytes: int = 16 * MiB
    # Bodies up to this size count as small: they may use the budget's reserve.
    small_body_bytes: int = 64 * 1024
    # None: sized from the open-files limit.
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
        for name in ("max_header_bytes", "max_body_bytes"):
            if getattr(self, name) < 1:
                found.append(f"{name.replace('_', ' ')} must be at least 1")
        if self.max_buffered_bytes * 3 // 4 < self.max_body_bytes + self.max_header_bytes:
            found.append(
                "max buffered bytes must be at least 4/3 of one whole request "
                "(max body bytes plus max header bytes): a quarter is kept for small requests"
            )
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
    """Request bytes held at once, over every connection.

    Bytes are charged as they arrive and released when their response starts (by then
    waitress has read the request) or when their connection closes. Over the limit, a
    connection stops reading and waits here until enough is released.

    A quarter of the budget is kept for small requests (a Pod review is a few KB), so
    that clients stalling in the middle of large bodies cannot keep reviews out: large
    requests may use only the rest. Used only from the event loop's thread, so it
    needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.large_limit = limit - limit // 4
        self.used = 0
        self._waiting: dict[bool, deque[Callable[[], None]]] = {False: deque(), True: deque()}

    def charge(self, size: int, *, large: bool) -> bool:
        """Count `size` more bytes; False when the budget for this kind is exhausted."""
        self.used += size
        return self._has_room(large)

    def release(self, size: int) -> None:
        self.used -= size
        for large in (False, True):
            waiting = self._waiting[large]
            while waiting and self._has_room(large):
                waiting.popleft()()

    def wait(self, resume: Callable[[], None], *, large: bool) -> None:
        """Call `resume` once the budget has room again for this kind of request."""
        self._waiting[large].append(resume)

    def forget(self, resume: Callable[[], None]) -> None:
        for waiting in self._waiting.values():
            if resume in waiting:
                waiting.remove(resume)

    def _has_room(self, large: bool) -> bool:
        return self.used < (self.large_limit if large else self.limit)
