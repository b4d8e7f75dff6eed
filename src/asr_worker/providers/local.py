"""The `local` provider: offline streaming speech recognition on this machine, the embedded
default: Moonshine base for English, Whisper for other languages (`engine/engines.py`).

One `LocalProvider` per process holds the models, the Silero VAD, and the decode pool every
call shares. The engine of the default language (`ASR_LOCAL_LANGUAGE`) loads, in a thread,
when the worker starts (`run`); another engine loads the first time a call needs it (a call in
Spanish on an English worker waits for Whisper to load, a few seconds, once), within the same
task group. A call's `language` picks its engine (`engine/languages.py`), and one this
provider cannot transcribe is refused (`language_refusal`) before its session starts. A call
on Whisper takes more of the engine's capacity than one on Moonshine, by what their decodes
cost here (`channel_weight`). A `LocalStream` is one call's stream; each of its channels is an
utterance stream of its own (`engine/channel.py`):

    bytes -> int16 -> 16 kHz float (soxr) -> Silero VAD -> Segmenter -> utterances
    open utterance --(every ~0.7 s of new audio, when a decoder is spare)--> interim
    closed utterance --(queued, finals first)--> final with word times

Results follow the provider interface (Deepgram's shape): times in seconds from the stream's
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
import math
import os
import statistics
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from ..core.audio import AudioFormat, Encoding
from ..core.call_options import MULTI, CallOptions
from ..core.codecs import decode_g711
from ..core.formatting import Formatter
from ..core.provider_events import ProviderEvent, StreamMetadata, TranscriptResult
from ..core.search import searched
from ..engine.capacity import CapacityModel
from ..engine.channel import Channel, ChannelEngine, ChannelOptions
from ..engine.decoding import Decoder, DecoderSettings
from ..engine.engines import AUTO, ENGINES, Engine, EngineSet
from ..engine.languages import DETECT, CallLanguage, call_language, engine_code, tidy
from ..engine.model import ModelChoice
from ..engine.resample import SAMPLE_RATE, StreamResampler, split_channels
from ..engine.scheduler import DecodePool, Scheduler
from ..engine.vad import SileroVad, VadConfig
from ..errors import ProviderError, StartError
from ..settings import Section, Setting, choice, int_range, term_list
from .base import ProviderHealth, ProviderKind, ResultQueue, StreamRequest

log = logging.getLogger("asr_worker.local")

_EVENT_QUEUE_MAX: Final = 1024
_ARRIVALS_MAX: Final = 4096
_OPEN_TIMEOUT_S: Final = 60.0
_REMEASURE_S: Final = 15.0  # with no final decoded for this long, the decode cost is measured again
# What an engine's decode costs before it is measured here (wall s per audio s, one thread; the
# 2-core machine of docs/local-engine.md): what a call's weight uses until then.
_PRIOR_COST_S: Final = {"moonshine": 0.02, "whisper": 0.25}
# Deepgram's `multi` languages (Nova-3): what a detection chooses among by default.
DETECT_AMONG: Final = ("en", "es", "fr", "de", "hi", "ru", "pt", "ja", "it", "nl")


@dataclass(frozen=True, slots=True)
class LocalOptions:
    engine: str = AUTO  # a name in engine.engines.ENGINES, or auto: the first that knows the language
    model: ModelChoice = field(default_factory=ModelChoice)
    compute_type: str = "int8"
    cpu_threads: int = 1
    num_workers: int = 0  # decodes at once; 0: one per core
    language: str = "en"  # a call's that names none: a language code, `multi` or `detect`
    detect_among: tuple[str, ...] = DETECT_AMONG  # what a detection may choose (empty: any)
    vad: VadConfig = field(default_factory=VadConfig)
    interim_interval_s: float = 0.7  # new audio in the open utterance between two interims
    first_interim_s: float = 0.5  # speech in the open utterance before its first interim
    silence_final_s: float = 1.0  # an empty final at least this often through silence
    context_chars: int = 0  # of a channel's recent finals in each decode's prompt (0: none)
    keyterms: tuple[str, ...] = ()  # words every call is expected to use
    max_batch: int = 4
    max_backlog_s: float = 120.0
    capacity: int = 0  # channels the engine takes at once; 0: measured (engine/capacity.py)


class LocalProvider:
    name = "local"

    def __init__(
        self,
        options: LocalOptions | None = None,
        *,
        decoder: Decoder | None = None,
        vad: SileroVad | None = None,
        clock: Callable[[], float] = time.monotonic,
        others: dict[str, Decoder] | None = None,
    ) -> None:
        """`decoder`/`vad` given (tests) skip loading; otherwise `run` loads them. `others`
        (tests): other engines' decoders by name, as if loaded."""
        self.options = options or LocalOptions()
        opts = self.options
        self.num_workers = opts.num_workers or max(1, os.cpu_count() or 1)
        self.engines = EngineSet.configured(opts.engine, opts.model)
        self.default_language = call_language(None, opts.language)
        engine = self._engine_of(self.default_language)
        if engine is None:
            raise ValueError(_unspoken(self.engines, opts.language))
        self.engine = engine  # the default language's: loaded at start
        self.scheduler = Scheduler(
            max_batch=opts.max_batch,
            interim_slots=max(1, self.num_workers - 1),
            max_backlog_s=opts.max_backlog_s,
            batch_limits={e.name: min(opts.max_batch, e.max_batch) for e in self.engines.engines},
        )
        self.pool = DecodePool(self.scheduler, self.num_workers, clock, engine.name)
        self.pool.capacity.fixed = opts.capacity or None
        self.metrics = self.pool.metrics
        self.clock = clock
        self.channel_engine = ChannelEngine(
            scheduler=self.scheduler,
            wake_pool=self.pool.wake,
            clock=clock,
            metrics=self.metrics,
            options=ChannelOptions(
                vad=opts.vad,
                interim_interval_s=opts.interim_interval_s,
                first_interim_s=opts.first_interim_s,
                silence_final_s=opts.silence_final_s,
                context_chars=opts.context_chars,
                keyterms=opts.keyterms,
            ),
            engine_for=self._decodes,
        )
        self._decoder = decoder
        self._vad = vad
        self._error: str | None = None
        self._ready = asyncio.Event()
        self._running = False
        # Engines besides the default one, loaded the first time a call needs them.
        self._loads: dict[str, asyncio.Event] = {}
        self._load_errors: dict[str, str] = {}
        self._tg: asyncio.TaskGroup | None = None
        for name, other in (others or {}).items():
            self.pool.add(name, other)

    # --- lifetime ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Load the model (off the event loop), then decode for every call until cancelled."""
        decoder = await self._loaded_decoder()
        if decoder is None:
            raise StartError(self._error or "the local speech model could not be loaded")
        self._running = True
        self._ready.set()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self.pool.run(decoder), name="decoders")
                if self.pool.capacity.fixed is None:
                    tg.create_task(self._keep_measuring(decoder), name="decode-cost")
        finally:
            self._tg = None
            self._running = False

    async def _keep_measuring(self, decoder: Decoder) -> None:
        """While no final is decoded (a fallback standing by, a quiet worker), measure the decode
        cost again now and then, so the figure follows what else the machine is doing when calls
        arrive: the figure a standby fallback measured at start is stale by the time an outage
        moves calls onto it. One decode of the calibration recording (about 0.1 s of one core)."""
        audio = calibration_audio()
        capacity = self.pool.capacity
        while True:
            await asyncio.sleep(_REMEASURE_S)
            if capacity.idle_since(self.clock()) >= _REMEASURE_S and not self.pool.busy:
                wall_s = await asyncio.to_thread(_timed_decode, decoder, audio)
                capacity.remeasure(audio.size / SAMPLE_RATE, wall_s)

    async def _loaded_decoder(self) -> Decoder | None:
        if self._decoder is not None and self._vad is not None:
            return self._decoder
        try:
            self._decoder, self._vad = await asyncio.to_thread(self._load)
        except Exception as exc:  # run() stops the process with it; health says it meanwhile
            self._error = f"the local speech model could not be loaded: {exc}"
            log.error("local engine failed to start", extra={"detail": str(exc)})
            self._ready.set()
            return None
        return self._decoder

    def _load(self) -> tuple[Decoder, SileroVad]:
        decoder = self._load_engine(self.engine)
        return decoder, self._vad or SileroVad.load()

    def _load_engine(self, engine: Engine) -> Decoder:
        """Load, warm up and measure one engine (blocking: in a thread)."""
        opts = self.options
        started = time.monotonic()
        settings = DecoderSettings(
            opts.model,
            opts.compute_type,
            opts.cpu_threads,
            self.num_workers,
            frozenset(c for c in (engine_code(a) for a in opts.detect_among) if c is not None),
        )
        decoder = engine.load(settings)
        decoder.decode_batch([np.zeros(SAMPLE_RATE, dtype=np.float32)])  # warm the kernels up
        loaded = time.monotonic()
        capacity = self.pool.capacity_of(engine.name)
        self._calibrate(decoder, capacity)
        log.info(
            "local engine ready",
            extra={
                "engine": engine.name,
                "model": engine.describe(settings),
                "cpu_threads": opts.cpu_threads,
                "num_workers": self.num_workers,
                "load_s": round(loaded - started, 2),
                "decode_cost": round(capacity.cost_s, 4),
                "capacity_channels": capacity.channels,
            },
        )
        return decoder

    def _calibrate(self, decoder: Decoder, capacity: CapacityModel) -> None:
        """What a decode costs here: a recording of speech decoded on every decoder at once, as
        they run under load (engine/capacity.py)."""
        audio = calibration_audio()
        with ThreadPoolExecutor(self.num_workers) as threads:
            walls = list(threads.map(lambda _i: _timed_decode(decoder, audio), range(2 * self.num_workers)))
        capacity.calibrate(audio.size / SAMPLE_RATE, statistics.median(walls))

    # --- languages ----------------------------------------------------------------------------

    def _engine_of(self, language: CallLanguage) -> Engine | None:
        """The engine a call in this language starts on: its language's, or the detecting one."""
        if language.code is not None:
            return self.engines.for_code(language.code)
        return self.engines.detector

    def _decodes(self, code: str | None) -> str | None:
        """A channel's router (`ChannelEngine.engine_for`): the loaded engine that decodes this
        language (None: detects it), by name; the preferred one when it is loaded, else another
        loaded one that knows the language (a leg detected English goes on on Whisper while
        Moonshine is not loaded)."""
        preferred = self.engines.detector if code is None else self.engines.for_code(code)
        loaded = self.pool.decoders
        if preferred is not None and preferred.name in loaded:
            return preferred.name
        for engine in self.engines.engines:
            if engine.name in loaded and (
                engine.detects if code is None else code in engine.languages(self.engines.model)
            ):
                return engine.name
        return None

    def languages(self) -> tuple[str, ...]:
        """The language codes the engine transcribes (every engine it may load), and `multi`
        when one of them detects."""
        detects = (MULTI,) if self.engines.detector is not None else ()
        return (*self.engines.languages, *detects)

    def language_refusal(self, language: str | None) -> str | None:
        """Why a call asking for this language (None: the default) cannot be transcribed here,
        or None when it can: a language no engine here knows, or detection with no engine
        that detects (ASR_LOCAL_ENGINE=moonshine)."""
        try:
            asked = call_language(language, self.options.language)
        except ValueError as exc:
            return str(exc)
        if self._engine_of(asked) is None:
            return _unspoken(self.engines, language or self.options.language)
        return None

    def channel_weight(self, options: CallOptions) -> float:
        """How many of `capacity_channels` one channel of a call with these options takes: its
        engine's decode cost over the default engine's, as measured here (before one is
        measured, as measured on the project's machine): about 12 for Whisper on an English
        worker, whose default engine is Moonshine."""
        try:
            engine = self._engine_of(call_language(options.language, self.options.language))
        except ValueError:
            return 1.0  # refused before it is admitted
        if engine is None or engine.name == self.engine.name:
            return 1.0
        return self._cost_s(engine.name) / self._cost_s(self.engine.name)

    def _cost_s(self, engine: str) -> float:
        measured = self.pool.capacities.get(engine)
        if measured is not None and not math.isnan(measured.cost_s):
            return max(measured.cost_s, 1e-6)
        return _PRIOR_COST_S.get(engine, 0.25)

    async def _loaded(self, engine: Engine) -> None:
        """Wait until this engine is loaded, loading it (once, in a thread) if it is not.
        Raises ProviderError when it cannot be, or not in time."""
        if engine.name in self.pool.decoders:
            return
        failed = self._load_errors.get(engine.name)
        if failed is not None:
            raise ProviderError("model_unavailable", failed, retryable=False)
        done = self._loads.get(engine.name)
        if done is None:
            if self._tg is None:
                raise ProviderError(
                    "engine_starting", "the local speech engine is not running", retryable=True
                )
            done = self._loads[engine.name] = asyncio.Event()
            self._tg.create_task(self._load_other(engine, done), name=f"load-{engine.name}")
        try:
            await asyncio.wait_for(done.wait(), _OPEN_TIMEOUT_S)
        except TimeoutError:
            raise ProviderError(
                "engine_starting", f"the {engine.name} engine is still loading", retryable=True
            ) from None
        failed = self._load_errors.get(engine.name)
        if failed is not None:
            raise ProviderError("model_unavailable", failed, retryable=False)

    async def _load_other(self, engine: Engine, done: asyncio.Event) -> None:
        try:
            decoder = await asyncio.to_thread(self._load_engine, engine)
        except Exception as exc:  # the calls that need it are refused; the others go on
            self._load_errors[engine.name] = f"the {engine.name} engine could not be loaded: {exc}"
            log.error("local engine failed to load", extra={"engine": engine.name, "detail": str(exc)})
        else:
            self.pool.add(engine.name, decoder)
        finally:
            done.set()

    def capacity_channels(self) -> int | None:
        """Channels the engine can carry at once (measured, or ASR_LOCAL_CAPACITY), of calls on
        the default language's engine (`channel_weight` says what others take); None while it
        is not running."""
        return self.pool.capacity.channels if self._running else None

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
        refusal = self.language_refusal(request.options.language)
        if refusal is not None:
            raise ProviderError("language_unsupported", refusal, retryable=False)
        language = call_language(request.options.language, self.options.language)
        engine = self._engine_of(language)
        assert engine is not None  # language_refusal said so
        await self._loaded(engine)
        if self.scheduler.busy:
            self.metrics.refused.inc()
            raise ProviderError(
                "engine_busy", "the local speech engine is too far behind to take a call", retryable=True
            )
        capacity, channels = self.pool.capacity_of(engine.name), request.fmt.channels
        capacity.opened(channels, self.clock())
        return LocalStream(
            self.channel_engine,
            request,
            self._vad,
            lambda: capacity.closed(channels, self.clock()),
            language,
            self,
            takes_keyterms=engine.prompted,
        )

    def switch(self, stream: LocalStream, language: str | None) -> None:
        """A call's new language (`LanguageSwitcher`): at once when its engine is loaded, else
        once it is (loading in the provider's task group). One it cannot transcribe changes
        nothing (the route refused it before)."""
        try:
            asked = call_language(language, self.options.language)
        except ValueError:
            return
        engine = self._engine_of(asked)
        if engine is None:
            return
        if engine.name in self.pool.decoders:
            stream.apply_language(asked)
        elif self._tg is not None:
            self._tg.create_task(self._switch_when_loaded(stream, engine, asked), name="switch-language")

    async def _switch_when_loaded(self, stream: LocalStream, engine: Engine, language: CallLanguage) -> None:
        try:
            await self._loaded(engine)
        except ProviderError as exc:
            log.warning("language switch failed", extra={"engine": engine.name, "detail": exc.message})
            return
        stream.apply_language(language)


