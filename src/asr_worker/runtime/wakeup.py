"""How a parked session loop wakes: when a source or the provider wakes it, or when its
core's next deadline comes.

At 500 calls a deadline comes due 8,000 times a second (new waiting audio must leave within
`max_buffer_ms`, and most of it leaves sooner, in a full chunk, so most of those deadlines
have moved on by the time they come). One event-loop timer per session, re-armed at each,
would cost a timer object, two heap operations and a callback dispatch each. `TimerWheel`
keeps every session's deadline in `tick_s` slots behind one loop timer. A slot fires only
once its time has passed, and each waker asks its core how long is really left before it
wakes the loop, so a deadline is never early and at most a tick late.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from typing import Final

# uvloop's timers count whole milliseconds: one may fire up to about this early.
TIMER_RESOLUTION_S: Final = 0.001
# How late a deadline may be, at most (plus the event loop's own lag). A session's timed work
# is flushing audio that waited `max_buffer_ms` (100 by default), keep-alives and retries.
TICK_S: Final = 0.005


class TimerWheel:
    """Deadlines of every parked session loop, behind one event-loop timer.

    Slot `n` holds the wakers due at or before `n * tick_s`; it runs once the loop's clock has
    passed that. A waker is in at most one slot (moving it is a set removal and insertion),
    so the wheel holds at most one entry per session, plus an empty set for each slot a
    waker left before it came due."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self._loop = asyncio.get_running_loop()
        self._tick_s = tick_s
        self._slots: dict[int, set[Waker]] = {}
        self._order: list[int] = []  # heap of the slot numbers in `_slots`
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0  # the slot `_timer` is armed for
        self._ran_slot = -1  # every slot up to this one has run: nothing may join them

    def add(self, due: float, waker: Waker) -> int:
        """Run `waker.on_due` at or after `due` (loop time); returns the slot it is in."""
        slot = max(math.ceil(due / self._tick_s), self._ran_slot + 1)
        wakers = self._slots.get(slot)
        if wakers is None:
            self._slots[slot] = {waker}
            heapq.heappush(self._order, slot)
            if self._timer is None or slot < self._timer_slot:
                self._arm(slot)
        else:
            wakers.add(waker)
        return slot

    def discard(self, slot: int, waker: Waker) -> None:
        wakers = self._slots.get(slot)
        if wakers is not None:
            wakers.discard(waker)  # the slot stays (and in the heap) until its time

    @property
    def pending(self) -> int:
        """Wakers waiting for a slot (one per parked session with timed work)."""
        return sum(len(wakers) for wakers in self._slots.values())

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # At least a millisecond on: a timer that ran a hair early must not spin.
        at = max(slot * self._tick_s, self._loop.time() + TIMER_RESOLUTION_S)
        self._timer = self._loop.call_at(at, self._run)
        self._timer_slot = slot

    def _run(self) -> None:
        self._timer = None
        order, slots = self._order, self._slots
        now_slot = math.floor(self._loop.time() / self._tick_s)
        while order and order[0] <= now_slot:
            slot = heapq.heappop(order)
            self._ran_slot = slot
            for waker in slots.pop(slot):
                waker.on_due()
        if order:
            self._arm(order[0])


class Waker:
    """A reusable wake-up for a session's loop: cheaper than an asyncio.Event plus wait_for
    per frame.

    While the loop is parked its place on the wheel only ever moves earlier (`wake_by`). A
    deadline that moved later is found when that place comes due: it asks `until_due` how
    long is really left, and waits for that or wakes the loop."""

    def __init__(self, until_due: Callable[[], float | None], wheel: TimerWheel) -> None:
        # Kept, not looked up per call: get_running_loop() costs a getpid() system call each.
        self._loop = asyncio.get_running_loop()
        self._until_due = until_due  # seconds until the loop has timed work; None: none
        self._wheel = wheel
        self._future: asyncio.Future[None] | None = None
        self._slot: int | None = None  # where this waker is on the wheel
        self._due = math.inf  # the loop time it is there for
        self._pending = False
        self.parked = False  # the loop is waiting and nothing has woken it yet

    def wake(self) -> None:
        self._pending = True
        if self.parked:
            self.parked = False
            if self._future is not None and not self._future.done():  # done: cancelled
                self._future.set_result(None)

    def wake_by(self, timeout_s: float) -> None:
        """Make sure a parked loop wakes within `timeout_s` (plus at most a tick)."""
        if not self.parked:
            return
        if timeout_s <= 0:
            self.wake()
            return
        due = self._loop.time() + timeout_s
        if due < self._due:
            self._leave_wheel()
            self._due = due
            self._slot = self._wheel.add(due, self)

    def on_due(self) -> None:
        """The wheel reached this waker's slot (it is in no other): wake the loop if its
        timed work is due."""
        self._slot, self._due = None, math.inf
        left_s = self._until_due()
        if left_s is None:
            return  # nothing timed: sleep until woken
        if left_s > 0:
            self.wake_by(left_s)  # not yet: the deadline moved later
        else:
            self.wake()

    async def wait(self, timeout_s: float | None) -> None:
        if self._pending:
            self._pending = False
            return
        self._future = self._loop.create_future()
        self.parked = True
        if timeout_s is not None:
            self.wake_by(timeout_s)
        try:
            await self._future
        finally:
            self._leave_wheel()
            self._future = None
            self._pending = False
            self.parked = False

    def close(self) -> None:
        """The loop is over: let go of its session. `until_due` is the session's own method, so
        holding it on would make session and waker a cycle that only a full garbage collection
        frees; under the worker's GC thresholds ended sessions piled up by the hundred."""
        self._leave_wheel()
        self._until_due = _nothing_timed

    def _leave_wheel(self) -> None:
        if self._slot is not None:
            self._wheel.discard(self._slot, self)
            self._slot, self._due = None, math.inf


def _nothing_timed() -> None:
    return None
