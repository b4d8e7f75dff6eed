"""In-process fan-out of call events to whoever watches: ingest sockets, SSE streams, the page.

Publishing never blocks and never grows without bound: each subscriber has a bounded queue,
and a subscriber too slow to keep up loses its oldest events and is told so by an
`events_dropped` marker in their place. The last events of each call are kept so that an
SSE client reconnecting with `Last-Event-ID` can resume.

Calls are keyed by tenant and interaction id (`CallKey`), and a watcher of "every call" watches
every call of one tenant: nobody subscribes across tenants.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

from ..core.events import CallEvent, EventsDropped, SessionStarted
from ..core.ids import ANY_TENANT, DEFAULT_TENANT, CallKey

# What a subscriber receives: a call's event, or a marker for those it was too slow to get.
Delivered = CallEvent | EventsDropped


class Subscription:
    def __init__(self, hub: EventHub, watched: CallKey | str | None, max_queued: int) -> None:
        # One call; every call of a tenant (its name); or every call (None: the worker token's
        # view of a whole single-operator deployment).
        self.watched = watched
        self._hub = hub
        self._queue: deque[CallEvent] = deque()
        self._max_queued = max_queued
        self._dropped = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def push(self, event: CallEvent) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self._dropped += 1
            self._hub.events_dropped += 1
        self._queue.append(event)
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; a pending `get` returns None."""
        if not self._closed:
            self._closed = True
            self._hub._unsubscribe(self)
            self._wake()

    async def get(self) -> Delivered | None:
        """The next event (or a drop marker); None once closed and drained."""
        while True:
            if self._dropped:
                watched = self.watched
                marker = EventsDropped(
                    watched.interaction_id if isinstance(watched, CallKey) else None, self._dropped
                )
                self._dropped = 0
                return marker
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[Delivered]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delivered]:
        while (event := await self.get()) is not None:
            yield event

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def queued(self) -> int:
        return len(self._queue)


class EventHub:
    def __init__(
        self, max_queued: int = 1000, history_per_call: int = 500, history_calls: int = 1000
    ) -> None:
        self._max_queued = max_queued
        self._history_per_call = history_per_call
        self._history_calls = history_calls
        self._watchers: dict[CallKey | str | None, set[Subscription]] = {}  # by call, tenant, all
        self._history: OrderedDict[CallKey, deque[CallEvent]] = OrderedDict()
        self.events_published = 0
        self.events_dropped = 0
        self._closed = False

    def publish(self, event: CallEvent) -> None:
        tenant = event.tenant_id or DEFAULT_TENANT
        call = CallKey(tenant, event.interaction_id)
        self.events_published += 1
        history = self._history.get(call)
        if history is None or isinstance(event, SessionStarted):
            history = self._history[call] = deque(maxlen=self._history_per_call)
            while len(self._history) > self._history_calls:
                self._history.popitem(last=False)
        self._history.move_to_end(call)
        history.append(event)
        watchers = self._watchers
        for watched in (call, tenant, None, CallKey(ANY_TENANT, event.interaction_id)):
            for sub in watchers.get(watched, ()):
                sub.push(event)

    def subscribe(self, call: CallKey, after_seq: int | None = None) -> Subscription:
        """Events of one call from now on; with `after_seq`, first the kept events of that
        call whose seq is greater."""
        sub = self._add(call)
        if after_seq is not None and not sub.closed:
            for event in self._history.get(call, ()):
                if event.seq > after_seq:
                    sub.push(event)
        return sub

    def subscribe_tenant(self, tenant: str | None) -> Subscription:
        """Events of every call of a tenant (None: of every tenant) from now on."""
        return self._add(tenant)

    def _add(self, watched: CallKey | str | None) -> Subscription:
        sub = Subscription(self, watched, self._max_queued)
        if self._closed:
            sub.close()
        else:
            self._watchers.setdefault(watched, set()).add(sub)
        return sub

    def close(self) -> None:
        """End every subscription (their `get` returns None once drained), and refuse new ones:
        at shutdown, so long-lived watchers such as SSE streams finish instead of being cut."""
        self._closed = True
        for subs in list(self._watchers.values()):
            for sub in list(subs):
                sub.close()

    def recent(self, call: CallKey) -> list[CallEvent]:
        return list(self._history.get(call, ()))

    def tenants_of(self, interaction_id: str) -> list[str]:
        """The tenants that have (or recently had) a call with this id."""
        return [key.tenant for key in self._history if key.interaction_id == interaction_id]

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._watchers.get(sub.watched)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._watchers[sub.watched]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._watchers.values())