class LanguageSwitcher(Protocol):
    def switch(self, stream: LocalStream, language: str | None) -> None:
        """Give the stream this language (`LocalStream.apply_language`), its engine loaded first."""


class LocalStream:
    """One call's stream: splits its audio among its channels (`engine/channel.py`), whose
    results it queues for the session, and ends them on CloseStream once every final is out.

    The call's options are honoured here: its keyterms, its `endpointing` and
    `utterance_end_ms` (by its channels), and its formatting and `search` (applied to each
    result before it is queued, `core/formatting.py`, `core/search.py`)."""

    def __init__(
        self,
        engine: ChannelEngine,
        request: StreamRequest,
        vad: SileroVad,
        on_closed: Callable[[], None] = lambda: None,
        language: CallLanguage | None = None,
        languages: LanguageSwitcher | None = None,
        *,
        takes_keyterms: bool = True,
    ) -> None:
        """`on_closed`: told once, when the stream ends however it ends (the engine counts the
        channels its streams hold open); `language`: what the call's is (None: English);
        `languages`: what a new language for the call is (the provider), for `switch_language`;
        `takes_keyterms`: whether the call's engine hears keyterms (Whisper does, Moonshine
        does not)."""
        self._languages = languages
        self._clock = engine.clock
        self._on_closed = on_closed
        self.request = request
        self.fmt: AudioFormat = request.fmt
        self.request_id = str(uuid.uuid4())
        fmt = request.fmt
        options = request.options
        self._takes_keyterms = takes_keyterms
        self._formatter = Formatter.of(options.format)
        self._search = options.format.search
        self.channels = [
            Channel(
                engine,
                self,
                index=c,
                channels=fmt.channels,
                sample_rate=fmt.sample_rate,
                vad=vad.stream(),
                keyterms=options.keyterms,
                endpointing_ms=options.endpointing_ms,
                utterance_end_ms=options.utterance_end_ms,
                language=language,
            )
            for c in range(fmt.channels)
        ]
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
        now = self._clock()
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

    def switch_language(self, language: str | None) -> None:
        """The call's language from now on (`LanguageSwitch`); once its engine is loaded, if it
        must load first (until then the channels go on in the language they had)."""
        if self._languages is not None and not self.closed:
            self._languages.switch(self, language)

    def apply_language(self, language: CallLanguage) -> None:
        if not self.closed:
            for channel in self.channels:
                channel.switch_language(language)

    async def finalize(self) -> None:
        self._check_open()
        self._finalize(from_finalize=True)

    async def close_stream(self) -> None:
        self._check_open()
        if self._since_finalize:  # what no Finalize flushed: its final, not marked from_finalize
            self._finalize(from_finalize=False)
        self._closing = True
        self.maybe_close()

    async def abort(self) -> None:
        if self.closed:
            return
        self._close()
        for channel in self.channels:
            channel.forget()
        self._results.finish()

    def events(self) -> AsyncIterator[ProviderEvent]:
        return self._results.events()

    def update_keyterms(self, keyterms: tuple[str, ...]) -> bool:
        """The call's keyterms from now on (Deepgram's Configure): the next decodes are prompted
        with them. False (nothing changes) when the engine takes no keyterms."""
        if not self._takes_keyterms:
            return False
        for channel in self.channels:
            channel.set_keyterms(keyterms)
        return True

    # --- inside -----------------------------------------------------------------------------

    def _finalize(self, *, from_finalize: bool) -> None:
        now = self._clock()
        end_s = self._frames_in / self.fmt.sample_rate
        for channel in self.channels:
            channel.finalize(end_s, now, from_finalize=from_finalize)
        self._arrivals.append((self.channels[0].position, now))
        self._since_finalize = False
        for channel in self.channels:
            channel.emit_ready()

    def push(self, event: ProviderEvent) -> None:
        if self.closed:
            return
        if isinstance(event, TranscriptResult):
            if self._formatter is not None:
                event = self._formatter.result(event)
            if self._search:
                event = searched(event, self._search)
        if not self._results.put(event):
            self.fail(ProviderError("events_overflow", "results are not being read", retryable=True))

    def fail(self, error: ProviderError) -> None:
        if self.closed:
            return
        self._failed = error
        self._close()
        for channel in self.channels:
            channel.forget()
        self._results.finish(error)

    def maybe_close(self) -> None:
        """After CloseStream, end the events once every final has gone out."""
        if not self._closing or self.closed or any(c.slots for c in self.channels):
            return
        self.push(StreamMetadata(self.request_id, self._frames_in / self.fmt.sample_rate))
        self._close()
        for channel in self.channels:
            channel.forget()
        self._results.finish()

    def _close(self) -> None:
        self.closed = True
        self._on_closed()

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


