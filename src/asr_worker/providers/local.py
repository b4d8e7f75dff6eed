"""The `local` provider: offline streaming Whisper on this machine, the embedded default.

One `LocalProvider` per process holds the model (loaded once, in a thread, when the worker
starts: `run`), the Silero VAD, and the decode pool every call shares. A `LocalStream` is one
call's stream; each of its channels is an utterance stream of its own:

    bytes -> int16 -> 16 kHz float (soxr) -> Silero VAD -> Segmenter -> utterances
    open utterance --(every ~0.7 s of new audio, when a decoder is spare)--> interim
    closed utterance --(queued, finals first)--> final with word times

Results follow the provider contract (Deepgram's shape): times in seconds from the stream's
first byte; a channel's finals tile its timeline, so every utterance's final covers the
silence before it, and silence with no speech gets an empty final about every second (the
core frees its replay buffer by this coverage); finals are emitted in order even though their
decodes finish out of order; `finalize` closes whatever is open and answers with a final
marked `from_finalize` covering everything sent; interims of the open utterance carry a
stable prefix (`engine/agreement.py`) and are dropped while an earlier final is still due.

Decoding never happens on the event loop; the VAD (0.05 ms a window) and resampling do.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from prometheus_client import CollectorRegistry

from ..core.audio import AudioFormat
from ..core.provider_events import (
    ProviderError,
    ProviderEvent,
    SpeechStarted,
    StreamMetadata,
    TranscriptResult,
    UtteranceEnd,
    Word,
)
from ..engine.agreement import Agreement, normalize
from ..engine.model import ModelChoice, resolve_model
from ..engine.resample import SAMPLE_RATE, Float32Array, StreamResampler, split_channels
from ..engine.scheduler import DecodePool, Job, JobKind, Overloaded, Scheduler
from ..engine.vad import Segmenter as VadSegmenter
from ..engine.vad import SileroVad, Utterance, VadConfig, VadStream
from ..engine.whisper import Decoded, DecodedWord, Decoder, WhisperDecoder, WhisperOptions
from .base import ProviderHealth, ResultQueue, StreamRequest

log = logging.getLogger("asr_worker.local")

_EVENT_QUEUE_MAX: Final = 1024
_ARRIVALS_MAX: Final = 4096
_OPEN_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class LocalOptions:
    model: ModelChoice = field(default_factory=ModelChoice)
    compute_type: str = "int8"
    cpu_threads: int = 1
    num_workers: int = 2
    language: str = "en"
    vad: VadConfig = field(default_factory=VadConfig)
    interim_interval_s: float = 0.7  # new audio in the open utterance between two interims
    first_interim_s: float = 0.5  # utterance audio before its first interim
    silence_final_s: float = 1.0  # an empty final at least this often through silence
    max_batch: int = 4
    max_backlog_s: float = 120.0


class LocalProvider:
    name = "local"

    def __init__(
        self,
        options: LocalOptions | None = None,
        *,
        decoder: Decoder | None = None,
        vad: SileroVad | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`decoder`/`vad` given (tests) skip loading; otherwise `run` loads them."""
        self.options = options or LocalOptions()
        opts = self.options
        self.scheduler = Scheduler(
            max_batch=opts.max_batch,
            interim_slots=max(1, opts.num_workers - 1),
            max_backlog_s=opts.max_backlog_s,
        )
        self.pool = DecodePool(self.scheduler, opts.num_workers, clock)
        self.metrics = self.pool.metrics
        self.clock = clock
        self._decoder = decoder
        self._vad = vad
        self._error: str | None = None
        self._ready = asyncio.Event()
        self._running = False

    # --- lifetime ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Load the model (off the event loop), then decode for every call until cancelled."""
        decoder = await self._loaded_decoder()
        if decoder is None:
            return
        self._running = True
        self._ready.set()
        try:
            await self.pool.run(decoder)
        finally:
            self._running = False

    async def _loaded_decoder(self) -> Decoder | None:
        if self._decoder is not None and self._vad is not None:
            return self._decoder
        try:
            self._decoder, self._vad = await asyncio.to_thread(self._load)
        except Exception as exc:  # the worker stays up, not ready, and says why
            self._error = f"the local speech model could not be loaded: {exc}"
            log.error("local engine failed to start", extra={"detail": str(exc)})
            self._ready.set()
            return None
        return self._decoder

    def _load(self) -> tuple[Decoder, SileroVad]:
        opts = self.options
        started = time.monotonic()
        model = resolve_model(opts.model)
        verified = time.monotonic()
        decoder = WhisperDecoder.load(
            WhisperOptions(model, opts.compute_type, opts.cpu_threads, opts.num_workers, opts.language)
        )
        decoder.decode_batch([np.zeros(SAMPLE_RATE, dtype=np.float32)])  # warm the kernels up
        vad = self._vad or SileroVad.load()
        log.info(
            "local engine ready",
            extra={
                "model": opts.model.describe(),
                "compute_type": opts.compute_type,
                "cpu_threads": opts.cpu_threads,
                "num_workers": opts.num_workers,
                "verify_s": round(verified - started, 2),
                "load_s": round(time.monotonic() - verified, 2),
            },
        )
        return decoder, vad

    def health(self) -> ProviderHealth:
        if self._error is not None:
            return ProviderHealth(ok=False, detail=self._error, ready=False)
        if not self._running:
            return ProviderHealth(ok=True, detail="loading the speech model", ready=False)
        if self.scheduler.busy:
            return ProviderHealth(ok=True, detail="the speech engine is behind", ready=True)
        return ProviderHealth(ok=True)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self.metrics.register(registry)

    async def aclose(self) -> None:
        return None  # the pool and its threads end with `run`

    # --- calls ------------------------------------------------------------------------------

    async def open(self, request: StreamRequest) -> LocalStream:
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), _OPEN_TIMEOUT_S)
            except TimeoutError:
                raise ProviderError(
                    "engine_starting", "the local speech engine is still loading", retryable=True
                ) from None
        if self._error is not None or self._vad is None:
            raise ProviderError("model_unavailable", self._error or "no speech model", retryable=False)
        if self.scheduler.busy:
            self.metrics.refused.inc()
            raise ProviderError(
                "engine_busy", "the local speech engine is too far behind to take a call", retryable=True
            )
        return LocalStream(self, request, self._vad)


