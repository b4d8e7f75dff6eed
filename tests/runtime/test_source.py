"""The source handle through its public methods, on a real session manager with the mock
provider: joining attaches, leaving detaches exactly once however often it is called, the
last source leaving starts the grace period and a source coming back stops it, and what a
source feeds, presses, reports and ends reaches the call's events in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.clock import SystemClock
from asr_worker.core.events import CallEvent
from asr_worker.core.ids import CallKey
from asr_worker.core.session import Phase
from asr_worker.core.session_types import SessionConfig
from asr_worker.errors import SessionRefused
from asr_worker.metrics import LiveTotals, WorkerMetrics
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.runtime.manager import CallLimits, SessionManager
from tests.support.audio import PCM8K, speechlike

FRAME = speechlike(0.02)  # 20 ms of 8 kHz linear16


Wire = dict[str, object]


class Events:
    """What the manager publishes, as its watchers read it, and a way to wait for one kind
    without sleeping."""

    def __init__(self) -> None:
        self.seen: list[Wire] = []
        self._arrived = asyncio.Event()

    def publish(self, event: CallEvent) -> None:
        self.seen.append(event.wire())
        self._arrived.set()

    def types(self) -> list[object]:
        return [event["type"] for event in self.seen]

    def of(self, kind: str) -> list[Wire]:
        return [event for event in self.seen if event["type"] == kind]

    async def until(self, kind: str) -> Wire:
        async with asyncio.timeout(10):
            while not (found := self.of(kind)):
                self._arrived.clear()
                await self._arrived.wait()
        return found[0]


async def _manager(events: Events, *, grace_s: float = 10.0, max_sources: int = 8) -> SessionManager:
    provider = MockProvider(MockOptions())
    return SessionManager(
        provider=provider,
        config=SessionConfig(grace_s=grace_s),
        limits=CallLimits(max_sessions=10, max_sources_per_call=max_sources),
        publish=events.publish,
        metrics=WorkerMetrics(LiveTotals, provider.name),
        clock=SystemClock(),
    )


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def manager(events: Events) -> AsyncIterator[SessionManager]:
    async with await _manager(events) as running:
        yield running


async def test_joining_attaches_and_leaving_detaches_exactly_once(manager: SessionManager) -> None:
    first = manager.join(CallKey("default", "call-1"), PCM8K)
    second = manager.join(CallKey("default", "call-1"), PCM8K)
    assert first.runner is second.runner, "two sources of one call feed one session"
    core = first.runner.core
    assert (core.source_count, first.attached, second.attached) == (2, True, True)
    assert first.interaction_id == "call-1"

    first.leave()
    first.leave()  # every path a socket goes away by may leave: only the first counts
    assert (core.source_count, first.attached, second.attached) == (1, False, True)
    second.leave()
    assert core.source_count == 0 and core.phase is Phase.ACTIVE, "the call waits its grace period"

    second.rejoin()
    second.rejoin()
    assert (core.source_count, second.attached) == (1, True)


async def test_a_refused_join_leaves_the_call_as_it_was(manager: SessionManager) -> None:
    source = manager.join(CallKey("default", "call-1"), PCM8K)
    with pytest.raises(SessionRefused) as refused:
        manager.join(CallKey("default", "call-1"), AudioFormat(Encoding.MULAW, 8000, 1))
    assert refused.value.code == "format_mismatch"
    assert source.runner.core.source_count == 1


async def test_a_call_takes_no_more_sources_than_its_limit(events: Events) -> None:
    async with await _manager(events, max_sources=2) as manager:
        manager.join(CallKey("default", "call-1"), PCM8K)
        manager.join(CallKey("default", "call-1"), PCM8K)
        with pytest.raises(SessionRefused) as refused:
            manager.join(CallKey("default", "call-1"), PCM8K)
        assert refused.value.code == "too_many_sources"


async def test_what_a_source_sends_reaches_the_call_in_order(manager: SessionManager, events: Events) -> None:
    source = manager.join(CallKey("default", "call-1"), PCM8K)
    assert source.feed(FRAME)
    assert not source.feed(FRAME[:3]), "not whole samples: dropped, and the call is told"
    source.dtmf("5", 0)
    source.error("bad_message", "a message this source cannot take")
    source.end("end")
    ended = await events.until("session_ended")
    assert ended["reason"] == "end"
    errors = [(e["code"], e["message"]) for e in events.of("error")]
    assert errors[0][0] == "bad_audio"
    assert errors[1] == ("bad_message", "a message this source cannot take")
    assert events.of("dtmf")[0]["digit"] == "5"
    kinds = [t for t in events.types() if t in ("error", "dtmf", "session_ended")]
    assert kinds == ["error", "dtmf", "error", "session_ended"]
    assert not source.feed(FRAME), "the call has ended: nothing more is taken"


async def test_abandon_ends_the_call_at_once_and_leaves(manager: SessionManager, events: Events) -> None:
    source = manager.join(CallKey("default", "call-1"), PCM8K)
    source.abandon("abandoned", "given up")
    assert source.runner.core.phase is Phase.ENDED and not source.attached
    assert events.of("error")[-1]["code"] == "abandoned"
    assert events.of("session_ended")[0]["reason"] == "abandoned"


async def test_the_last_source_leaving_ends_the_call_after_its_grace_unless_one_comes_back(
    events: Events,
) -> None:
    async with await _manager(events, grace_s=0.0) as manager:
        source = manager.join(CallKey("default", "call-1"), PCM8K)
        source.leave()  # with no grace period the session ends at its next turn...
        source.rejoin()  # ...unless a source is back before it: no await in between
        await events.until("session_started")  # the session's loop has had its turn
        source.dtmf("1", 0)  # taken only by a call still live
        source.leave()
        ended = await events.until("session_ended")
    assert ended["reason"] == "grace_timeout"
    assert [t for t in events.types() if t in ("dtmf", "session_ended")] == ["dtmf", "session_ended"]