def calibration_audio() -> npt.NDArray[np.float32]:
    """A person-like sentence with the pauses around it (the smoke test's call, 5.6 s of 8 kHz
    mu-law shipped with the package), at 16 kHz."""
    data = resources.files("asr_worker").joinpath("tools/data/smoke-call.wav").read_bytes()
    at = data.index(b"data") + 8
    pcm = (decode_g711(data[at:], Encoding.MULAW) / 32768).astype(np.float32)
    resampler = StreamResampler(8000)
    return np.concatenate([resampler.push(pcm), resampler.flush()])


def _timed_decode(decoder: Decoder, audio: npt.NDArray[np.float32]) -> float:
    started = time.perf_counter()
    decoder.decode_batch([audio])
    return time.perf_counter() - started


def create(options: LocalOptions) -> LocalProvider:
    return LocalProvider(options)


def _unspoken(engines: EngineSet, language: str) -> str:
    """Why these engines cannot transcribe a call in this language (a code, `multi`, `detect`)."""
    if language.lower() in (MULTI, DETECT):
        return (
            f"the local engine runs {engines.describe()}, which detects no language: "
            f"{language} needs Whisper (ASR_LOCAL_ENGINE=whisper or auto)"
        )
    known = ", ".join(engines.languages[:12]) + (", ..." if len(engines.languages) > 12 else "")
    return f"the local engine runs {engines.describe()}, which knows {known}, not {language[:40]}"


