"""The worker: what `asr-worker serve` runs, assembled from its parts. The composition root:
it imports every side (settings, provider, bus, sessions, HTTP edge, transports) and nothing
imports it; the HTTP edge and the transports each see it only as the small protocol they own
(`http.app.ServedProcess`, `transports.host.CallHost`), which it satisfies without naming.

    sources (ingest WS, telephony WS, bus) --> SessionManager --> SessionRunner --> Provider
                                                    |                 |
                                               SessionCore      events --> EventHub --> sockets, SSE, page
                                                                          \\-> Bus (Redis)

`serve` owns every task: the session manager's TaskGroup, the bus, the HTTP server. On
stop (SIGTERM) it stops accepting, finalizes every session, then closes the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from aiohttp import web

from . import __version__, compiled
from .bus import SETTINGS as BUS
from .bus import Bus, bus_kind
from .config import Settings, make_fallback, make_provider
from .core import failover, redact, session_types
from .core.call_options import NO_OPTIONS, CallOptions
from .core.clock import Clock, SystemClock
from .core.events import CallEvent
from .core.ids import CallKey
from .http import options as http_options
from .http.app import build_app
from .http.limits import ConnectionLimits
from .http.options import HttpOptions
from .http.server import HttpServer
from .metrics import LiveTotals, WorkerMetrics
from .providers import BackgroundProvider, InstrumentedProvider, Provider, ProviderHealth
from .runtime import manager as calls
from .runtime.hub import EventHub
from .runtime.manager import SessionManager
from .tenancy import Keyring
from .transcripts import SETTINGS as TRANSCRIPTS
from .transcripts import WEBHOOK_SETTINGS, Transcripts
from .transports import (
    audiohook,
    call_control,
    exotel,
    forks,
    ingest_ws,
    openai_realtime,
    siprec,
    sse,
    transcripts,
    twilio,
)
from .transports.forks import audiosocket
from .transports.ingest_raw import IngestServer

log = logging.getLogger("asr_worker")

SERVICE_NAME: Final = "asr-worker"


def _check(health: ProviderHealth, new_calls: str = "") -> dict[str, object]:
    """A provider's entry under /health's `checks`: `ok` is null while its state is unknown."""
    detail = f"{health.detail}; {new_calls}" if new_calls else health.detail
    return {"state": health.state, "ok": health.ok if health.known else None, "detail": detail}


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider | None = None,
        fallback: Provider | None = None,
        bus: Bus | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.http: HttpOptions = settings.of(http_options.SETTINGS)
        self.keyring = Keyring(self.http.worker_token, self.http.api_keys)
        self.clock = clock or SystemClock()
        self.provider = provider or make_provider(settings)
        self.fallback = fallback or make_fallback(settings)  # failover: where calls move
        session = settings.of(session_types.SETTINGS)
        if bus is None:
            kind = bus_kind(settings.of(BUS).adapter)
            bus = kind.create(settings.of(kind.settings), session)
        self.bus = bus
        self.hub = EventHub()
        self.metrics = WorkerMetrics(self.live_totals, self.provider.name)
        self.providers = [self.provider] if self.fallback is None else [self.provider, self.fallback]
        for instrumented in self.providers:
            if isinstance(instrumented, InstrumentedProvider):
                instrumented.register_metrics(self.metrics.registry)
        self.bus.register_metrics(self.metrics.registry)
        self.transcripts = Transcripts(
            settings.of(TRANSCRIPTS),
            settings.of(WEBHOOK_SETTINGS),
            self.metrics.registry,
            options_of=self._options_of,
            share=self.bus.share_transcripts,
        )
        self.limits = ConnectionLimits(self.http)
        self.limits.register_metrics(self.metrics.registry)
        self.siprec = siprec.SiprecServer(self, settings.of(siprec.SETTINGS), self.http.host)
        sockets = settings.of(audiosocket.SETTINGS)
        self.audiosocket = audiosocket.AudioSocketServer(self, sockets, self.http.host)
        self.manager = SessionManager(
            provider=self.provider,
            fallback=self.fallback,
            failover=settings.of(failover.SETTINGS),
            config=session,
            limits=settings.of(calls.SETTINGS),
            redact=settings.of(redact.SETTINGS),
            publish=self.publish,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.draining = False
        self.started = asyncio.Event()
        self.port = 0
        self.http_server: HttpServer | None = None  # while serving
        self._started_at = time.monotonic()

    def publish(self, event: CallEvent) -> None:
        self.transcripts.publish(event)  # before the bus: the webhooks an event makes go with it
        self.hub.publish(event)
        self.bus.publish(event)

    def _options_of(self, call: CallKey) -> CallOptions:
        runner = self.manager.get(call)
        return NO_OPTIONS if runner is None else runner.options

    async def serve(self, stop: asyncio.Event) -> None:
        # One line per transport: its routes, served with this worker as their host.
        routes = [
            *ingest_ws.routes(self),
            *twilio.routes(self, self.settings.of(twilio.SETTINGS)),
            *exotel.routes(self),
            *openai_realtime.routes(self),
            *audiohook.routes(self, self.settings.of(audiohook.SETTINGS)),
            *sse.routes(self),
            *siprec.routes(self, self.siprec),
            *transcripts.routes(self),
            *call_control.routes(self),
            *forks.routes(self, self.settings.of(forks.vonage.SETTINGS)),
        ]
        app = build_app(self, routes, self.keyring, self.limits)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=2.0,
            keepalive_timeout=self.http.idle_timeout_s,
        )
        await runner.setup()
        server = self.http_server = HttpServer(runner, self.limits, self.http.head_timeout_s)
        try:
            async with self.manager, asyncio.TaskGroup() as tg:
                # Listen first: a port in use stops the start here, before the model loads or
                # the bus connects and logs anything (the one line the user sees says why).
                # The ingest sockets' event senders are this group's tasks.
                ingest = IngestServer(self, tg.create_task)
                self.port = await server.start(self.http.host, self.http.port, ingest)
                await self.siprec.start(tg)  # SIP listeners (when ASR_SIPREC_PORT is set), RTP timers
                await self.audiosocket.start()  # AudioSocket's port, when ASR_AUDIOSOCKET_PORT is set
                bus_task = tg.create_task(self.bus.run(self.manager), name="bus")
                webhooks_task = tg.create_task(self.transcripts.run(), name="webhooks")
                provider_tasks = [
                    tg.create_task(background.run(), name=f"provider:{background.name}")
                    for background in self.providers
                    if isinstance(background, BackgroundProvider)
                ]
                # by now every hot module is imported: the ingest socket's, the provider's
                self.metrics.build_info.labels(__version__, str(len(compiled.compiled_modules()))).set(1)
                log.info(
                    "serving",
                    extra={
                        "host": self.http.host,
                        "port": self.port,
                        "provider": self.provider.name,
                        "bus": self.bus.name,
                        "build": compiled.describe(),
                        **self.limits.describe(),
                    },
                )
                if stale := compiled.stale_modules():
                    log.warning(
                        "compiled modules are older than their source, so the old code runs: "
                        "rebuild them with `pip install -e .` (scripts/serve.sh does)",
                        extra={"sources": [str(path) for path in stale]},
                    )
                self.started.set()
                await stop.wait()
                log.info("draining", extra={"sessions": len(self.manager.sessions)})
                self.draining = True
                with contextlib.suppress(TimeoutError):
                    await self.manager.drain()
                self.siprec.close()  # a BYE for every recorded call left, the sockets closed
                await self.audiosocket.close()  # the calls still connected are hung up
                self.hub.close()  # every call has ended: let event streams finish
                await self.transcripts.settle()
                webhooks_task.cancel()
                bus_task.cancel()
                for task in provider_tasks:
                    task.cancel()
        finally:
            server.close()
            await self.audiosocket.close()
            await runner.cleanup()
            await self.provider.aclose()
            if self.fallback is not None:
                await self.fallback.aclose()
            if self.started.is_set():  # a worker that never served has nothing to report stopping
                log.info("stopped")

    # --- what /health, /ready and /metrics report -------------------------------------------

    def live_totals(self) -> LiveTotals:
        totals = self.manager.live_totals()
        totals.counters["asr_events_dropped"] = self.hub.events_dropped
        return totals

    def health(self) -> dict[str, object]:
        """What is known, from facts: each check's `state` is `ok`, `unknown` (nothing has shown
        yet: a remote provider no call has tried) or `failing`, and its `detail` says why and,
        while the primary fails, where new calls go; `status` is `degraded` while a check is
        failing."""
        totals = self.manager.live_totals()
        provider = self.provider.health()
        bus = self.bus.status()
        primary = _check(provider, self._new_calls(provider))
        engine = self.manager.engine_slots
        if engine is not None:  # it measures what it can carry: how much of it is taken
            bound = engine.capacity
            primary["channels"] = engine.channels
            primary["maxChannels"] = None if bound is None else bound[0]
        checks: dict[str, object] = {"provider": primary, "bus": bus}
        states = [provider.state, str(bus["state"])]
        if self.fallback is not None:
            fallback = self.fallback.health()
            states.append(fallback.state)
            slots = self.manager.fallback_slots
            entry = _check(fallback) | {
                "provider": self.fallback.name,
                "calls": slots.in_use,
            }
            if slots.limit:
                entry["maxCalls"] = slots.limit
            else:  # bounded by what the fallback measures it can carry
                bound = slots.capacity
                entry["channels"] = slots.channels
                entry["maxChannels"] = None if bound is None else bound[0]
            checks["fallback"] = entry
        return {
            "status": "degraded" if "failing" in states else "ok",
            "service": SERVICE_NAME,
            "version": __version__,
            "provider": self.provider.name,
            "activeCalls": totals.sessions_active,
            "activeBuffers": totals.sessions_active,
            "activeConnections": totals.connections_active,
            "activeSources": totals.sources_active,
            "bufferedAudioSeconds": round(totals.buffered_audio_s, 3),
            "maxSessions": self.manager.max_sessions,
            "draining": self.draining,
            "uptimeSeconds": round(time.monotonic() - self._started_at, 1),
            "checks": checks,
        }

    def _new_calls(self, primary: ProviderHealth) -> str:
        """Where new calls go while the primary refuses them (its circuit breaker open): to
        the fallback while it has room, else they wait on the primary; without a fallback,
        they fail at once."""
        refusing_s = primary.refusing_new_calls_s
        if refusing_s is None:
            return ""
        more = f"for {refusing_s:.0f} s more"
        if self.fallback is None:
            return f"new calls fail at once {more} (no ASR_FALLBACK_PROVIDER)"
        slots = self.manager.fallback_slots
        if slots.in_use < slots.limit:
            return f"new calls start on {self.fallback.name}, the fallback, {more}"
        return (
            f"new calls wait on {self.provider.name}: the fallback, {self.fallback.name}, carries as "
            f"many calls as it may (ASR_FALLBACK_MAX_CALLS, {slots.limit})"
        )

    def readiness(self) -> tuple[bool, str]:
        if self.draining or not self.manager.accepting:
            return False, "draining"
        if self.manager.at_capacity:
            return False, "at_capacity"
        if self.manager.overloaded:
            return False, "overloaded"
        if self.manager.engine_full:
            return False, "engine_full"
        if not self.bus.healthy():
            return False, "bus_down"
        if not self.provider.health().ready:
            return False, "provider_not_ready"
        return True, "ready"
