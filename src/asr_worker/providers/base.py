"""The provider seam: something you open a stream on, push audio into, finalize, and read
events from. Deepgram, the local engine and the mock each fit it in one module.

A provider raises `ProviderError` (from the core) for every failure, with `retryable` telling
the session whether to reconnect or fail the call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from prometheus_client import CollectorRegistry

from ..core.audio import AudioFormat
from ..core.call_options import NO_OPTIONS, CallOptions
from ..core.provider_events import ProviderEvent
from ..errors import ProviderError
from ..settings import Section

if TYPE_CHECKING:
    from ..settings import Options

OptionsT = TypeVar("OptionsT", bound="Options")


@dataclass(frozen=True, slots=True)
class StreamRequest:
    interaction_id: str
    tenant_id: str | None
    fmt: AudioFormat
    reconnect: bool = False  # a replacement for a dropped stream of the same call
    attempt: int = 1  # the call's nth open attempt (1: the call is new; more: it is retrying)
    options: CallOptions = NO_OPTIONS  # what the call asks of its transcription (its keyterms...)


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """What is known of a provider, for /health: `ok` only from facts (a remote provider that
    has carried no connection yet is not known to work: `known` is False)."""

    ok: bool
    detail: str = ""
    ready: bool = True  # False while it cannot take calls yet (a model loading): /ready is 503
    known: bool = True  # False: nothing has shown yet whether it works (no connection tried)
    # While it is failing for every call (its circuit breaker open): for how many more seconds
    # it refuses new calls at once, which go to the fallback provider meanwhile, if there is one.
    refusing_new_calls_s: float | None = None

    @property
    def state(self) -> str:
        """`ok`, `unknown` or `failing`: what /health says of it."""
        return "unknown" if not self.known else "ok" if self.ok else "failing"


class ProviderStream(Protocol):
    async def send_audio(self, data: bytes) -> None:
        """Send audio in the request's format, byte for byte."""

    async def keepalive(self) -> None:
        """Tell the provider the call is alive though no audio is flowing."""

    async def finalize(self) -> None:
        """Ask for final results for all audio sent so far; the stream stays open."""

    async def close_stream(self) -> None:
        """Flush, then let the provider close; `events()` ends cleanly after the last result."""

    async def abort(self) -> None:
        """Drop the stream now without waiting for anything. Safe to call twice."""

    def events(self) -> AsyncIterator[ProviderEvent]:
        """Results in order; ends after a clean close, raises `ProviderError` on a fault."""
        ...


class Provider(Protocol):
    name: str

    async def open(self, request: StreamRequest) -> ProviderStream:
        """Open one stream for one call. Raises `ProviderError`."""
        ...

    def health(self) -> ProviderHealth: ...

    async def aclose(self) -> None:
        """Release what the provider shares between calls (models, pools)."""


def _needs_nothing(options: object) -> tuple[str, str] | None:
    return None


class ProviderKind:
    """What a provider module registers as `KIND`: its settings, how to build it from them, and
    what it cannot run without. The configuration's registry names the module; nothing else
    about a provider is written outside it."""

    def __init__(
        self,
        settings: Section[OptionsT],
        create: Callable[[OptionsT], Provider],
        missing: Callable[[OptionsT], tuple[str, str] | None] = _needs_nothing,
    ) -> None:
        self.settings: Section[Options] = settings
        self._create: Callable[[object], Provider] = lambda options: create(settings.pick(options))
        self._missing: Callable[[object], tuple[str, str] | None] = lambda options: missing(
            settings.pick(options)
        )

    def create(self, options: object) -> Provider:
        return self._create(options)

    def missing(self, options: object) -> tuple[str, str] | None:
        """What these options lack for the provider to run at all, and why: ("DEEPGRAM_API_KEY",
        "uses api.deepgram.com") reads "DEEPGRAM_API_KEY is required when ASR_PROVIDER=deepgram
        uses api.deepgram.com"; None if nothing."""
        return self._missing(options)


# Optional extras: the worker calls them when a provider has them (checked with isinstance).


