"""Running `asr-worker dg-server` (`/v1/listen`, and Flux's `/v2/listen`) until a signal: the
provider from the worker's settings, the server from its own."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from ..config import Settings, make_provider
from ..providers import BackgroundProvider
from ..settings import is_loopback
from ..transcripts import webhooks
from .faults import Faults
from .server import DeepgramServer
from .settings import DgServerSettings

log = logging.getLogger("asr_worker.dgserver")


async def serve(settings: Settings, dg: DgServerSettings, stop: asyncio.Event) -> None:
    provider = make_provider(settings)
    sender = webhooks.WebhookSender(
        settings.of(webhooks.SETTINGS), webhooks.WebhookMetrics(CollectorRegistry())
    )
    server = DeepgramServer(
        provider,
        api_key=None if dg.api_key is None else dg.api_key.reveal(),
        idle_timeout_s=dg.idle_timeout_s,
        faults=Faults.parse(dg.faults),
        record_audio=False,  # a long-running server keeps no audio
        max_records=100,
        webhooks=sender,  # streams' `callback`s
    )
    try:
        async with sender, asyncio.TaskGroup() as tg, server.running(dg.host, dg.port):
            # The provider's shared work (the local engine loads its model and runs its decoders
            # here) lives exactly as long as the server, as it does in `serve`.
            background = (
                tg.create_task(provider.run(), name="provider")
                if isinstance(provider, BackgroundProvider)
                else None
            )
            log.info(
                "dg-server listening",
                extra={
                    "url": f"ws://{dg.host}:{server.port}/v1/listen",
                    "flux_url": f"ws://{dg.host}:{server.port}/v2/listen",
                    "provider": provider.name,
                    "key_required": dg.api_key is not None,
                    "faults": dg.faults or "none",
                },
            )
            if dg.api_key is None and not is_loopback(dg.host):
                log.warning(
                    "dg-server is open to anyone who can reach it: it listens beyond this machine "
                    "and no key is set (--api-key or DG_SERVER_API_KEY)",
                    extra={"host": dg.host},
                )
            await stop.wait()
            log.info("dg-server stopping", extra={"connections": server.live_connections})
            if background is not None:
                background.cancel()
    finally:
        await provider.aclose()
