"""The session loop's wake-up: its timer only moves earlier; when it fires it asks how long is
really left, so a deadline that moved later is honoured and the loop never wakes before it
(timers run in due order, so these checks do not race)."""

from __future__ import annotations

import asyncio

from asr_worker.runtime.runner import TIMER_RESOLUTION_S, Waker


class Deadline:
    """The core's next deadline as the waker sees it, in loop time; None: no timed work."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.asked = 0

    def until_due(self) -> float | None:
        self.asked += 1
        return None if self.at is None else self.at - asyncio.get_running_loop().time()


async def parked(waker: Waker, timeout_s: float | None) -> asyncio.Task[float]:
    loop = asyncio.get_running_loop()

    async def sleeper() -> float:
        await waker.wait(timeout_s)
        return loop.time()

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    assert waker.parked
    return task


async def test_a_deadline_that_moved_later_is_kept_not_woken_early() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due)
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.02
    task = await parked(waker, 0.02)
    deadline.at = loop.time() + 0.08  # the timer stays; when it fires it re-arms for the rest
    woke_at = await task
    assert woke_at >= deadline.at - TIMER_RESOLUTION_S
    assert deadline.asked >= 2  # asked when the first timer fired, and again at the deadline


async def test_wake_by_an_earlier_time_wakes_earlier() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due)
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 30.0
    task = await parked(waker, 30.0)
    deadline.at = loop.time() + 0.02
    waker.wake_by(0.02)
    woke_at = await asyncio.wait_for(task, 5)
    assert woke_at >= deadline.at - TIMER_RESOLUTION_S


async def test_wake_by_a_later_time_keeps_the_earlier_timer() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due)
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.02
    task = await parked(waker, 0.02)
    waker.wake_by(30.0)
    woke_at = await asyncio.wait_for(task, 5)
    assert woke_at < deadline.at + 5.0


async def test_no_deadline_lets_the_loop_sleep_until_woken() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due)
    task = await parked(waker, 0.01)
    await asyncio.sleep(0.05)  # the 0.01 s timer has fired by now, and found nothing due
    assert deadline.asked == 1
    assert waker.parked and not task.done()
    waker.wake()
    await asyncio.wait_for(task, 5)
    assert not waker.parked


async def test_a_timer_that_fires_a_hair_early_does_not_spin() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due)
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.0002  # due within the timer's resolution
    task = await parked(waker, 0.0)
    await asyncio.wait_for(task, 5)
    assert deadline.asked <= 3  # fired, re-armed a millisecond on, woke: no busy loop


async def test_a_wake_before_the_wait_is_not_lost() -> None:
    waker = Waker(Deadline().until_due)
    waker.wake()
    await asyncio.wait_for(waker.wait(None), 1)
