"""The end's wait on plain times: it starts at the end, starts over on news, never beyond
FINALIZE_WAITS_MAX waits from the end, and never moves earlier."""

from __future__ import annotations

from asr_worker.core.end_wait import FINALIZE_WAITS_MAX, EndWait


def test_the_end_waits_one_wait() -> None:
    wait = EndWait(wait_s=5.0)
    wait.start(100.0)
    assert wait.deadline == 105.0 and wait.started_at == 100.0


def test_news_starts_the_wait_over_within_the_bound() -> None:
    wait = EndWait(wait_s=5.0)
    wait.start(100.0)
    wait.again(103.0)
    assert wait.deadline == 108.0
    wait.again(107.0)
    assert wait.deadline == 100.0 + FINALIZE_WAITS_MAX * 5.0


def test_news_never_brings_the_deadline_forward() -> None:
    wait = EndWait(wait_s=5.0)
    wait.start(100.0)
    wait.again(99.0)  # a clock read before the end began
    assert wait.deadline == 105.0


def test_no_wait_before_the_end_nor_after_stop() -> None:
    assert EndWait(wait_s=5.0).deadline is None
    wait = EndWait(wait_s=5.0)
    wait.start(100.0)
    wait.stop()
    assert wait.deadline is None
