"""The edge's limits: the connection limit from open files, and the byte budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import edge_problems
from app.edge.limits import (
    BASE_MEMORY,
    FILES_PER_CONNECTION,
    MEMORY_PER_CONNECTION,
    RESERVED_FILES,
    ByteBudget,
    EdgeLimits,
    MiB,
    connection_limit,
    read_memory_limit,
)


def test_the_connection_limit_leaves_a_file_per_connection_and_a_reserve() -> None:
    assert connection_limit(1024, None) == (1024 - RESERVED_FILES) // FILES_PER_CONNECTION


def test_a_configured_connection_limit_never_exceeds_what_the_open_files_allow() -> None:
    assert connection_limit(1024, 100_000) == connection_limit(1024, None)
    assert connection_limit(1024, 10) == 10


def test_a_large_body_reserves_its_whole_length_first_come_first_served() -> None:
    budget = ByteBudget(400)
    granted: list[str] = []

    assert budget.reserve(300, lambda: granted.append("first"))
    assert not budget.reserve(200, lambda: granted.append("second"))
    assert not budget.reserve(50, lambda: granted.append("third")), "it would jump the queue"
    budget.release(300)

    assert granted == ["second", "third"]
    assert budget.used == 250


def test_a_forgotten_waiter_is_not_granted() -> None:
    budget = ByteBudget(100)
    granted: list[str] = []
    budget.reserve(100, lambda: None)
    waiter = lambda: granted.append("x")  # noqa: E731
    budget.reserve(100, waiter)
    budget.forget(waiter)

    budget.release(100)

    assert granted == []
    assert budget.used == 0


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"header_timeout": 0}, "header timeout must be greater than 0"),
        ({"max_body_bytes": 0}, "max body bytes must be at least 1"),
        ({"max_buffered_bytes": 1024}, "max buffered bytes must be at least max body bytes"),
        ({"min_request_rate": 0}, "min request rate must be at least 1"),
        ({"max_connections": 0}, "max connections must be at least 1"),
    ],
)
def test_unusable_limits_are_named(changes: dict[str, float], problem: str) -> None:
    problems = edge_problems(EdgeLimits(**changes))  # type: ignore[arg-type]

    assert any(found.startswith(problem) for found in problems), problems


def test_a_memory_limit_caps_the_connections_beside_the_byte_budget() -> None:
    limit = connection_limit(1 << 20, None, memory_limit=256 * MiB, buffered=16 * MiB)

    assert limit == (256 * MiB - BASE_MEMORY - 16 * MiB) // MEMORY_PER_CONNECTION
    assert limit < connection_limit(1 << 20, None)


def test_without_a_memory_limit_only_the_open_files_count() -> None:
    assert connection_limit(1024, None, memory_limit=None) == connection_limit(1024, None)


def test_the_cgroup_v2_memory_limit_is_read_in_bytes(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("268435456\n")

    assert read_memory_limit((str(tmp_path / "memory.max"),)) == 268435456


@pytest.mark.parametrize("unlimited", ["max\n", "9223372036854771712\n"])
def test_an_unlimited_cgroup_means_no_memory_limit(tmp_path: Path, unlimited: str) -> None:
    (tmp_path / "memory.max").write_text(unlimited)

    assert read_memory_limit((str(tmp_path / "memory.max"),)) is None


def test_no_cgroup_file_means_no_memory_limit(tmp_path: Path) -> None:
    assert read_memory_limit((str(tmp_path / "absent"),)) is None
