"""The event hub never blocks a publisher and tells a slow watcher what it missed."""

from __future__ import annotations

from asr_worker.core.events import EventsDropped, SessionStarted, Transcript
from asr_worker.core.ids import CallKey
from asr_worker.runtime.hub import EventHub, Subscription


def _event(call: str, seq: int) -> Transcript:
    return Transcript(call, None, seq, 0, True, True, False, "x", 0.9, 0.0, 1.0, (), "mock", 0, 0)


async def _seqs(sub: Subscription, count: int) -> list[int]:
    """The seqs of the next `count` events, which must be call events (no drop marker)."""
    seqs = []
    for _ in range(count):
        event = await sub.get()
        assert event is not None and not isinstance(event, EventsDropped), event
        seqs.append(event.seq)
    return seqs


async def test_watchers_get_their_calls_events_in_order() -> None:
    hub = EventHub()
    one, everything = hub.subscribe(CallKey("default", "a")), hub.subscribe_tenant("default")
    for seq in range(1, 4):
        hub.publish(_event("a", seq))
        hub.publish(_event("b", seq))
    assert await _seqs(one, 3) == [1, 2, 3]
    assert one.queued == 0 and everything.queued == 6


async def test_a_slow_watcher_loses_the_oldest_and_gets_a_marker() -> None:
    hub = EventHub(max_queued=5)
    slow = hub.subscribe(CallKey("default", "a"))
    for seq in range(1, 13):
        hub.publish(_event("a", seq))
    marker = await slow.get()
    assert marker == EventsDropped("a", 7)
    assert await _seqs(slow, 5) == [8, 9, 10, 11, 12]
    assert hub.events_dropped == 7


async def test_resume_after_a_seq_replays_kept_events() -> None:
    hub = EventHub()
    for seq in range(1, 6):
        hub.publish(_event("a", seq))
    resumed = hub.subscribe(CallKey("default", "a"), after_seq=3)
    assert await _seqs(resumed, 2) == [4, 5]


async def test_a_new_session_started_restarts_the_calls_history() -> None:
    hub = EventHub()
    for seq in range(1, 4):
        hub.publish(_event("a", seq))
    hub.publish(SessionStarted("a", None, 1, "mock", "linear16", 8000, 1, 0))
    hub.publish(_event("a", 2))
    assert [event.seq for event in hub.recent(CallKey("default", "a"))] == [1, 2]
    assert isinstance(hub.recent(CallKey("default", "a"))[0], SessionStarted)


async def test_closing_ends_iteration() -> None:
    hub = EventHub()
    sub = hub.subscribe(CallKey("default", "a"))
    hub.publish(_event("a", 1))
    sub.close()
    assert [e async for e in sub] == [_event("a", 1)]
    assert hub.subscribers == 0


async def test_close_ends_every_subscription_after_what_it_holds_and_refuses_new_ones() -> None:
    hub = EventHub()
    one, everything = hub.subscribe(CallKey("default", "c1")), hub.subscribe_tenant("default")
    hub.publish(SessionStarted("c1", None, 1, "mock", "linear16", 8000, 1, 0))
    hub.close()
    assert await _seqs(one, 1) == [1] and await one.get() is None
    assert await _seqs(everything, 1) == [1] and await everything.get() is None
    late = hub.subscribe(CallKey("default", "c1"), after_seq=0)
    assert await late.get() is None and hub.subscribers == 0