@dataclass(eq=False, slots=True)
class _Slot:
    """One final of a channel, in order: covers [start, end) of the channel's 16 kHz timeline."""

    start: int
    end: int
    audio_start: int = 0  # where the decoded audio began (word times are relative to it)
    speech_end: int | None = None  # None: a silence final, nothing to decode
    endpointed: bool = False
    from_finalize: bool = False
    end_s: float | None = None  # exact end in seconds (at Finalize), else end / 16 kHz
    result: Decoded | None = None
    done: bool = False


class _Channel:
    """One channel of a stream: its audio, VAD, utterances and finals."""

    def __init__(self, stream: LocalStream, index: int, vad: VadStream) -> None:
        self.stream = stream
        self.index = index
        self.resampler = StreamResampler(stream.fmt.sample_rate)
        self.vad = vad
        self.segmenter = VadSegmenter(stream.provider.options.vad)
        self.agreement = Agreement()
        self.position = 0  # 16 kHz samples received
        self.covered = 0  # end of the last final queued
        self.slots: deque[_Slot] = deque()
        self._chunks: deque[tuple[int, Float32Array]] = deque()  # (start position, samples)
        self.utterance = 0  # id of the open (or last) utterance
        self.interim_wanted = False
        self.interim_end = 0  # audio end of the last interim requested

    # --- audio ------------------------------------------------------------------------------

    def take(self, samples: Float32Array, now: float) -> None:
        out = self.resampler.push(samples)
        self._append(out)
        was_open = self.segmenter.open_start is not None
        for utterance in self.segmenter.push(self.vad.push(out)):
            self._close(utterance, now)
            was_open = False
        if self.segmenter.open_start is not None and not was_open:
            self._opened()
        self._silence_final()
        self._maybe_want_interim(now)

    def finalize(self, end_s: float, now: float) -> None:
        self._append(self.resampler.flush())
        for closed in self.segmenter.push(self.vad.push(np.zeros(0, dtype=np.float32))):
            self._close(closed, now)
        last = self.segmenter.close_now(self.position)
        if last is not None:
            self._close(last, now, from_finalize=True, end_s=end_s)
        else:
            self.slots.append(_Slot(self.covered, self.position, from_finalize=True, end_s=end_s, done=True))
            self.covered = self.position
        self.segmenter.floor = self.position
        self.stream.scheduler.cancel_interim(self)
        self.interim_wanted = False

    def _append(self, samples: Float32Array) -> None:
        if samples.size:
            self._chunks.append((self.position, samples))
            self.position += samples.size
        # Keep what a future utterance may start from (its padding reaches back), no more.
        keep_from = self.segmenter.open_start
        if keep_from is None:
            keep_from = max(self.covered, self.segmenter.position - 2 * self.segmenter.config.samples(1000))
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= keep_from:
            self._chunks.popleft()

    def audio(self, start: int, end: int) -> Float32Array:
        parts = []
        for pos, chunk in self._chunks:
            lo, hi = max(start, pos), min(end, pos + chunk.size)
            if lo < hi:
                parts.append(chunk[lo - pos : hi - pos])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    # --- utterances -------------------------------------------------------------------------

    def _opened(self) -> None:
        self.utterance += 1
        self.agreement.reset()
        self.interim_end = self.segmenter.open_start or self.position
        start = self.segmenter.speech_start or 0
        self.stream.push(SpeechStarted(self.index, start / SAMPLE_RATE))

    def _close(
        self, utterance: Utterance, now: float, *, from_finalize: bool = False, end_s: float | None = None
    ) -> None:
        slot = _Slot(
            self.covered,
            utterance.end,
            audio_start=utterance.start,
            speech_end=utterance.speech_end,
            endpointed=utterance.endpointed,
            from_finalize=from_finalize,
            end_s=end_s,
        )
        self.slots.append(slot)
        self.covered = utterance.end
        self.utterance += 1  # interims still in flight for it are stale now
        self.stream.scheduler.cancel_interim(self)
        self.interim_wanted = False
        self.agreement.reset()
        audio = self.audio(utterance.start, utterance.end)
        job = Job(JobKind.FINAL, self, audio, now, lambda result: self._final_done(slot, result))
        try:
            self.stream.scheduler.add_final(job)
        except Overloaded as exc:
            self.stream.provider.metrics.refused.inc()
            raise ProviderError(
                "engine_overloaded", f"the local speech engine is behind: {exc}", retryable=True
            ) from None
        self.stream.provider.pool.wake()

    def _silence_final(self) -> None:
        """Through silence, an empty final about every second: coverage keeps moving."""
        if self.segmenter.open_start is not None:
            return
        pad = self.segmenter.config.samples(self.segmenter.config.pad_ms)
        end = self.segmenter.position - pad
        if end - self.covered >= round(self.stream.provider.options.silence_final_s * SAMPLE_RATE):
            self.slots.append(_Slot(self.covered, end, done=True))
            self.covered = end
            self.segmenter.floor = max(self.segmenter.floor, end)
            self.emit_ready()

    def _final_done(self, slot: _Slot, result: Decoded | Exception) -> None:
        if isinstance(result, Exception):
            self.stream.fail(ProviderError("engine_error", f"decoding failed: {result}", retryable=True))
            return
        slot.result = result
        slot.done = True
        self.emit_ready()

    def emit_ready(self) -> None:
        """Emit the finals at the head of the line whose decodes are done, in order."""
        stream = self.stream
        while self.slots and self.slots[0].done:
            slot = self.slots.popleft()
            words = _words(slot.result, slot.audio_start) if slot.result else ()
            start_s = slot.start / SAMPLE_RATE
            end_s = slot.end_s if slot.end_s is not None else slot.end / SAMPLE_RATE
            stream.push(
                TranscriptResult(
                    channel=self.index,
                    is_final=True,
                    speech_final=bool(words) and slot.endpointed,
                    text=" ".join(w.punctuated_word or w.word for w in words),
                    confidence=slot.result.confidence if slot.result and words else 0.0,
                    start=start_s,
                    duration=max(0.0, end_s - start_s),
                    words=words,
                    from_finalize=slot.from_finalize,
                    channels=stream.fmt.channels,
                )
            )
            if words and slot.speech_end is not None:
                arrived = stream.arrival_of(slot.speech_end)
                if arrived is not None:
                    stream.provider.metrics.final_latency.observe(max(0.0, stream.provider.clock() - arrived))
                if slot.endpointed:
                    stream.push(UtteranceEnd(self.index, words[-1].end))
        stream.maybe_close()

    # --- interims ---------------------------------------------------------------------------

    def _maybe_want_interim(self, now: float) -> None:
        start = self.segmenter.open_start
        if start is None or self.interim_wanted or self.stream.closed:
            return
        opts = self.stream.provider.options
        grown = self.position - max(self.interim_end, start)
        if (
            self.position - start < opts.first_interim_s * SAMPLE_RATE
            or grown < opts.interim_interval_s * SAMPLE_RATE
        ):
            return
        self.interim_wanted = True
        self.stream.scheduler.want_interim(self, now, self._make_interim)
        self.stream.provider.pool.wake()

    def _make_interim(self) -> Job | None:
        start = self.segmenter.open_start
        if start is None or self.stream.closed:
            self.interim_wanted = False
            return None
        utterance, end = self.utterance, self.position
        self.interim_end = end
        return Job(
            JobKind.INTERIM,
            self,
            self.audio(start, end),
            self.stream.provider.clock(),
            lambda result: self._interim_done(utterance, start, end, result),
        )

    def _interim_done(self, utterance: int, start: int, end: int, result: Decoded | Exception) -> None:
        self.interim_wanted = False
        if isinstance(result, Exception) or utterance != self.utterance or self.segmenter.open_start is None:
            return  # stale: the utterance closed meanwhile and its final supersedes this
        shown = self.agreement.update(list(result.words))
        if not self.slots:  # an earlier final still due goes first; a late interim is dropped
            words = _words(Decoded(tuple(shown), result.audio_s), start)
            covered_s = self.covered / SAMPLE_RATE
            self.stream.push(
                TranscriptResult(
                    channel=self.index,
                    is_final=False,
                    speech_final=False,
                    text=" ".join(w.punctuated_word or w.word for w in words),
                    confidence=result.confidence,
                    start=covered_s,
                    duration=max(0.0, end / SAMPLE_RATE - covered_s),
                    words=words,
                    channels=self.stream.fmt.channels,
                )
            )
        self._maybe_want_interim(self.stream.provider.clock())