def _missing(options: LocalOptions) -> tuple[str, str] | None:
    """A named engine that does not know the default language."""
    engines = EngineSet.configured(options.engine, options.model)
    default = call_language(None, options.language)
    code = default.code
    engine = engines.for_code(code) if code is not None else engines.detector
    if engine is None:
        return "ASR_LOCAL_ENGINE=whisper (or auto)", f"transcribes {options.language}: " + _unspoken(
            engines, options.language
        )
    return None


# CTranslate2's compute types (https://opennmt.net/CTranslate2/quantization.html).
COMPUTE_TYPES: Final = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


def _language(text: str) -> str:
    value = text.strip()
    if value.lower() in (MULTI, DETECT):
        return value.lower()
    if engine_code(value) is None:
        raise ValueError("must be a Whisper language code such as en, de or es-419, multi or detect")
    return tidy(value)


def _languages(text: str) -> tuple[str, ...]:
    codes = tuple(dict.fromkeys(tidy(c) for c in text.split(",") if c.strip()))
    if any(engine_code(c) is None for c in codes):
        raise ValueError("must be comma-separated Whisper language codes such as en,es,fr,de (empty: any)")
    return codes


def _keyterms(text: str) -> tuple[str, ...]:
    terms = term_list(text)
    if sum(len(t) + 2 for t in terms) > 500:
        raise ValueError("must be at most 500 characters of terms (Whisper's prompt is short)")
    return terms


