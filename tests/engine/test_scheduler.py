"""The decode scheduler: finals first, fair across calls, interims only in spare capacity,
bounded; and the pool that runs it in threads (with a fake decoder: the policy is under test)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asr_worker.engine.decoding import Decoded, DecodedWord
from asr_worker.engine.resample import SAMPLE_RATE, Float32Array
from asr_worker.engine.scheduler import DecodePool, Job, JobKind, Overloaded, Scheduler
from tests.support.wait import until

Result = Decoded | Exception


def job(kind: JobKind, key: str, at: float, seconds: float = 1.0, into: list[Result] | None = None) -> Job:
    sink = into if into is not None else []
    audio = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)
    return Job(kind, key, audio, at, sink.append)


def keys(batch: list[Job]) -> list[object]:
    return [j.key for j in batch]


def test_finals_go_before_interims() -> None:
    s = Scheduler(max_batch=4, interim_slots=1)
    s.want_interim("a", 0.0, lambda: job(JobKind.INTERIM, "a", 0.0))
    s.add_final(job(JobKind.FINAL, "b", 5.0))
    batch = s.next_batch(interims_running=0)
    assert [j.kind for j in batch] == [JobKind.FINAL]
    assert [j.kind for j in s.next_batch(interims_running=0)] == [JobKind.INTERIM]


def test_finals_are_fair_across_calls_one_per_channel_oldest_first() -> None:
    s = Scheduler(max_batch=2)
    for t in range(5):
        s.add_final(job(JobKind.FINAL, "chatty", float(t)))
    s.add_final(job(JobKind.FINAL, "quiet", 3.5))
    s.add_final(job(JobKind.FINAL, "late", 9.0))
    assert keys(s.next_batch(0)) == ["chatty", "quiet"]
    assert keys(s.next_batch(0)) == ["chatty", "late"], "the quiet call did not wait behind five"
    assert keys(s.next_batch(0)) == ["chatty"]
    assert s.finals_waiting == 2


def test_work_is_shared_between_idle_workers() -> None:
    s = Scheduler(max_batch=4)
    for key in "abcd":
        s.add_final(job(JobKind.FINAL, key, 0.0))
    assert len(s.next_batch(0, idle_workers=2)) == 2, "two idle workers take two each"
    assert len(s.next_batch(0, idle_workers=1)) == 2


def test_interims_only_use_their_slots_and_the_most_overdue_go_first() -> None:
    s = Scheduler(max_batch=2, interim_slots=1)
    for key, since in (("a", 3.0), ("b", 1.0), ("c", 2.0)):
        s.want_interim(key, since, functools.partial(job, JobKind.INTERIM, key, 0.0))
    assert s.next_batch(interims_running=1) == [], "the interim slot is taken: the rest stay free for finals"
    assert keys(s.next_batch(interims_running=0)) == ["b", "c"]
    s.want_interim("a", 9.0, lambda: None)  # already wanted: keeps how overdue it is
    assert s.interims_waiting == 1
    assert keys(s.next_batch(interims_running=0)) == ["a"]


def test_an_interim_takes_its_audio_when_dispatched_not_when_wanted() -> None:
    s = Scheduler()
    audio = {"seconds": 1.0}
    s.want_interim("a", 0.0, lambda: job(JobKind.INTERIM, "a", 0.0, audio["seconds"]))
    audio["seconds"] = 2.5  # more speech arrived while it waited
    (batch,) = s.next_batch(0)
    assert batch.audio_s == 2.5
    s.want_interim("b", 0.0, lambda: None)  # the utterance closed meanwhile
    assert s.next_batch(0) == []


def test_the_backlog_is_bounded_and_busy_before_it_is_full() -> None:
    s = Scheduler(max_backlog_s=10.0)
    for i in range(5):
        s.add_final(job(JobKind.FINAL, f"k{i}", 0.0, seconds=2.0))
    assert s.backlog_s == pytest.approx(10.0) and s.busy
    with pytest.raises(Overloaded):
        s.add_final(job(JobKind.FINAL, "one-more", 0.0, seconds=0.5))
    s.forget("k0")
    s.next_batch(0)
    assert s.backlog_s < 10.0


def test_forget_drops_a_closed_streams_work() -> None:
    s = Scheduler()
    s.add_final(job(JobKind.FINAL, "gone", 0.0))
    s.want_interim("gone", 0.0, lambda: job(JobKind.INTERIM, "gone", 0.0))
    s.forget("gone")
    assert s.next_batch(0) == [] and s.backlog_s == 0.0


class FakeDecoder:
    """Words from audio lengths; blocks on a gate so a test can hold a decode in flight."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()

    def decode_batch(
        self,
        audios: Sequence[Float32Array],
        prompts: Sequence[str] = (),
        languages: Sequence[str | None] = (),
    ) -> list[Decoded]:
        self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        seconds = [a.size / SAMPLE_RATE for a in audios]
        self.batches.append(seconds)
        return [Decoded((DecodedWord(f"w{s:g}", 0.0, s, 0.9),), s) for s in seconds]


