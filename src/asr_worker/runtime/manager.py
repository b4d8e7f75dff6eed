"""The session registry: one runner per call, owned by one TaskGroup, with limits and draining.

`open_session` is synchronous, so "is there a session for this call?" and "create it" can
never be split by another coroutine: that, not a lock, is what keeps one session (and so one
provider connection) per call however many sources arrive at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final

from ..core.audio import AudioFormat
from ..core.call_options import NO_OPTIONS, CallOptions
from ..core.clock import Clock
from ..core.events import CallEvent
from ..core.failover import CIRCUIT_OPEN, Failover, FailoverConfig
from ..core.ids import CallKey
from ..core.redact import RedactOptions, Redactor
from ..core.session import FINALIZE_WAITS_MAX, Link, Phase, SessionCore
from ..core.session_types import Resume, SessionConfig, SessionStats
from ..errors import SessionRefused
from ..metrics import SESSION_COUNTERS, LiveTotals, WorkerMetrics
from ..providers.base import AdmissionGate, CapacityGauge, ChannelWeigher, LanguageAware, Provider
from ..settings import Section, Setting, int_range, seconds
from .primary import PrimaryWatch
from .runner import SessionRunner
from .source import CallSource
from .wakeup import TimerWheel

log = logging.getLogger("asr_worker.sessions")


@dataclass(frozen=True)
class CallLimits:
    """How much the registry takes on before it refuses new calls and sources."""

    max_sessions: int = 1000
    max_sources_per_call: int = 8
    max_buffered_audio_s: float = 3600.0


SETTINGS: Final = Section(
    "calls",
    "call limits",
    CallLimits,
    (
        Setting(
            "max_sessions",
            "ASR_MAX_SESSIONS",
            "most concurrent calls; more are refused",
            int_range(1, 1_000_000),
        ),
        Setting(
            "max_sources_per_call",
            "ASR_MAX_SOURCES_PER_CALL",
            "most sockets feeding one call",
            int_range(1, 1000),
        ),
        Setting(
            "max_buffered_audio_s",
            "ASR_MAX_BUFFERED_AUDIO_S",
            "new calls are refused while the worker holds more audio than this, seconds",
            seconds(1.0, 10_000_000.0),
        ),
    ),
)


DEFAULT_FALLBACK_CALLS: Final = 32  # a fallback that measures no capacity of its own (a remote one)


class FallbackSlots:
    """The calls a provider carries, bounded: a call that moves (or starts) there takes a slot
    for its channels, and gives it back when it ends. The bound is `limit` calls when set
    (ASR_FALLBACK_MAX_CALLS), else the channels the provider says it can carry (`gauge`: the
    local engine measures what decoding costs), else `DEFAULT_FALLBACK_CALLS` calls."""

    def __init__(self, limit: int = 0, gauge: CapacityGauge | None = None) -> None:
        self.gauge = gauge if not limit else None
        self.limit = limit or (0 if gauge is not None else DEFAULT_FALLBACK_CALLS)
        self.in_use = 0  # calls
        self.channels = 0.0  # weighted: a call on a costlier engine takes more (`ChannelWeigher`)

    @property
    def capacity(self) -> tuple[int, str] | None:
        """The bound and its unit ("calls" or "channels"); None while the gauge measures nothing."""
        if self.limit:
            return self.limit, "calls"
        measured = self.gauge.capacity_channels() if self.gauge is not None else None
        return None if measured is None else (measured, "channels")

    def room(self, channels: float = 1) -> bool:
        bound = self.capacity
        if bound is None:
            return True  # not measured yet (a loading engine): calls wait for it to load
        limit, unit = bound
        return (self.in_use + 1 if unit == "calls" else self.channels + channels) <= limit

    def claim(self, channels: float = 1) -> bool:
        if not self.room(channels):
            return False
        self.in_use += 1
        self.channels += channels
        return True

    def release(self, channels: float = 1) -> None:
        self.in_use = max(0, self.in_use - 1)
        self.channels = max(0.0, self.channels - channels) if self.in_use else 0.0  # no float drift

    @property
    def full(self) -> bool:
        return not self.room()

    def describe(self) -> str:
        bound = self.capacity
        if bound is None:
            return f"{self.in_use} calls"
        limit, unit = bound
        used = self.in_use if unit == "calls" else round(self.channels, 1)
        return f"{used:g} of the {limit} {unit}"


class SessionManager:
    def __init__(
        self,
        *,
        provider: Provider,
        config: SessionConfig,
        fallback: Provider | None = None,
        failover: FailoverConfig | None = None,
        limits: CallLimits | None = None,
        redact: RedactOptions | None = None,
        publish: Callable[[CallEvent], None],
        metrics: WorkerMetrics,
        clock: Clock,
        rng: random.Random | None = None,
        realtime: bool = True,
    ) -> None:
        """`realtime` False (a file fed as fast as the engine goes, `transcribe`): no call is
        refused for the engine's capacity, which is what real time needs."""
        self.provider = provider
        self.fallback = fallback
        failover = failover or FailoverConfig()
        self.failover_config = None if fallback is None else replace(failover, fallback=fallback.name)
        self.fallback_slots = FallbackSlots(
            failover.max_calls, fallback if isinstance(fallback, CapacityGauge) else None
        )
        # The primary's own bound, when it measures one (the local engine): new calls beyond it
        # are refused before the calls it carries fall behind.
        self.engine_slots = (
            FallbackSlots(0, provider) if realtime and isinstance(provider, CapacityGauge) else None
        )
        self._engine_claims: dict[SessionRunner, float] = {}
        self._fallback_claims: dict[SessionRunner, float] = {}
        self.primary_watch = None if fallback is None else PrimaryWatch(provider)
        self.config = config
        limits = limits or CallLimits()
        self.max_sessions = limits.max_sessions
        self.max_sources_per_call = limits.max_sources_per_call
        self.max_buffered_audio_s = limits.max_buffered_audio_s
        # ASR_REDACT: what every call is redacted of; a call's own `redact` adds to it.
        self.redact = frozenset((redact or RedactOptions()).redact)
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._sessions: dict[CallKey, SessionRunner] = {}
        self._tasks: dict[SessionRunner, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._wheel: TimerWheel | None = None  # every session's deadlines, one loop timer
        self._empty = asyncio.Event()
        self._empty.set()
        self._ended_counters: dict[str, float] = dict.fromkeys(SESSION_COUNTERS, 0.0)
        self.accepting = True

    async def __aenter__(self) -> SessionManager:
        self._wheel = TimerWheel()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            await self.drain()
        else:
            self.accepting = False
        tg, self._tg = self._tg, None
        assert tg is not None
        await tg.__aexit__(et, exc, tb)

    # --- calls ------------------------------------------------------------------------------

    def open_session(
        self,
        key: CallKey,
        fmt: AudioFormat,
        resume: Resume | None = None,
        options: CallOptions = NO_OPTIONS,
    ) -> SessionRunner:
        """The live session for a source about to attach to this call, created if there is none.

        Raises SessionRefused (with a stable code) when the worker will not take it. `resume`
        continues a call another worker began, and `options` are what the call asks of its
        transcription (`core.call_options`), given to every provider stream the call opens;
        both apply only to a new session (a source joining a call under way changes neither)."""
        runner = self._sessions.get(key)
        if runner is not None:
            core = runner.core
            if core.phase is not Phase.ACTIVE:
                if core.end_reason == "shutdown":
                    raise SessionRefused(
                        "draining",
                        "the worker is shutting down; the call was finalized: send it to another worker",
                    )
                raise SessionRefused("session_ending", "this call is ending; try again when it has ended")
            if core.fmt != fmt:
                raise SessionRefused(
                    "format_mismatch",
                    f"this call's audio is {_describe(core.fmt)}; a source may not send {_describe(fmt)}",
                )
            if core.source_count >= self.max_sources_per_call:
                self._metrics.sessions_refused.labels("too_many_sources").inc()
                raise SessionRefused(
                    "too_many_sources", f"this call already has {core.source_count} sources, the limit"
                )
            return runner
        if not self.accepting or self._tg is None or self._wheel is None:
            self._metrics.sessions_refused.labels("draining").inc()
            raise SessionRefused("draining", "the worker is shutting down; send the call to another worker")
        if len(self._sessions) >= self.max_sessions:
            self._metrics.sessions_refused.labels("capacity").inc()
            raise SessionRefused("capacity", f"the worker is at its limit of {self.max_sessions} calls")
        if self.overloaded:
            self._metrics.sessions_refused.labels("overloaded").inc()
            raise SessionRefused(
                "overloaded",
                f"the worker holds more than {self.max_buffered_audio_s:g} s of audio its providers have "
                "not taken; send the call to another worker",
            )
        if isinstance(self.provider, LanguageAware):
            refusal = self.provider.language_refusal(options.language)
            if refusal is not None:
                self._metrics.sessions_refused.labels("language_unsupported").inc()
                raise SessionRefused("language_unsupported", refusal)
        now = self._clock.monotonic()
        on_fallback = fmt.channels * _weight(self.fallback, options)
        failover, provider_name = self._failover_for_new_call(now, on_fallback)
        engine = self.engine_slots
        on_primary = provider_name == self.provider.name
        weighted = fmt.channels * _weight(self.provider, options)
        if on_primary and engine is not None and not engine.claim(weighted):
            self._metrics.sessions_refused.labels("engine_full").inc()
            raise SessionRefused(
                "engine_full",
                f"the speech engine carries {engine.describe()} it can decode in real time; try again "
                "shortly or send the call to another worker",
            )
        options = options.with_redact(self.redact)  # every stream is asked with the union too
        core = SessionCore(
            interaction_id=key.interaction_id,
            tenant_id=key.tenant,
            fmt=fmt,
            provider=provider_name,
            config=self.config,
            created_at=now,
            wall_ms_at_create=self._clock.wall_ms(),
            rng=random.Random(self._rng.random()),
            resume=resume,
            failover=failover,
            redactor=Redactor.of(options.redact),
        )
        runner = SessionRunner(
            core,
            self.provider,
            self._publish,
            self._metrics,
            self._clock,
            self._wheel,
            self.fallback,
            self.primary_watch,
            options,
        )
        self._sessions[key] = runner
        if on_primary and engine is not None:
            self._engine_claims[runner] = weighted
        if failover is not None:
            self._fallback_claims[runner] = on_fallback
        self._empty.clear()
        self._tasks[runner] = self._tg.create_task(self._run(runner), name=f"session:{key.interaction_id}")
        return runner

    def _failover_for_new_call(self, now: float, channels: float) -> tuple[Failover | None, str]:
        """A new call's failover state and the provider it starts on: the fallback while the
        primary takes no new calls (its circuit breaker is open) and the fallback has room."""
        config, watch = self.failover_config, self.primary_watch
        if config is None or watch is None:
            return None, self.provider.name
        slots = self.fallback_slots
        claim = functools.partial(slots.claim, channels)
        failover = Failover(config, claim, functools.partial(slots.release, channels), watch.up_since)
        gate = self.provider
        if isinstance(gate, AdmissionGate) and not gate.taking_new_calls() and claim():
            failover.started_moved(CIRCUIT_OPEN, self.provider.name, now)
            return failover, config.fallback
        return failover, self.provider.name

    def join(
        self,
        key: CallKey,
        fmt: AudioFormat,
        resume: Resume | None = None,
        *,
        options: CallOptions = NO_OPTIONS,
    ) -> CallSource:
        """Join the call as one more of its sources, starting its session if it has none: the
        handle every source feeds the call through and leaves it by. Raises SessionRefused
        as `open_session` does; `options` count only when this source starts the call. The
        key's tenant is the one its source's credentials name: a call is only ever joined by
        sources of its own tenant."""
        return CallSource(self.open_session(key, fmt, resume, options))

    def get(self, key: CallKey) -> SessionRunner | None:
        return self._sessions.get(key)

    @property
    def sessions(self) -> list[SessionRunner]:
        return list(self._sessions.values())

    def sessions_of(self, tenant: str | None) -> list[SessionRunner]:
        """The live calls of one tenant (what its keys may list and watch); None: of all."""
        return [runner for key, runner in self._sessions.items() if tenant is None or key.tenant == tenant]

    @property
    def at_capacity(self) -> bool:
        return len(self._sessions) >= self.max_sessions

    @property
    def engine_full(self) -> bool:
        """The primary carries all it measures it can: a new call would be refused."""
        return self.engine_slots is not None and self.engine_slots.full

    @property
    def overloaded(self) -> bool:
        """Too much audio held across calls (providers not keeping up): take no new calls."""
        held_s = 0.0
        for runner in self._sessions.values():
            held_s += runner.core.fmt.seconds(runner.core.retained_bytes)
            if held_s > self.max_buffered_audio_s:
                return True
        return False

    async def _run(self, runner: SessionRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            runner.abandon("shutdown_timeout", "the call did not finish finalizing before shutdown")
            raise
        except Exception:
            log.exception("session failed", extra={"interaction_id": runner.interaction_id})
            runner.abandon("internal_error", "the worker failed this call")
        finally:
            self._retire(runner)

    def _retire(self, runner: SessionRunner) -> None:
        self._tasks.pop(runner, None)
        on_fallback = self._fallback_claims.pop(runner, runner.core.fmt.channels)
        if runner.core.failover is not None and runner.core.failover.moved:
            self.fallback_slots.release(on_fallback)
        claimed = self._engine_claims.pop(runner, 0)
        if claimed and self.engine_slots is not None:
            self.engine_slots.release(claimed)
        if self._sessions.get(runner.key) is runner:
            del self._sessions[runner.key]
        for name, value in _counter_values(runner.core).items():
            self._ended_counters[name] += value
        if not self._sessions:
            self._empty.set()

    # --- shutdown ---------------------------------------------------------------------------

    async def drain(self, timeout_s: float | None = None) -> None:
        """Refuse new calls, finalize every session, wait (bounded) until all have ended."""
        self.accepting = False
        for runner in list(self._sessions.values()):
            runner.end("shutdown")
        limit = (
            timeout_s
            if timeout_s is not None
            else self.config.finalize_timeout_s * FINALIZE_WAITS_MAX + 2.0  # the longest call end
        )
        try:
            await asyncio.wait_for(self._empty.wait(), limit)
        except TimeoutError:
            log.error(
                "sessions did not end in time; cancelling them", extra={"sessions": len(self._sessions)}
            )
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    # --- state for /health, /metrics, /v1/sessions -----------------------------------------

    def live_totals(self) -> LiveTotals:
        totals = LiveTotals(counters=dict(self._ended_counters))
        if self._wheel is not None:
            totals.session_timers_pending = self._wheel.pending
        for runner in self._sessions.values():
            core = runner.core
            totals.sessions_active += 1
            totals.sources_active += core.source_count
            totals.calls_by_provider[core.provider] = totals.calls_by_provider.get(core.provider, 0) + 1
            if core.link in (Link.CONNECTED, Link.CLOSING):
                totals.connections_active += 1
                by_provider = totals.connections_by_provider
                by_provider[core.provider] = by_provider.get(core.provider, 0) + 1
            totals.buffered_audio_s += core.fmt.seconds(core.retained_bytes)
            totals.unsent_audio_s += core.fmt.seconds(core.unsent_bytes)
            for name, value in _counter_values(core).items():
                totals.counters[name] += value
        return totals


def _counter_values(core: SessionCore) -> dict[str, float]:
    s: SessionStats = core.stats
    sec = core.fmt.seconds
    return {
        "asr_audio_in_seconds": sec(s.bytes_in),
        "asr_audio_out_seconds": sec(s.bytes_out),
        "asr_audio_replayed_seconds": sec(s.bytes_replayed),
        "asr_audio_dropped_seconds": sec(s.bytes_dropped),
        "asr_audio_frames_in": s.frames_in,
        "asr_audio_frames_rejected": s.frames_rejected,
        "asr_audio_frames_rate_limited": s.frames_rate_limited,
        "asr_provider_connections_created": s.streams_opened,
        "asr_provider_connections_reused": s.frames_reused,
        "asr_provider_connections_reconnected": s.reconnects,
        "asr_provider_keepalives": s.keepalives,
        "asr_transcripts_interim": s.interims,
        "asr_transcripts_final": s.finals,
        "asr_words_deduplicated": s.words_deduplicated,
        "asr_audio_paused_seconds": sec(s.bytes_paused),
        "asr_redactions": s.spans_redacted,
    }


def _weight(provider: Provider | None, options: CallOptions) -> float:
    """What one channel of this call takes of the provider's measured channels."""
    return provider.channel_weight(options) if isinstance(provider, ChannelWeigher) else 1.0


def _describe(fmt: AudioFormat) -> str:
    return f"{fmt.encoding} {fmt.sample_rate} Hz x{fmt.channels}"
