"""The worker: what `asr-worker serve` runs, assembled from its parts.

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

from . import __version__
from .bus import Bus, make_bus
from .config import Settings
from .core.clock import Clock, SystemClock
from .core.session import Event, SessionConfig
from .metrics import LiveTotals, WorkerMetrics
from .providers import Provider, make_provider
from .providers.base import ExportsMetrics
from .runtime.hub import EventHub
from .runtime.manager import SessionManager

log = logging.getLogger("asr_worker")

SERVICE_NAME: Final = "asr-worker"


def session_config(settings: Settings) -> SessionConfig:
    return SessionConfig(
        max_buffer_ms=settings.max_buffer_ms,
        send_chunk_ms=settings.send_chunk_ms,
        keepalive_s=settings.keepalive_s,
        grace_s=settings.session_grace_s,
        finalize_timeout_s=settings.finalize_timeout_s,
        max_retained_s=settings.max_retained_s,
    )


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider | None = None,
        bus: Bus | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.provider = provider or make_provider(settings)
        self.bus = bus or make_bus(settings)
        self.hub = EventHub()
        self.metrics = WorkerMetrics(self.live_totals, self.provider.name)
        if isinstance(self.provider, ExportsMetrics):
            self.metrics.registry.register(self.provider.metrics_collector())
        self.manager = SessionManager(
            provider=self.provider,
            config=session_config(settings),
            max_sessions=settings.max_sessions,
            publish=self.publish,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.draining = False
        self.started = asyncio.Event()
        self.port = 0
        self._started_at = time.monotonic()

    def publish(self, event: Event) -> None:
        self.hub.publish(event)
        self.bus.publish(event)

    async def serve(self, stop: asyncio.Event) -> None:
        from .http.app import build_app  # the HTTP edge depends on the worker, not the reverse

        runner = web.AppRunner(build_app(self), handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            async with self.manager, asyncio.TaskGroup() as tg:
                bus_task = tg.create_task(self.bus.run(self.manager), name="bus")
                site = web.TCPSite(runner, self.settings.host, self.settings.port)
                await site.start()
                self.port = _bound_port(runner, self.settings.port)
                log.info(
                    "serving",
                    extra={
                        "host": self.settings.host,
                        "port": self.port,
                        "provider": self.provider.name,
                        "bus": self.bus.name,
                    },
                )
                self.started.set()
                await stop.wait()
                log.info("draining", extra={"sessions": len(self.manager.sessions)})
                self.draining = True
                with contextlib.suppress(TimeoutError):
                    await self.manager.drain()
                bus_task.cancel()
        finally:
            await runner.cleanup()
            await self.provider.aclose()
            log.info("stopped")

    # --- what /health, /ready and /metrics report -------------------------------------------

    def live_totals(self) -> LiveTotals:
        totals = self.manager.live_totals()
        totals.counters["asr_events_dropped"] = self.hub.events_dropped
        return totals

    def health(self) -> dict[str, object]:
        totals = self.manager.live_totals()
        provider = self.provider.health()
        bus_ok = self.bus.healthy()
        return {
            "status": "ok" if provider.ok and bus_ok else "degraded",
            "service": SERVICE_NAME,
            "version": __version__,
            "provider": self.provider.name,
            "activeBuffers": totals.sessions_active,
            "activeConnections": totals.connections_active,
            "activeSources": totals.sources_active,
            "bufferedAudioSeconds": round(totals.buffered_audio_s, 3),
            "maxSessions": self.manager.max_sessions,
            "draining": self.draining,
            "uptimeSeconds": round(time.monotonic() - self._started_at, 1),
            "checks": {
                "provider": {"ok": provider.ok, "detail": provider.detail},
                "bus": self.bus.status(),
            },
        }

    def readiness(self) -> tuple[bool, str]:
        if self.draining or not self.manager.accepting:
            return False, "draining"
        if self.manager.at_capacity:
            return False, "at_capacity"
        if not self.bus.healthy():
            return False, "bus_down"
        return True, "ready"


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
