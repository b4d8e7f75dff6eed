"""Many calls, one model: what to decode next, and the worker threads that decode it.

`Scheduler` is the policy and has no clock, threads or model in it (tested with fakes):

* finals first: a batch is all finals whenever any final waits, so interims never delay them
  by more than the batch already running;
* fair across calls: a final batch takes the oldest waiting final of each channel (one per
  channel, oldest channels first), so a talkative call cannot starve a quiet one;
* interims fill spare capacity only: none starts while a final waits or is being decoded; at
  most `interim_slots` batches of interims run at once (one fewer than the workers, so a
  worker is always free for a final); and interims may keep the decoders busy for at most
  `interim_share` of the time (after an interim batch of T seconds, the next starts no sooner
  than T * (1 - share) / share later). A channel that wants an interim is remembered once,
  not queued: as calls multiply, batches grow, the rests grow with them, and each channel
  waits longer for its next interim (the most overdue go first) - interim frequency drops
  while finals keep their latency. The interim's audio is taken when it is dispatched, so
  it is the newest audio, never a stale copy;
* bounded: the audio of waiting finals may not exceed `max_backlog_s`; beyond it a final is
  refused (`Overloaded`), and `busy` tells the provider to refuse new calls before that;
* one engine per batch: each job says, when it is dispatched, which engine decodes it and in
  which language (`Job.route`: a channel that detected its language routes its next utterances
  to the engine that speaks it), and a batch takes the oldest job's engine, at most as many
  as that engine batches (`batch_limits`); the decoders are one pool whatever the engine, so
  finals of every engine go first and share it fairly.

`DecodePool` runs `workers` asyncio tasks that take batches and decode them in a thread pool of
the same size (CTranslate2 releases the GIL); batches are split among idle workers so two
finals on two idle workers decode in parallel rather than as one batch.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .capacity import CapacityModel
from .decoding import Decoded, Decoder
from .resample import SAMPLE_RATE, Float32Array


class JobKind(StrEnum):
    FINAL = "final"
    INTERIM = "interim"


# Which engine decodes a job (None: the pool's own) and in which language (an engine code, or
# None: the engine detects it).
Route = tuple[str | None, str | None]


def _default_route() -> Route:
    return None, None


@dataclass(eq=False, slots=True)
class Job:
    kind: JobKind
    key: Hashable  # the channel it belongs to
    audio: Float32Array
    queued_at: float
    deliver: Callable[[Decoded | Exception], None]
    # What the channel said before this audio (the decoder's context), asked for at dispatch
    # so that it holds every final decoded by then.
    prompt: Callable[[], str] = lambda: ""
    # Its engine and language, asked for at dispatch (a channel's language may be detected by
    # then); `engine` and `language` hold the answer once it is dispatched.
    route: Callable[[], Route] = _default_route
    engine: str | None = None
    language: str | None = None

    @property
    def audio_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


# Returns the job to run now for a channel that wanted an interim, or None if it no longer does.
InterimMaker = Callable[[], Job | None]


class Overloaded(Exception):
    """The engine is too far behind to take this final."""


@dataclass(slots=True)
class Scheduler:
    max_batch: int = 4
    interim_slots: int = 1
    interim_share: float = 0.5
    max_backlog_s: float = 120.0
    batch_limits: dict[str, int] = field(default_factory=dict)  # per engine, within max_batch
    _finals: dict[Hashable, deque[Job]] = field(default_factory=dict)
    _interims: dict[Hashable, tuple[float, InterimMaker]] = field(default_factory=dict)
    backlog_s: float = 0.0
    interims_resume_at: float = 0.0

    # --- submissions (from the event loop) --------------------------------------------------

    def add_final(self, job: Job) -> None:
        if self.backlog_s + job.audio_s > self.max_backlog_s:
            raise Overloaded(f"{self.backlog_s:.0f} s of audio already wait to be decoded")
        self._finals.setdefault(job.key, deque()).append(job)
        self.backlog_s += job.audio_s

    def want_interim(self, key: Hashable, now: float, make: InterimMaker) -> None:
        """`key` would like an interim; keeps the earliest time it asked (how overdue it is)."""
        if key not in self._interims:
            self._interims[key] = (now, make)

    def cancel_interim(self, key: Hashable) -> None:
        self._interims.pop(key, None)

    def forget(self, key: Hashable) -> None:
        """The channel's stream is gone: drop everything it still waits for."""
        for job in self._finals.pop(key, ()):
            self.backlog_s -= job.audio_s
        self._interims.pop(key, None)
        if not self._finals:
            self.backlog_s = 0.0  # no float drift

    # --- dispatch -----------------------------------------------------------------------------

    def interim_batch_done(self, now: float, elapsed_s: float) -> None:
        """An interim batch took `elapsed_s`: rest so interims keep to their share."""
        rest = elapsed_s * (1.0 - self.interim_share) / self.interim_share
        self.interims_resume_at = max(self.interims_resume_at, now + rest)

    def next_batch(
        self, interims_running: int, idle_workers: int = 1, finals_running: int = 0, now: float = 0.0
    ) -> list[Job]:
        """The next batch for a free worker, or [] if nothing may run now."""
        if self._finals:
            share = math.ceil(len(self._finals) / max(1, idle_workers))
            heads = sorted(self._finals.items(), key=lambda item: item[1][0].queued_at)
            batch: list[Job] = []
            limit = min(self.max_batch, share)
            for key, queue in heads:
                if len(batch) >= limit:
                    break
                job = queue[0]
                _dispatch(job)
                if batch and job.engine != batch[0].engine:
                    continue  # another engine's: a batch of its own
                if not batch:
                    limit = min(limit, self._limit(job.engine))
                queue.popleft()
                self.backlog_s -= job.audio_s
                if not queue:
                    del self._finals[key]
                batch.append(job)
            if not self._finals:
                self.backlog_s = 0.0
            return batch
        if (
            not self._interims
            or interims_running >= self.interim_slots
            or finals_running
            or now < self.interims_resume_at
        ):
            return []
        share = math.ceil(
            len(self._interims) / max(1, min(idle_workers, self.interim_slots - interims_running))
        )
        oldest = sorted(self._interims.items(), key=lambda item: item[1][0])[: min(self.max_batch, share)]
        interims: list[Job] = []
        for key, (wanted_at, make) in oldest:
            del self._interims[key]
            interim = make()
            if interim is None:
                continue
            _dispatch(interim)
            if interims and (
                interim.engine != interims[0].engine or len(interims) >= self._limit(interims[0].engine)
            ):
                self._interims[key] = (wanted_at, make)  # made again, with newer audio, next time
                continue
            interims.append(interim)
        return interims

    def _limit(self, engine: str | None) -> int:
        return self.batch_limits.get(engine, self.max_batch) if engine is not None else self.max_batch

    # --- state for metrics and admission ------------------------------------------------------

    @property
    def finals_waiting(self) -> int:
        return sum(len(q) for q in self._finals.values())

    @property
    def interims_waiting(self) -> int:
        return len(self._interims)

    @property
    def busy(self) -> bool:
        """Too far behind to take a new call."""
        return self.backlog_s > self.max_backlog_s / 2