class LocalStream:
    def __init__(self, provider: LocalProvider, request: StreamRequest, vad: SileroVad) -> None:
        self.provider = provider
        self.request = request
        self.fmt: AudioFormat = request.fmt
        self.scheduler = provider.scheduler
        self.request_id = str(uuid.uuid4())
        self.channels = [_Channel(self, c, vad.stream()) for c in range(request.fmt.channels)]
        self._results = ResultQueue(_EVENT_QUEUE_MAX)
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=_ARRIVALS_MAX)  # (16 kHz position, time)
        self._frames_in = 0  # input frames (samples per channel)
        self._since_finalize = False
        self._closing = False
        self.closed = False
        self._failed: ProviderError | None = None

    # --- the ProviderStream interface -------------------------------------------------------

    async def send_audio(self, data: bytes) -> None:
        self._check_open()
        if not data:
            return
        now = self.provider.clock()
        self._frames_in += len(data) // self.fmt.frame_bytes
        self._since_finalize = True
        try:
            for channel, samples in zip(self.channels, split_channels(data, self.fmt), strict=True):
                channel.take(samples, now)
        except ProviderError as exc:
            self.fail(exc)
            raise
        self._arrivals.append((self.channels[0].position, now))

    async def keepalive(self) -> None:
        self._check_open()

    async def finalize(self) -> None:
        self._check_open()
        self._finalize()

    async def close_stream(self) -> None:
        self._check_open()
        if self._since_finalize:
            self._finalize()
        self._closing = True
        self.maybe_close()

    async def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for channel in self.channels:
            self.scheduler.forget(channel)
        self._results.finish()

    def events(self) -> AsyncIterator[ProviderEvent]:
        return self._results.events()

    # --- inside -----------------------------------------------------------------------------

    def _finalize(self) -> None:
        now = self.provider.clock()
        end_s = self._frames_in / self.fmt.sample_rate
        for channel in self.channels:
            channel.finalize(end_s, now)
        self._arrivals.append((self.channels[0].position, now))
        self._since_finalize = False
        for channel in self.channels:
            channel.emit_ready()

    def push(self, event: ProviderEvent) -> None:
        if self.closed:
            return
        if not self._results.put(event):
            self.fail(ProviderError("events_overflow", "results are not being read", retryable=True))

    def fail(self, error: ProviderError) -> None:
        if self.closed:
            return
        self._failed = error
        self.closed = True
        for channel in self.channels:
            self.scheduler.forget(channel)
        self._results.finish(error)

    def maybe_close(self) -> None:
        """After CloseStream, end the events once every final has gone out."""
        if not self._closing or self.closed or any(c.slots for c in self.channels):
            return
        self.push(StreamMetadata(self.request_id, self._frames_in / self.fmt.sample_rate))
        self.closed = True
        for channel in self.channels:
            self.scheduler.forget(channel)
        self._results.finish()

    def arrival_of(self, position: int) -> float | None:
        """When the audio at this 16 kHz position reached the provider."""
        for pos, at in self._arrivals:
            if pos >= position:
                return at
        return None

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self.closed:
            raise ProviderError("closed", "the local stream is closed", retryable=True)


def _words(result: Decoded | None, audio_start: int) -> tuple[Word, ...]:
    if result is None:
        return ()
    offset = audio_start / SAMPLE_RATE
    return tuple(_word(w, offset) for w in result.words)


def _word(w: DecodedWord, offset: float) -> Word:
    return Word(
        word=normalize(w.text) or w.text,
        start=round(offset + w.start, 3),
        end=round(offset + max(w.start, w.end), 3),
        confidence=round(w.probability, 4),
        punctuated_word=w.text,
    )


def create(options: LocalOptions) -> LocalProvider:
    return LocalProvider(options)