def _model(choice: object) -> str:
    return choice.describe() if isinstance(choice, ModelChoice) and choice != ModelChoice() else "none"


SETTINGS: Final = Section(
    "local",
    "local engine",
    LocalOptions,
    (
        Setting(
            "engine",
            "ASR_LOCAL_ENGINE",
            "local engine: moonshine (Moonshine base, English, about ten times cheaper), whisper "
            "(Whisper, any language, keyterms), or auto: Moonshine for English, Whisper otherwise "
            "or when ASR_LOCAL_MODEL names a Whisper model",
            choice(AUTO, *ENGINES),
        ),
        Setting(
            "model",
            "ASR_LOCAL_MODEL",
            "Whisper engine model: empty for the packaged Whisper base, a faster-whisper model "
            "directory, or a size such as small.en (downloaded by faster-whisper)",
            ModelChoice.parse,
            show=_model,
        ),
        Setting(
            "compute_type",
            "ASR_LOCAL_COMPUTE_TYPE",
            "Whisper engine CTranslate2 compute type: " + ", ".join(COMPUTE_TYPES),
            choice(*COMPUTE_TYPES),
        ),
        Setting(
            "cpu_threads",
            "ASR_LOCAL_CPU_THREADS",
            "local engine threads per decode (0 = the engine's default)",
            int_range(0, 256),
        ),
        Setting(
            "num_workers",
            "ASR_LOCAL_NUM_WORKERS",
            "local engine decodes in parallel (faster-whisper's num_workers; 0 = one per core)",
            int_range(0, 256),
        ),
        Setting(
            "language",
            "ASR_LOCAL_LANGUAGE",
            "local engine: the language of a call that names none: a language code (en, es, de-CH; "
            "Moonshine knows en only), multi (Whisper detects each utterance's) or detect (Whisper "
            "detects each channel's on its first utterance and keeps it)",
            _language,
        ),
        Setting(
            "detect_among",
            "ASR_LOCAL_DETECT_LANGUAGES",
            "local engine: the languages a detection (multi, detect) chooses among, comma-separated "
            "(empty: any of Whisper's); by default Deepgram's multi languages",
            _languages,
            show=lambda codes: ",".join(codes) if isinstance(codes, tuple) else str(codes),
        ),
        Setting(
            "vad.min_silence_ms",
            "ASR_LOCAL_ENDPOINTING_MS",
            "local engine: silence that ends an utterance with a speech_final result "
            "(Deepgram's `endpointing`)",
            int_range(32, 10_000),
        ),
        Setting(
            "capacity",
            "ASR_LOCAL_CAPACITY",
            "local engine: audio channels it takes at once (a two-leg call is two); new calls and "
            "failovers beyond it are refused (engine_full). 0: measured from what decoding costs here",
            int_range(0, 100_000),
        ),
        Setting(
            "keyterms",
            "ASR_LOCAL_KEYTERMS",
            "local engine: comma-separated words or phrases calls are expected to use (product, agent and "
            "place names), given to Whisper as context (Moonshine takes none); a call adds its own with "
            "Deepgram's keyterm/keywords",
            _keyterms,
        ),
        Setting(
            "context_chars",
            "ASR_LOCAL_CONTEXT_CHARS",
            "local engine: characters of a call's recent finals each decode is prompted with (0: none; "
            "measured worse on short utterances, see docs/local-engine.md)",
            int_range(0, 1000),
        ),
    ),
)

KIND: Final = ProviderKind(SETTINGS, create, _missing)