async def test_the_pool_decodes_in_threads_and_reports_metrics() -> None:
    scheduler = Scheduler(max_batch=4, interim_slots=1)
    pool = DecodePool(scheduler, workers=2)
    decoder = FakeDecoder()
    registry = CollectorRegistry()
    pool.metrics.register(registry)
    results: list[Result] = []
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run(decoder))
        for i in range(3):
            scheduler.add_final(job(JobKind.FINAL, f"call-{i}", float(i), seconds=1.0 + i, into=results))
        pool.wake()
        await until(lambda: len(results) >= 3)
        runner.cancel()
    assert sorted(w.text for r in results if isinstance(r, Decoded) for w in r.words) == ["w1", "w2", "w3"]
    assert all(name.startswith("asr-decode") for name in decoder.threads)
    text = generate_latest(registry).decode()
    assert 'asr_local_decoded_utterances_total{kind="final"} 3.0' in text
    assert "asr_local_decode_rtf_count" in text and 'asr_local_queue_depth{kind="final"} 0.0' in text


async def test_while_a_decode_runs_finals_still_overtake_waiting_interims() -> None:
    scheduler = Scheduler(max_batch=1, interim_slots=1)
    pool = DecodePool(scheduler, workers=2)
    decoder = FakeDecoder()
    decoder.gate.clear()
    order: list[str] = []

    def tracked(kind: JobKind, key: str) -> Job:
        return Job(kind, key, np.zeros(SAMPLE_RATE, dtype=np.float32), 0.0, lambda r: order.append(key))

    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run(decoder))
        scheduler.want_interim("interim-1", 0.0, lambda: tracked(JobKind.INTERIM, "interim-1"))
        scheduler.want_interim("interim-2", 0.1, lambda: tracked(JobKind.INTERIM, "interim-2"))
        pool.wake()
        await until(lambda: pool.busy >= 1)  # interim-1 is decoding, holding the one interim slot
        scheduler.add_final(tracked(JobKind.FINAL, "final"))
        pool.wake()
        await until(lambda: pool.busy >= 2)  # the other worker took the final at once
        assert scheduler.interims_waiting == 1, "interim-2 waits: the free worker was for finals"
        decoder.gate.set()
        await until(lambda: len(order) >= 3)
        runner.cancel()
    assert order.index("final") < order.index("interim-2")


async def test_a_failing_decode_is_reported_to_its_jobs() -> None:
    class Broken:
        def decode_batch(
            self,
            audios: Sequence[Float32Array],
            prompts: Sequence[str] = (),
            languages: Sequence[str | None] = (),
        ) -> list[Decoded]:
            raise RuntimeError("boom")

    scheduler = Scheduler()
    pool = DecodePool(scheduler, workers=1)
    results: list[Result] = []
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run(Broken()))
        scheduler.add_final(job(JobKind.FINAL, "a", 0.0, into=results))
        pool.wake()
        await until(lambda: bool(results))
        runner.cancel()
    assert isinstance(results[0], RuntimeError)


def test_interims_wait_while_finals_decode_and_keep_to_their_share_of_time() -> None:
    s = Scheduler(interim_slots=1, interim_share=0.5)
    s.want_interim("a", 0.0, lambda: job(JobKind.INTERIM, "a", 0.0))
    assert s.next_batch(0, finals_running=1, now=10.0) == [], "a final is decoding: no interim starts"
    s.interim_batch_done(now=10.0, elapsed_s=0.4)  # the last interim batch took 0.4 s
    assert s.next_batch(0, now=10.3) == [], "rests as long as it worked (share 0.5)"
    assert keys(s.next_batch(0, now=10.4)) == ["a"]
    s.add_final(job(JobKind.FINAL, "b", 10.5))
    assert keys(s.next_batch(0, now=10.5)) == ["b"], "finals never rest"
