"""The session loop's wake-up: a moved deadline is honoured whichever way it moves, and the
loop never wakes before it (timers run in due order, so these checks do not race)."""

from __future__ import annotations

import asyncio

from asr_worker.runtime.runner import Waker


async def parked(waker: Waker, timeout_s: float | None) -> asyncio.Task[float]:
    loop = asyncio.get_running_loop()

    async def sleeper() -> float:
        await waker.wait(timeout_s)
        return loop.time()

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    assert waker.parked
    return task


async def test_a_later_deadline_is_kept_not_woken_early() -> None:
    waker = Waker()
    loop = asyncio.get_running_loop()
    task = await parked(waker, 0.02)
    due = loop.time() + 0.08
    waker.wake_in(0.08)  # later than the armed timer: it stays, and re-arms when it fires
    woke_at = await task
    assert woke_at >= due


async def test_an_earlier_deadline_wakes_earlier() -> None:
    waker = Waker()
    loop = asyncio.get_running_loop()
    task = await parked(waker, 30.0)
    due = loop.time() + 0.02
    waker.wake_in(0.02)
    woke_at = await asyncio.wait_for(task, 5)
    assert woke_at >= due


async def test_no_deadline_lets_the_loop_sleep_until_woken() -> None:
    waker = Waker()
    task = await parked(waker, 0.01)
    waker.wake_in(None)
    await asyncio.sleep(0.05)  # the 0.01 s timer has fired by now, and found nothing due
    assert waker.parked and not task.done()
    waker.wake()
    await asyncio.wait_for(task, 5)
    assert not waker.parked


async def test_a_wake_before_the_wait_is_not_lost() -> None:
    waker = Waker()
    waker.wake()
    await asyncio.wait_for(waker.wait(None), 1)
