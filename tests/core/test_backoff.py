"""Reconnect backoff on plain times: the wait doubles with each failure in a row up to the
maximum, falls in the upper half of that wait, and starts over after a connection."""

from __future__ import annotations

import random

from asr_worker.core.backoff import Backoff


def waits(backoff: Backoff, failures: int, now: float = 100.0) -> list[float]:
    out = []
    for _ in range(failures):
        backoff.failed(now)
        assert backoff.retry_at is not None
        out.append(backoff.retry_at - now)
    return out


def test_the_wait_doubles_up_to_the_maximum_within_its_upper_half() -> None:
    backoff = Backoff(initial_s=0.25, max_s=8.0, rng=random.Random(1))
    for wait, full in zip(waits(backoff, 8), [0.25, 0.5, 1, 2, 4, 8, 8, 8], strict=True):
        assert full / 2 <= wait <= full


def test_the_jitter_spreads_calls_that_failed_together() -> None:
    retries = set()
    for seed in range(20):
        backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(seed))
        backoff.failed(0.0)
        retries.add(backoff.retry_at)
    assert len(retries) == 20


def test_a_connection_starts_the_count_over() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(1))
    waits(backoff, 3)
    backoff.reset()
    assert backoff.retry_at is None and backoff.failures == 0
    assert waits(backoff, 1)[0] <= 1.0


def test_an_open_cancels_the_wait_but_not_the_count() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(1))
    waits(backoff, 2)
    backoff.cancel()
    assert backoff.retry_at is None and backoff.failures == 2
    assert waits(backoff, 1)[0] >= 2.0, "a third failure in a row waits 2 to 4 s"


def test_a_seeded_rng_gives_the_same_times() -> None:
    a = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(7))
    b = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(7))
    assert waits(a, 5) == waits(b, 5)
