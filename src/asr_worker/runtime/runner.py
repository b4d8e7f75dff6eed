"""Drives one `SessionCore` with asyncio: the only place a call's provider I/O happens.

Sources call the synchronous `feed`/`end`/`attach`/`detach` (no await, so no interleaving
can split a check from its update) and wake the runner; the runner's loop polls the core,
carries out its actions in order, and sleeps until the core's next deadline or the next
wake. Opening a stream and reading its events run as child tasks of the runner's TaskGroup;
they report back to the core, never act on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ..core.actions import (
    AbortStream,
    Action,
    AudioTaken,
    Emit,
    EndStream,
    FlushStream,
    OpenStream,
    SendAudio,
    SendKeepAlive,
)
from ..core.call_options import NO_OPTIONS, CallOptions
from ..core.clock import Clock
from ..core.events import CallError, CallEvent, ProviderChanged, SessionEnded, SessionStarted, Transcript
from ..core.ids import DEFAULT_TENANT, CallKey
from ..core.provider_events import ProviderEvent
from ..core.session import Link, Phase, SessionCore
from ..errors import ProviderError
from ..metrics import WorkerMetrics
from ..providers.base import (
    EventPusher,
    ImmediateSender,
    LanguageSwitch,
    Provider,
    ProviderStream,
    StreamRequest,
)
from .primary import PrimaryWatch
from .wakeup import TimerWheel, Waker

log = logging.getLogger("asr_worker.session")

_source_ids = itertools.count(1)


class SessionStatus:
    """What a session's sources (the bus, telephony sockets) may read of it to decide what to
    do next, and nothing they could change: only the runner drives the core."""

    __slots__ = ("_core",)

    def __init__(self, core: SessionCore) -> None:
        self._core = core

    @property
    def phase(self) -> Phase:
        return self._core.phase

    @property
    def end_reason(self) -> str | None:
        return self._core.end_reason

    @property
    def resumed(self) -> bool:
        """Another source joined the call before, or audio has been heard: not a fresh call."""
        return self._core.source_count > 1 or self._core.audio_s > 0

    @property
    def covered_offset(self) -> int:
        """Call byte offset up to which final results have covered the call."""
        return self._core.covered_offset

    @property
    def audio_s(self) -> float:
        """Seconds of audio the call has taken so far: the call time its next audio starts at."""
        return self._core.audio_s

    @property
    def last_seq(self) -> int:
        """The seq of the last event the session emitted."""
        return self._core.last_seq

    @property
    def paused(self) -> bool:
        """The call's audio is not reaching the provider (a PCI pause)."""
        return self._core.paused