def _dispatch(job: Job) -> None:
    """Settle a job's engine and language as its channel says now."""
    job.engine, job.language = job.route()


class EngineMetrics:
    """The engine's Prometheus metrics. Created unregistered; `register` puts them on the
    worker's registry (the worker makes its registry after its provider)."""

    RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
    LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

    def __init__(self, scheduler: Scheduler, pool: DecodePool) -> None:
        self.decode_rtf = Histogram(
            "asr_local_decode_rtf",
            "Real-time factor of each decode batch: wall time over the seconds of audio decoded.",
            buckets=self.RTF_BUCKETS,
            registry=None,
        )
        self.decode_seconds = Histogram(
            "asr_local_decode_seconds",
            "Wall time of each decode batch, by kind.",
            ["kind"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0),
            registry=None,
        )
        self.decoded = Counter(
            "asr_local_decoded_utterances", "Utterances decoded, by kind.", ["kind"], registry=None
        )
        self.decoded_audio = Counter(
            "asr_local_decoded_audio_seconds", "Seconds of audio decoded, by kind.", ["kind"], registry=None
        )
        self.decode_cpu = Counter(
            "asr_local_decode_cpu_seconds",
            "CPU time the decoding threads spent, by kind (against the audio: the decode cost).",
            ["kind"],
            registry=None,
        )
        self.final_latency = Histogram(
            "asr_local_final_latency_seconds",
            "From the arrival of the audio where speech ended to its final result.",
            buckets=self.LATENCY_BUCKETS,
            registry=None,
        )
        self.refused = Counter(
            "asr_local_overload_refusals",
            "Finals or calls refused because the engine was too far behind.",
            registry=None,
        )
        self._queue = _QueueCollector(scheduler, pool)

    def register(self, registry: CollectorRegistry) -> None:
        for collector in (
            self.decode_rtf,
            self.decode_seconds,
            self.decoded,
            self.decoded_audio,
            self.decode_cpu,
            self.final_latency,
            self.refused,
            self._queue,
        ):
            registry.register(collector)


class _QueueCollector(Collector):
    def __init__(self, scheduler: Scheduler, pool: DecodePool) -> None:
        self._scheduler = scheduler
        self._pool = pool

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "asr_local_queue_depth",
            "Decodes waiting: finals queued, and channels waiting for an interim.",
            labels=["kind"],
        )
        depth.add_metric([JobKind.FINAL], self._scheduler.finals_waiting)
        depth.add_metric([JobKind.INTERIM], self._scheduler.interims_waiting)
        yield depth
        yield GaugeMetricFamily(
            "asr_local_backlog_seconds",
            "Audio waiting in queued finals, seconds.",
            value=self._scheduler.backlog_s,
        )
        yield GaugeMetricFamily(
            "asr_local_decoders_busy", "Decode workers running a batch.", value=self._pool.busy
        )
        model = self._pool.capacity
        yield GaugeMetricFamily(
            "asr_local_decode_cost",
            "Wall seconds of decoding per second of audio (calibrated at start, then from finals).",
            value=model.cost_s,
        )
        yield GaugeMetricFamily(
            "asr_local_capacity_channels",
            "Audio channels the engine can carry at once, from its decode cost (a two-leg call is two).",
            value=model.channels or 0,
        )
        by_engine = GaugeMetricFamily(
            "asr_local_engine_decode_cost",
            "Wall seconds of decoding per second of audio, by engine loaded (a call on Whisper "
            "takes what this says more of the capacity than one on Moonshine).",
            labels=["engine"],
        )
        for engine, capacity in sorted(self._pool.capacities.items()):
            if engine in self._pool.decoders:
                by_engine.add_metric([engine], capacity.cost_s)
        yield by_engine


