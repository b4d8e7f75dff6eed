"""The transcript documents this worker keeps in memory: each call's document events (finals,
starts and ends, provider changes, errors; `document.in_document`), from its first event
until `ASR_TRANSCRIPT_KEEP_S` after it ended.

Bounded by calls (`ASR_TRANSCRIPT_MAX_CALLS`) and by bytes (`ASR_TRANSCRIPT_MAX_BYTES`, an
estimate of what the events hold): past either bound the call that ended first goes, and only
when no ended call is left, the live call that started first (its document is then kept only
in part here; on the bus path Redis keeps it whole). Expired calls go when the store is next
written or read: no timer. `publish` is called for every event of every call and costs a
dict lookup for events no document holds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.events import CallError, CallEvent, SessionEnded, SessionStarted, Transcript
from ..core.ids import ANY_TENANT, DEFAULT_TENANT, CallKey
from ..settings import Section, Setting, int_range, seconds
from .document import in_document


@dataclass(frozen=True)
class TranscriptOptions:
    keep_s: float = 86_400.0
    max_calls: int = 1000
    max_bytes: int = 64 * 1024 * 1024


SETTINGS: Final = Section(
    "transcripts",
    "transcript documents",
    TranscriptOptions,
    (
        Setting(
            "keep_s",
            "ASR_TRANSCRIPT_KEEP_S",
            "keep a call's transcript document this long after it ended (in memory, and in Redis on "
            "the bus path) for GET /v1/calls/{id}/transcript",
            seconds(1.0, 30 * 86_400.0),
        ),
        Setting(
            "max_calls",
            "ASR_TRANSCRIPT_MAX_CALLS",
            "keep at most this many calls' documents in memory (the oldest ended go first)",
            int_range(1, 1_000_000),
        ),
        Setting(
            "max_bytes",
            "ASR_TRANSCRIPT_MAX_BYTES",
            "keep at most about this many bytes of documents in memory (the oldest ended go first)",
            int_range(1024, 1 << 40),
        ),
    ),
)

_EVENT_BYTES: Final = 200  # an event's fixed cost, estimated
_WORD_BYTES: Final = 120


def event_bytes(event: CallEvent) -> int:
    """About what keeping an event costs (its objects, not its JSON)."""
    if isinstance(event, Transcript):
        return _EVENT_BYTES + 2 * len(event.text) + sum(_WORD_BYTES + len(w.word) for w in event.words)
    if isinstance(event, CallError):
        return _EVENT_BYTES + len(event.message)
    return _EVENT_BYTES


@dataclass(slots=True)
class _Kept:
    events: list[CallEvent]
    size: int = 0


class TranscriptStore:
    def __init__(self, options: TranscriptOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self._calls: OrderedDict[CallKey, _Kept] = OrderedDict()  # in order of their first event
        self._ended: OrderedDict[CallKey, float] = OrderedDict()  # in order of their end: when
        self.size = 0
        self.evicted: dict[str, int] = {"expired": 0, "calls": 0, "bytes": 0}

    def __len__(self) -> int:
        return len(self._calls)

    def publish(self, event: CallEvent) -> None:
        if not in_document(event):
            return
        call = CallKey(event.tenant_id or DEFAULT_TENANT, event.interaction_id)
        kept = self._calls.get(call)
        if kept is None or (isinstance(event, SessionStarted) and not event.resumed):
            if kept is not None:
                self._forget(call)  # an id used again: a new call
            kept = self._calls[call] = _Kept([])
        size = event_bytes(event)
        kept.events.append(event)
        kept.size += size
        self.size += size
        if isinstance(event, SessionEnded):
            self._ended[call] = self._clock()
            self._ended.move_to_end(call)
        else:
            self._ended.pop(call, None)  # going on (a resume after an end here)
        self._bound()

    def events(self, call: CallKey) -> list[CallEvent]:
        """The call's document events kept here (none if it is not kept). A call named in
        `ANY_TENANT` is the one call kept with that id, if exactly one is."""
        self._expire()
        if call.tenant == ANY_TENANT:
            found = [key for key in self._calls if key.interaction_id == call.interaction_id]
            if len(found) != 1:
                return []
            call = found[0]
        kept = self._calls.get(call)
        return list(kept.events) if kept is not None else []

    def tenants_of(self, interaction_id: str) -> list[str]:
        return [key.tenant for key in self._calls if key.interaction_id == interaction_id]

    def _bound(self) -> None:
        self._expire()
        options = self.options
        while len(self._calls) > options.max_calls:
            self._evict("calls")
        while self.size > options.max_bytes and len(self._calls) > 1:
            self._evict("bytes")

    def _expire(self) -> None:
        ended, deadline = self._ended, self._clock() - self.options.keep_s
        while ended:
            call, at = next(iter(ended.items()))
            if at > deadline:
                break
            self._forget(call)
            self.evicted["expired"] += 1

    def _evict(self, why: str) -> None:
        call = next(iter(self._ended)) if self._ended else next(iter(self._calls))
        self._forget(call)
        self.evicted[why] += 1

    def _forget(self, call: CallKey) -> None:
        kept = self._calls.pop(call, None)
        if kept is not None:
            self.size -= kept.size
        self._ended.pop(call, None)


class StoreCollector(Collector):
    """The store's figures at scrape time."""

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        store = self._store
        yield GaugeMetricFamily(
            "asr_transcripts_kept",
            f"Calls whose transcript document this worker keeps (at most {store.options.max_calls}).",
            value=len(store),
        )
        yield GaugeMetricFamily(
            "asr_transcripts_kept_bytes",
            f"About the bytes those documents hold (at most {store.options.max_bytes}).",
            value=store.size,
        )
        evicted = CounterMetricFamily(
            "asr_transcripts_evicted",
            "Documents forgotten: expired (ASR_TRANSCRIPT_KEEP_S after the call ended), or to stay "
            "within ASR_TRANSCRIPT_MAX_CALLS or ASR_TRANSCRIPT_MAX_BYTES.",
            labels=["reason"],
        )
        for reason, count in store.evicted.items():
            evicted.add_metric([reason], count)
        yield evicted