@runtime_checkable
class BackgroundProvider(Protocol):
    async def run(self) -> None:
        """Work the provider shares between calls (load a model, run decoders), started with the
        worker and cancelled after its sessions have drained. Raises StartError when
        it cannot start at all."""


@runtime_checkable
class ImmediateSender(Protocol):
    def send_audio_now(self, data: bytes) -> bool:
        """Send at once, without awaiting, if the stream can take the audio now: True if sent,
        False (nothing sent) if the caller must await `send_audio`. Lets a session hand over
        audio as it arrives instead of waking its loop for every chunk. Raises ProviderError."""
        ...


@runtime_checkable
class EventPusher(Protocol):
    def push_events_to(self, sink: Callable[[ProviderEvent], None]) -> bool:
        """From now on hand each event to `sink` as it arrives, in order, instead of queueing
        it for `events()`, which then only ends (cleanly or with the stream's error). False
        (nothing changes) if the stream cannot: events were already queued. Saves a queue
        and a task switch per result. An exception from `sink` ends the stream with it."""
        ...


@runtime_checkable
class KeytermUpdates(Protocol):
    def update_keyterms(self, keyterms: tuple[str, ...]) -> bool:
        """Transcribe with these keyterms from now on, in place of the call's (Deepgram's
        mid-stream `Configure`). False, changing nothing, when the engine takes no keyterms."""
        ...


@runtime_checkable
class AdmissionGate(Protocol):
    def taking_new_calls(self) -> bool:
        """False while the provider refuses every new call at once (its circuit breaker is
        open): with a fallback provider, new calls start there meanwhile. Counts nothing."""
        ...


@runtime_checkable
class CapacityGauge(Protocol):
    def capacity_channels(self) -> int | None:
        """Audio channels the provider can carry at once without falling behind (a two-leg call
        is two), as it measures them; None while it does not know (loading). The session
        registry refuses new calls and failovers beyond it."""
        ...


@runtime_checkable
class ChannelWeigher(Protocol):
    def channel_weight(self, options: CallOptions) -> float:
        """How many of `capacity_channels` one channel of a call with these options takes (the
        local engine: a call on Whisper costs several of Moonshine's)."""
        ...


@runtime_checkable
class LanguageAware(Protocol):
    def languages(self) -> tuple[str, ...]:
        """The language codes it transcribes (`multi` among them when it detects)."""
        ...

    def language_refusal(self, language: str | None) -> str | None:
        """Why a call asking for this language (None: none named) cannot be transcribed here,
        for people; None when it can. Routes refuse such a call before it starts."""
        ...


@runtime_checkable
class LanguageSwitch(Protocol):
    def switch_language(self, language: str | None) -> None:
        """From now on transcribe in this language (a code, `multi`; None: the provider's
        default), one `language_refusal` allowed; what is already decoded stays as it was.
        Without it, a call's new language applies to the next stream it opens."""


@runtime_checkable
class InstrumentedProvider(Protocol):
    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Put the provider's own Prometheus collectors on the worker's registry."""


class ResultQueue:
    """What a stream's `events()` reads: results in order, at most `max_events` waiting, then
    the stream's end - clean, or a ProviderError. The end is kept apart from the results, so
    it always gets through: a stream that fails because nobody read its results still tells
    its reader so, after the results already queued."""

    def __init__(self, max_events: int) -> None:
        self._events: deque[ProviderEvent] = deque()
        self._max_events = max_events
        self._ended = False
        self._error: ProviderError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, event: ProviderEvent) -> bool:
        """Queue a result; False (nothing queued) if the queue is full or has ended."""
        if self._ended or len(self._events) >= self._max_events:
            return False
        self._events.append(event)
        self._wake()
        return True

    def finish(self, error: ProviderError | None = None) -> None:
        """End the results (the first end counts): `events()` returns, or raises `error`."""
        if not self._ended:
            self._ended, self._error = True, error
            self._wake()

    @property
    def ended(self) -> bool:
        return self._ended

    async def events(self) -> AsyncIterator[ProviderEvent]:
        while True:
            while self._events:
                yield self._events.popleft()
            if self._ended:
                if self._error is not None:
                    raise self._error
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
