"""Polling with a bound, for state that has no event to wait on (a thread's progress)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.01) -> None:
    """Return as soon as `condition()` holds; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the state changes in threads, not by an event
            await asyncio.sleep(interval_s)