class DecodePool:
    def __init__(
        self,
        scheduler: Scheduler,
        workers: int,
        clock: Callable[[], float] = time.monotonic,
        engine: str = "",
    ) -> None:
        """`engine`: the name of the decoder `run` is given, which decodes jobs that name none;
        others join with `add`."""
        self.scheduler = scheduler
        self.workers = workers
        self.engine = engine
        self.decoders: dict[str, Decoder] = {}
        # What the decoders carry, from what each engine costs: `capacity` is the pool's own
        # engine's; the others' are in `capacities` by name.
        self.capacity = CapacityModel(workers)
        self.capacities: dict[str, CapacityModel] = {engine: self.capacity}
        self.metrics = EngineMetrics(scheduler, self)
        self._clock = clock
        self._work = asyncio.Event()
        self._idle = 0
        self._interims_running = 0
        self._finals_running = 0
        self.busy = 0

    def capacity_of(self, engine: str) -> CapacityModel:
        """The capacity model of an engine's decodes (made the first time it is asked for)."""
        model = self.capacities.get(engine)
        if model is None:
            model = self.capacities[engine] = CapacityModel(self.workers)
        return model

    def add(self, engine: str, decoder: Decoder) -> None:
        """Another engine's decoder, for the jobs that name it."""
        self.decoders[engine] = decoder

    def wake(self) -> None:
        """New work was submitted."""
        self._work.set()

    async def run(self, decoder: Decoder) -> None:
        """Decode until cancelled; `decoder` is the pool's own engine's."""
        self.decoders[self.engine] = decoder
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="asr-decode")
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(self.workers):
                    tg.create_task(self._worker(executor), name=f"decoder-{i}")
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _worker(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            kind = batch[0].kind
            engine = batch[0].engine if batch[0].engine is not None else self.engine
            decoder = self.decoders.get(engine)
            if decoder is None:  # never: a stream that needs an engine waits for it to load
                for job in batch:
                    job.deliver(LookupError(f"the {engine} engine is not loaded"))
                continue
            if kind is JobKind.INTERIM:
                self._interims_running += 1
            else:
                self._finals_running += 1
            self.busy += 1
            started = self._clock()
            try:
                results, cpu_s, wall_s = await loop.run_in_executor(
                    executor,
                    _decode,
                    decoder,
                    [j.audio for j in batch],
                    [j.prompt() for j in batch],
                    [j.language for j in batch],
                )
            except Exception as exc:
                for job in batch:
                    job.deliver(exc)
                continue
            finally:
                self.busy -= 1
                elapsed = self._clock() - started
                if kind is JobKind.INTERIM:
                    self._interims_running -= 1
                    self.scheduler.interim_batch_done(self._clock(), elapsed)
                    rest = self.scheduler.interims_resume_at - self._clock()
                    if rest > 0:
                        loop.call_later(rest, self._work.set)
                else:
                    self._finals_running -= 1
                self._work.set()  # an interim slot may have freed
            audio_s = sum(j.audio_s for j in batch)
            self.metrics.decode_seconds.labels(kind).observe(elapsed)
            self.metrics.decoded.labels(kind).inc(len(batch))
            self.metrics.decoded_audio.labels(kind).inc(audio_s)
            self.metrics.decode_cpu.labels(kind).inc(cpu_s)
            if kind is JobKind.FINAL:
                self.capacity_of(engine).observe(audio_s, wall_s, self._clock())
            if audio_s > 0:
                self.metrics.decode_rtf.observe(elapsed / audio_s)
            for job, result in zip(batch, results, strict=True):
                job.deliver(result)

    async def _next_batch(self) -> list[Job]:
        self._idle += 1
        try:
            while True:
                batch = self.scheduler.next_batch(
                    self._interims_running, self._idle, self._finals_running, self._clock()
                )
                if batch:
                    return batch
                self._work.clear()
                await self._work.wait()
        finally:
            self._idle -= 1


def _decode(
    decoder: Decoder, audios: list[Float32Array], prompts: list[str], languages: list[str | None]
) -> tuple[list[Decoded], float, float]:
    """In a decoding thread: the results, and the CPU and wall time this thread spent on them."""
    cpu, wall = time.thread_time(), time.perf_counter()
    results = decoder.decode_batch(audios, prompts, languages)
    return results, time.thread_time() - cpu, time.perf_counter() - wall
