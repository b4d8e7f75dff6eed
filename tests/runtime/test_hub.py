"""The event hub never blocks a publisher and tells a slow watcher what it missed."""

from __future__ import annotations

from asr_worker.runtime.hub import EventHub


def _event(call: str, seq: int) -> dict[str, object]:
    return {"type": "transcript", "interaction_id": call, "seq": seq}


async def test_watchers_get_their_calls_events_in_order() -> None:
    hub = EventHub()
    one, everything = hub.subscribe("a"), hub.subscribe(None)
    for seq in range(1, 4):
        hub.publish(_event("a", seq))
        hub.publish(_event("b", seq))
    assert [(await one.get())["seq"] for _ in range(3)] == [1, 2, 3]  # type: ignore[index]
    assert one.queued == 0 and everything.queued == 6


async def test_a_slow_watcher_loses_the_oldest_and_gets_a_marker() -> None:
    hub = EventHub(max_queued=5)
    slow = hub.subscribe("a")
    for seq in range(1, 13):
        hub.publish(_event("a", seq))
    marker = await slow.get()
    assert marker == {"type": "events_dropped", "interaction_id": "a", "count": 7}
    assert [(await slow.get())["seq"] for _ in range(5)] == [8, 9, 10, 11, 12]  # type: ignore[index]
    assert hub.events_dropped == 7


async def test_resume_after_a_seq_replays_kept_events() -> None:
    hub = EventHub()
    for seq in range(1, 6):
        hub.publish(_event("a", seq))
    resumed = hub.subscribe("a", after_seq=3)
    assert [(await resumed.get())["seq"] for _ in range(2)] == [4, 5]  # type: ignore[index]


async def test_closing_ends_iteration() -> None:
    hub = EventHub()
    sub = hub.subscribe("a")
    hub.publish(_event("a", 1))
    sub.close()
    assert [e async for e in sub] == [_event("a", 1)]
    assert hub.subscribers == 0


async def test_close_ends_every_subscription_after_what_it_holds_and_refuses_new_ones() -> None:
    hub = EventHub()
    one, everything = hub.subscribe("c1"), hub.subscribe(None)
    hub.publish({"type": "session_started", "interaction_id": "c1", "seq": 1})
    hub.close()
    assert (await one.get() or {}).get("seq") == 1 and await one.get() is None
    assert (await everything.get() or {}).get("seq") == 1 and await everything.get() is None
    late = hub.subscribe("c1", after_seq=0)
    assert await late.get() is None and hub.subscribers == 0