class SessionRunner:
    def __init__(
        self,
        core: SessionCore,
        provider: Provider,
        publish: Callable[[CallEvent], None],
        metrics: WorkerMetrics,
        clock: Clock,
        wheel: TimerWheel,
        fallback: Provider | None = None,
        primary_watch: PrimaryWatch | None = None,
        options: CallOptions = NO_OPTIONS,
    ) -> None:
        self.core = core
        self.key = CallKey(core.tenant_id or DEFAULT_TENANT, core.interaction_id)  # the registry's key
        # The words the call is expected to use, in every stream it opens (reconnects and the
        # fallback provider's too): fixed by the source that started the call.
        self.options = options
        self._provider = provider
        self._fallback = fallback  # where the core's `OpenStream(fallback=True)` go
        self._watch = primary_watch  # told how the primary's connections fare (failback)
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._waker = Waker(self._until_due, wheel)
        self._max_wait_s = core.max_wait_s  # read per frame that starts new waiting audio
        self._streams: dict[int, ProviderStream] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._last_send: dict[int, float] = {}
        self._stream_provider: dict[int, str] = {}  # which provider each stream is on
        self._live: set[int] = set()  # streams whose end the core has not yet been told of
        self._immediate: dict[int, ImmediateSender] = {}  # streams that take audio without awaiting
        self._backlog: deque[Action] = deque()  # actions the core gave outside the loop, for it
        self.done = asyncio.Event()
        self.status = SessionStatus(core)

    @property
    def interaction_id(self) -> str:
        return self.core.interaction_id

    @property
    def loop_parked(self) -> bool:
        """The session's loop sleeps and nothing has woken it since (its timer may still)."""
        return self._waker.parked

    def wants_audio(self, feed_limit_bytes: int) -> bool:
        """Whether a source that can hold audio back (the Redis bus: its stream is the buffer)
        should feed more now. No while the session is not active; no while the session
        already retains `feed_limit_bytes` that the provider is not taking, since feeding
        more would only make the session shed its oldest retained audio."""
        core = self.core
        if core.phase is not Phase.ACTIVE:
            return False
        return not (
            core.retained_bytes >= feed_limit_bytes
            and (core.unsent_bytes > 0 or core.link is not Link.CONNECTED)
        )

    # --- the source side: synchronous, then wake the loop -----------------------------------

    def attach(self) -> str:
        source_id = f"src-{next(_source_ids)}"
        self.core.attach_source(source_id, self._clock.monotonic())
        self._waker.wake()
        return source_id

    def detach(self, source_id: str) -> None:
        self.core.detach_source(source_id, self._clock.monotonic())
        self._waker.wake()

    def feed(self, data: bytes) -> bool:
        """Audio from a source. While the loop sleeps, do the core's bidding here rather than
        wake the loop for it: send a full chunk now if the stream takes audio without waiting,
        or make sure the loop wakes by new waiting audio's max_buffer deadline. At 500 calls
        waking a session's loop for every chunk was its main cost per frame."""
        now = self._clock.monotonic()
        taken = self.core.on_audio(data, now)
        if self._waker.parked and not self._backlog:
            if taken is AudioTaken.JOINED:
                return True
            if taken is AudioTaken.WAITING:
                self._waker.wake_by(self._max_wait_s)
                return True
            # Sending audio and emitting events only move the core's deadlines later, which
            # the parked loop's timer finds when it fires: no re-arming here.
            if taken is AudioTaken.POLL and self._act_now(now):
                return True
        self._waker.wake()
        return taken is not AudioTaken.REFUSED

    def _act_or_wake(self, now: float) -> None:
        """After a provider event: carry out the core's actions here if the loop sleeps (a
        result's transcript goes out without a task switch), else wake the loop for them."""
        if self._waker.parked and not self._backlog and self._act_now(now):
            left_s = self._until_due()  # an event may bring timed work forward
            if left_s is not None:
                self._waker.wake_by(left_s)
        else:
            self._waker.wake()

    def _act_now(self, now: float) -> bool:
        """Carry out the core's actions without awaiting; hand what needs awaiting (and all
        after it) to the loop. False if the loop must wake for something."""
        actions = self.core.poll(now)
        for index, action in enumerate(actions):
            if isinstance(action, Emit):
                self._emit(action.event)
            elif not (isinstance(action, SendAudio) and self._send_now(action, now)):
                self._backlog.extend(actions[index:])
                return False
        return True

    def _until_due(self) -> float | None:
        """Seconds until the core has timed work (0 or less: now); None if it has none."""
        deadline = self.core.next_deadline()
        return None if deadline is None else deadline - self._clock.monotonic()

    def end(self, reason: str) -> None:
        self.core.end(reason, self._clock.monotonic())
        self._waker.wake()

    def finalize(self) -> None:
        """The pending utterance's final now; the call goes on."""
        self.core.finalize(self._clock.monotonic())
        self._waker.wake()

    def error(self, code: str, message: str) -> None:
        """An error in what a source sent; it goes to everyone watching the call."""
        self.core.emit_error(code, message, self._clock.monotonic())
        self._waker.wake()

    def dtmf(self, digit: str, channel: int) -> None:
        self.core.on_dtmf(digit, channel, self._clock.monotonic())
        self._waker.wake()

    def pause(self) -> bool:
        """Stop the call's audio reaching the provider (keep-alives hold the connection);
        False if it was paused already or is ending."""
        paused = self.core.pause_audio(self._clock.monotonic())
        self._waker.wake()
        return paused

    def resume(self) -> bool:
        """The call's audio reaches the provider again; False if it was not paused."""
        resumed = self.core.resume_audio(self._clock.monotonic())
        self._waker.wake()
        return resumed

    def switch_language(self, language: str | None) -> None:
        """The call's language from now on: every stream it opens asks for it, and the open
        ones that can (`LanguageSwitch`) take it at once."""
        self.options = replace(self.options, language=language)
        for stream in self._streams.values():
            if isinstance(stream, LanguageSwitch):
                stream.switch_language(language)

    def abandon(self, code: str, message: str) -> None:
        """End the call at once, without the provider (a fault, or shutdown ran out of time)."""
        self.core.fail(code, message, self._clock.monotonic())
        for action in self.core.poll(self._clock.monotonic()):
            if isinstance(action, Emit):
                self._emit(action.event)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                try:
                    await self._loop(tg)
                finally:
                    for conn_id in list(self._streams):
                        await self._abort(conn_id)
                    for task in self._tasks.values():
                        task.cancel()
        finally:
            self._waker.close()
            self.done.set()

    async def _loop(self, tg: asyncio.TaskGroup) -> None:
        clock = self._clock
        backlog = self._backlog
        while True:
            backlog.extend(self.core.poll(clock.monotonic()))
            while backlog:
                await self._do(backlog.popleft(), tg)
            if self.core.ended:
                return
            await self._waker.wait(self._until_due())

    async def _do(self, action: Action, tg: asyncio.TaskGroup) -> None:
        if isinstance(action, SendAudio):
            await self._send(action)
        elif isinstance(action, Emit):
            self._emit(action.event)
        elif isinstance(action, OpenStream):
            self._tasks[action.conn_id] = tg.create_task(self._open_and_read(action))
        elif isinstance(action, SendKeepAlive):
            await self._call(action.conn_id, _keepalive)
        elif isinstance(action, EndStream):
            await self._call(action.conn_id, _finalize)
            await self._call(action.conn_id, _close_stream)
        elif isinstance(action, FlushStream):
            await self._call(action.conn_id, _finalize)
        elif isinstance(action, AbortStream):
            await self._abort(action.conn_id)

    async def _send(self, action: SendAudio) -> None:
        stream = self._streams.get(action.conn_id)
        if stream is None:
            return
        self._note_send(action, self._clock.monotonic())
        try:
            await stream.send_audio(action.data)
        except Exception as exc:
            self._stream_closed(action.conn_id, _as_provider_error(exc, self.interaction_id))

    def _send_now(self, action: SendAudio, now: float) -> bool:
        """Send on a stream that takes audio without awaiting; False if it cannot now."""
        stream = self._immediate.get(action.conn_id)
        if stream is None:
            return action.conn_id not in self._streams  # gone: dropped, as `_send` would
        try:
            if not stream.send_audio_now(action.data):
                return False
        except Exception as exc:
            self._stream_closed(action.conn_id, _as_provider_error(exc, self.interaction_id))
            return True
        self._note_send(action, now)
        return True

    def _note_send(self, action: SendAudio, now: float) -> None:
        last = self._last_send.get(action.conn_id)
        if last is not None:
            self._metrics.send_gap.observe(now - last)
        self._last_send[action.conn_id] = now
        self._metrics.forward_wait.observe(action.waited_s)

    async def _call(self, conn_id: int, method: Callable[[ProviderStream], Awaitable[None]]) -> None:
        stream = self._streams.get(conn_id)
        if stream is None:
            return
        try:
            await method(stream)
        except Exception as exc:
            self._stream_closed(conn_id, _as_provider_error(exc, self.interaction_id))

    async def _abort(self, conn_id: int) -> None:
        stream = self._streams.pop(conn_id, None)
        self._immediate.pop(conn_id, None)
        self._stream_provider.pop(conn_id, None)
        self._live.discard(conn_id)
        self._last_send.pop(conn_id, None)
        task = self._tasks.pop(conn_id, None)
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.abort()
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _open_and_read(self, action: OpenStream) -> None:
        conn_id, core = action.conn_id, self.core
        request = StreamRequest(
            core.interaction_id,
            core.tenant_id,
            core.fmt,
            reconnect=action.reconnect,
            attempt=conn_id,
            options=self.options,
        )
        provider = self._fallback if action.fallback and self._fallback is not None else self._provider
        try:
            stream = await provider.open(request)
        except Exception as exc:
            exc = _as_provider_error(exc, self.interaction_id)
            self._count_failure(exc, provider.name)
            if self._watch is not None and provider is self._provider:
                self._watch.failed()
            core.on_stream_failed(conn_id, exc, self._clock.monotonic())
            self._waker.wake()
            return
        if self._watch is not None and provider is self._provider:
            self._watch.opened(self._clock.monotonic())
        if not core.on_stream_opened(conn_id, self._clock.monotonic()):
            with contextlib.suppress(Exception):
                await stream.abort()
            return
        self._streams[conn_id] = stream
        self._stream_provider[conn_id] = provider.name
        if isinstance(stream, ImmediateSender):
            self._immediate[conn_id] = stream
        self._live.add(conn_id)

        def on_event(event: ProviderEvent) -> None:
            now = self._clock.monotonic()
            core.on_stream_event(conn_id, event, now)
            self._act_or_wake(now)

        if isinstance(stream, EventPusher):
            stream.push_events_to(on_event)  # if it can; else its events come through events()
        self._waker.wake()
        error: ProviderError | None = None
        try:
            async for event in stream.events():
                on_event(event)
        except Exception as exc:
            error = _as_provider_error(exc, self.interaction_id)
        self._stream_closed(conn_id, error)

    def _stream_closed(self, conn_id: int, error: ProviderError | None) -> None:
        """Tell the core once that a stream ended; the core then asks for it to be aborted."""
        if conn_id not in self._live:
            return  # already reported (the reader and a send both saw the fault), or aborted
        self._live.discard(conn_id)
        if error is not None:
            provider = self._stream_provider.get(conn_id, self._provider.name)
            self._count_failure(error, provider)
            if self._watch is not None and provider == self._provider.name:
                self._watch.failed()
            log.warning(
                "provider stream lost",
                extra={"interaction_id": self.interaction_id, "code": error.code, "detail": error.message},
            )
        self.core.on_stream_closed(conn_id, error, self._clock.monotonic())
        self._waker.wake()

    def _count_failure(self, error: ProviderError, provider: str) -> None:
        self._metrics.connections_failed.labels(provider, error.code).inc()

    def _emit(self, event: CallEvent) -> None:
        metrics = self._metrics
        if isinstance(event, Transcript):
            latency_s = event.latency_ms / 1000
            if event.is_final:
                metrics.final_latency.observe(latency_s)
            else:
                metrics.interim_latency.observe(latency_s)
        elif isinstance(event, CallError):
            metrics.errors.labels(event.code).inc()
            log.warning(
                "call error",
                extra={"interaction_id": self.interaction_id, "code": event.code, "detail": event.message},
            )
        elif isinstance(event, SessionEnded):
            metrics.sessions_ended.labels(event.reason).inc()
            log.info(
                "session ended",
                extra={
                    "interaction_id": self.interaction_id,
                    "reason": event.reason,
                    "audio_s": event.audio_s,
                    "reconnects": event.reconnects,
                },
            )
        elif isinstance(event, ProviderChanged):
            metrics.failovers.labels(event.from_, event.to, event.reason).inc()
            log.warning(
                "call moved to another provider",
                extra={
                    "interaction_id": self.interaction_id,
                    "from": event.from_,
                    "to": event.to,
                    "reason": event.reason,
                    "at": event.at,
                },
            )
        elif isinstance(event, SessionStarted):
            metrics.sessions_started.inc()
            log.info("session started", extra={"interaction_id": self.interaction_id})
        metrics.events_published.inc()
        self._publish(event)


# What the loop asks of a stream besides audio, as functions `_call` applies to it.
def _keepalive(stream: ProviderStream) -> Awaitable[None]:
    return stream.keepalive()


def _finalize(stream: ProviderStream) -> Awaitable[None]:
    return stream.finalize()


def _close_stream(stream: ProviderStream) -> Awaitable[None]:
    return stream.close_stream()


def _as_provider_error(exc: Exception, interaction_id: str) -> ProviderError:
    """Providers raise ProviderError; anything else is a bug in one, logged once and retried."""
    if isinstance(exc, ProviderError):
        return exc
    log.error(
        "provider raised an unexpected exception",
        exc_info=exc,
        extra={"interaction_id": interaction_id},
    )
    return ProviderError("provider_fault", type(exc).__name__, retryable=True)
