"""The rate limiter that --qps sets: requests evenly spaced, none held back at 0."""

from __future__ import annotations

from app.backfill.kube import RateLimiter


def test_requests_are_spaced_one_interval_apart():
    slept: list[float] = []
    limiter = RateLimiter(10, clock=lambda: 100.0, sleep=slept.append)

    for _ in range(4):
        limiter.wait()

    assert [round(s, 6) for s in slept] == [0.1, 0.2, 0.3]


def test_a_slow_caller_is_not_held_back():
    now = [0.0]
    slept: list[float] = []
    limiter = RateLimiter(10, clock=lambda: now[0], sleep=slept.append)

    for _ in range(3):
        limiter.wait()
        now[0] += 1.0

    assert slept == []


def test_qps_0_means_no_limit():
    slept: list[float] = []
    limiter = RateLimiter(0, clock=lambda: 0.0, sleep=slept.append)

    for _ in range(100):
        limiter.wait()

    assert slept == []
