"""The documents a worker keeps in memory: until ASR_TRANSCRIPT_KEEP_S after each call ended,
at most ASR_TRANSCRIPT_MAX_CALLS calls and about ASR_TRANSCRIPT_MAX_BYTES, the calls that
ended first going first; a live call goes only when no ended one is left. On a fake clock."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from asr_worker.core.events import SessionEnded, SessionStarted, Transcript
from asr_worker.core.ids import ANY_TENANT, CallKey
from asr_worker.transcripts.store import StoreCollector, TranscriptOptions, TranscriptStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def start(iid: str, tenant: str = "acme") -> SessionStarted:
    return SessionStarted(iid, tenant, 1, "mock", "linear16", 8000, 1, 0)


def final(iid: str, text: str = "hello there", tenant: str = "acme") -> Transcript:
    return Transcript(iid, tenant, 2, 0, True, True, False, text, 0.9, 0.0, 1.0, (), "mock", 10, 0)


def end(iid: str, tenant: str = "acme") -> SessionEnded:
    return SessionEnded(iid, tenant, 3, "end", 1.0, 0, 1, "mock", 0)


def kept(store: TranscriptStore, *iids: str) -> list[str]:
    return [iid for iid in iids if store.events(CallKey("acme", iid))]


def test_an_ended_call_is_kept_for_keep_s_then_forgotten() -> None:
    clock = Clock()
    store = TranscriptStore(TranscriptOptions(keep_s=60.0), clock)
    for event in (start("a"), final("a"), end("a"), start("b")):
        store.publish(event)
    clock.now = 59.0
    assert kept(store, "a", "b") == ["a", "b"]
    clock.now = 60.0
    assert kept(store, "a", "b") == ["b"]  # b has not ended: it stays
    assert store.evicted["expired"] == 1


def test_past_its_bounds_the_call_that_ended_first_goes_first() -> None:
    store = TranscriptStore(TranscriptOptions(max_calls=2), Clock())
    store.publish(start("live"))
    for iid in ("x", "y"):
        store.publish(start(iid))
        store.publish(end(iid))
    assert kept(store, "live", "x", "y") == ["live", "y"] and store.evicted["calls"] == 1
    store.publish(start("z"))
    assert kept(store, "live", "y", "z") == ["live", "z"]
    store.publish(start("w"))  # no ended call left: the oldest live one goes
    assert kept(store, "live", "z", "w") == ["z", "w"]


def test_bytes_are_bounded_and_reported() -> None:
    store = TranscriptStore(TranscriptOptions(max_bytes=4096), Clock())
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    for n in range(10):
        store.publish(start(f"c{n}"))
        store.publish(final(f"c{n}", "word " * 100))
        store.publish(end(f"c{n}"))
    assert store.size <= 4096 and len(store) < 10 and kept(store, "c9") == ["c9"]
    assert registry.get_sample_value("asr_transcripts_kept") == len(store)
    assert registry.get_sample_value("asr_transcripts_kept_bytes") == store.size
    assert registry.get_sample_value("asr_transcripts_evicted_total", {"reason": "bytes"}) == 10 - len(store)


def test_interims_are_not_kept_and_any_tenant_finds_the_one_call() -> None:
    store = TranscriptStore(TranscriptOptions(), Clock())
    store.publish(start("same", "t1"))
    store.publish(Transcript("same", "t1", 2, 0, False, False, False, "dra", 0.5, 0.0, 0.4, (), "mock", 1, 0))
    assert len(store.events(CallKey(ANY_TENANT, "same"))) == 1
    store.publish(start("same", "t2"))
    assert store.events(CallKey(ANY_TENANT, "same")) == []  # two tenants: which one is not said
    assert sorted(store.tenants_of("same")) == ["t1", "t2"]
