"""The session loops' wake-up: a parked loop's place on the shared timer wheel only moves
earlier; when it comes due the waker asks how long is really left, so a deadline that moved
later is honoured and the loop never wakes before its deadline. Real loop, real time; the
assertions are on order and lower bounds, never on how fast the machine is."""

from __future__ import annotations

import asyncio

from asr_worker.runtime.wakeup import TIMER_RESOLUTION_S, TimerWheel, Waker


class Deadline:
    """A core's next deadline as the waker sees it, in loop time; None: no timed work."""

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
    waker = Waker(deadline.until_due, TimerWheel())
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.02
    task = await parked(waker, 0.02)
    deadline.at = loop.time() + 0.08  # the waker stays in its slot; when it comes, it moves on
    woke_at = await task
    assert woke_at >= deadline.at - TIMER_RESOLUTION_S
    assert deadline.asked >= 2  # asked when the first slot came, and again at the deadline


async def test_wake_by_an_earlier_time_wakes_earlier() -> None:
    deadline = Deadline()
    wheel = TimerWheel()
    waker = Waker(deadline.until_due, wheel)
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 30.0
    task = await parked(waker, 30.0)
    deadline.at = loop.time() + 0.02
    waker.wake_by(0.02)
    assert wheel.pending == 1  # moved, not added twice
    woke_at = await asyncio.wait_for(task, 5)
    assert woke_at >= deadline.at - TIMER_RESOLUTION_S
    assert wheel.pending == 0


async def test_wake_by_a_later_time_keeps_the_earlier_slot() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due, TimerWheel())
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.02
    task = await parked(waker, 0.02)
    waker.wake_by(30.0)
    woke_at = await asyncio.wait_for(task, 5)
    assert woke_at < deadline.at + 5.0


async def test_wake_by_a_time_already_past_wakes_now() -> None:
    deadline = Deadline()
    wheel = TimerWheel()
    waker = Waker(deadline.until_due, wheel)
    task = await parked(waker, 30.0)
    waker.wake_by(0.0)
    assert not waker.parked and wheel.pending == 1  # the 30 s slot is left when the loop runs
    await asyncio.wait_for(task, 5)
    assert wheel.pending == 0 and deadline.asked == 0


async def test_no_deadline_lets_the_loop_sleep_until_woken() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due, TimerWheel())
    task = await parked(waker, 0.01)
    await asyncio.sleep(0.05)  # the 0.01 s slot has come by now, and found nothing due
    assert deadline.asked == 1
    assert waker.parked and not task.done()
    waker.wake()
    await asyncio.wait_for(task, 5)
    assert not waker.parked


async def test_a_deadline_within_the_timer_resolution_does_not_spin() -> None:
    deadline = Deadline()
    waker = Waker(deadline.until_due, TimerWheel())
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.0002  # due within the loop timer's resolution
    task = await parked(waker, 0.0002)
    await asyncio.wait_for(task, 5)
    assert deadline.asked <= 3  # came, moved a slot on, woke: no busy loop


async def test_a_wake_before_the_wait_is_not_lost() -> None:
    waker = Waker(Deadline().until_due, TimerWheel())
    waker.wake()
    await asyncio.wait_for(waker.wait(None), 1)


async def test_a_woken_loop_leaves_the_wheel_and_its_old_slot_is_skipped() -> None:
    deadline = Deadline()
    wheel = TimerWheel()
    waker = Waker(deadline.until_due, wheel)
    loop = asyncio.get_running_loop()
    deadline.at = loop.time() + 0.01
    task = await parked(waker, 0.01)
    waker.wake()  # a frame came: the loop runs, and is no longer on the wheel
    await task
    assert wheel.pending == 0
    deadline.at = loop.time() + 0.2
    task = await parked(waker, 0.2)
    await asyncio.sleep(0.05)  # the old 0.01 s slot has come and gone
    assert deadline.asked == 0 and not task.done()  # it did not ask for this waker
    waker.wake()
    await task


async def test_many_loops_share_one_wheel_and_none_wakes_early() -> None:
    wheel = TimerWheel()
    loop = asyncio.get_running_loop()
    deadlines = [Deadline() for _ in range(200)]
    wakers = [Waker(d.until_due, wheel) for d in deadlines]
    # Every loop parks first with no timed work, then each gets its deadline, with no await
    # between: parking 200 loops on a busy machine can take longer than the deadlines are away.
    tasks = [await parked(waker, None) for waker in wakers]
    start = loop.time()
    for i, (deadline, waker) in enumerate(zip(deadlines, wakers, strict=True)):
        deadline.at = start + 0.05 + 0.001 * (i % 40)  # 40 distinct deadlines over 40 ms
        waker.wake_by(deadline.at - loop.time())
    assert wheel.pending <= len(wakers)
    woke = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    for deadline, woke_at in zip(deadlines, woke, strict=True):
        assert deadline.at is not None and woke_at >= deadline.at - TIMER_RESOLUTION_S
    assert wheel.pending == 0
