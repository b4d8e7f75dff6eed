"""Events waiting for Redis, every call's together, in the order they were published.

The queue is bounded (`max_events`): while Redis is away it fills, and past the bound an
incoming interim is dropped (the final that follows says more), else the oldest queued event
that does not end a call (an end must reach Redis, or the call is never acknowledged). Only
the writer (`writer.py`) puts and takes; `asr_bus_events_queued` shows its length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ...transcripts import Delivery
    from .calls import OwnedCall

MAX_QUEUED_EVENTS: Final = 10_000  # events waiting for Redis, all calls together


class Finish(StrEnum):
    """What writing an event finishes of its call, besides the event itself."""

    NONE = ""
    EXPIRE = "expire"  # the session ended: the transcript expires a day later
    ACK = "ack"  # the call is over: acknowledge its entry and delete its audio and progress
    ABANDON = "abandon"  # the same, but its audio is kept a while for whoever investigates


@dataclass(slots=True)
class Outgoing:
    tag: str  # the call's tag (`wire.call_tag`): its name in Redis keys
    seq: int  # -1: an event without one (always written)
    fresh: bool  # a session_started that restarts the call's numbering
    data: str  # the event, serialized
    call: OwnedCall | None  # None: a session this bus does not own (another source's call)
    finish: Finish
    interim: bool = False  # an interim transcript: the first to go when the queue is full
    document: bool = False  # one of the call's document events (kept for its transcript document)
    deliveries: tuple[Delivery, ...] = ()  # webhooks to queue once it is written


class Outbox:
    def __init__(self, max_events: int = MAX_QUEUED_EVENTS) -> None:
        self.max_events = max_events
        self._items: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, incoming: Outgoing) -> Outgoing | None:
        """Queue an event; if the queue is full, return the one dropped instead (which may be
        `incoming`). When nothing but call ends is queued, none is dropped: the queue then
        goes past its bound, by the ends of calls alone."""
        items = self._items
        if len(items) < self.max_events:
            items.append(incoming)
            return None
        if incoming.interim:
            return incoming
        victim = next((item for item in items if not item.finish), None)
        if victim is not None:
            items.remove(victim)
        items.append(incoming)
        return victim

    def head(self, count: int) -> list[Outgoing]:
        """The first `count` events (fewer if fewer wait), left queued."""
        items = self._items
        return [items[i] for i in range(min(count, len(items)))]

    def pop(self, count: int) -> None:
        """Remove the first `count` events: they are written."""
        for _ in range(count):
            self._items.popleft()

    def queued(self) -> list[tuple[str, int]]:
        """(call tag, seq) of every queued event, in order."""
        return [(item.tag, item.seq) for item in self._items]
