"""The token bucket on plain times: a second's worth of messages passes at once, the excess is
refused, time earns tokens back at the rate, never more than a second's worth, and the call
is told at most once a second. No limit (0) never refuses."""

from __future__ import annotations

from asr_worker.core.rate_limit import TokenBucket


def passed(bucket: TokenBucket, messages: int, now: float) -> int:
    return sum(bucket.take(now) for _ in range(messages))


def test_a_burst_of_one_seconds_worth_passes_and_the_excess_is_refused() -> None:
    bucket = TokenBucket(per_s=50, refilled_at=0.0)
    assert passed(bucket, 80, now=0.0) == 50


def test_time_earns_tokens_back_at_the_rate() -> None:
    bucket = TokenBucket(per_s=50, refilled_at=0.0)
    passed(bucket, 50, now=0.0)
    assert passed(bucket, 50, now=0.2) == 10  # 0.2 s at 50 a second


def test_a_long_quiet_spell_earns_at_most_one_seconds_worth() -> None:
    bucket = TokenBucket(per_s=50, refilled_at=0.0)
    passed(bucket, 50, now=0.0)
    assert passed(bucket, 200, now=60.0) == 50


def test_a_steady_source_at_the_rate_loses_nothing() -> None:
    bucket = TokenBucket(per_s=50, refilled_at=0.0)
    taken = sum(bucket.take(i * 0.02) for i in range(500))  # 20 ms frames for 10 s
    assert taken == 500


def test_a_source_at_twice_the_rate_gets_the_rate_within_one_message() -> None:
    bucket = TokenBucket(per_s=50, refilled_at=0.0)
    taken = sum(bucket.take(i * 0.01) for i in range(1000))  # 100 a second for 10 s
    assert abs(taken - (50 + 50 * 10)) <= 1  # the first second's burst, then the rate


def test_no_limit_never_refuses() -> None:
    bucket = TokenBucket(per_s=0, refilled_at=0.0)
    assert passed(bucket, 100_000, now=0.0) == 100_000


def test_the_call_is_told_at_most_once_a_second() -> None:
    bucket = TokenBucket(per_s=50, refilled_at=0.0)
    told = [t / 10 for t in range(35) if bucket.warn_due(t / 10)]
    assert told == [0.0, 1.0, 2.0, 3.0]
