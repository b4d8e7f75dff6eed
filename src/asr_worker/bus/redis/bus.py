"""`RedisStreamsBus`: the bus the worker runs with `PUBSUB_ADAPTER=redis_streams`, put
together from the package's parts, which it runs in one TaskGroup:

* `link.py`, the connection, and whether Redis answers;
* `intake.py`, taking calls (new, or claimed from a worker that died);
* `audio.py`, reading the calls' audio into their sessions;
* `writer.py`, writing events, progress and claims, and handing calls over;
* `housekeeping.py`, trimming `asr:calls`;
* `deliveries.py`, calls' documents and webhooks for every worker (`share_transcripts`).

They share the `CallTable` of calls this worker owns (`calls.py` says who changes what of a
call) and the `BusCounters` (`metrics.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import secrets
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ... import logs
from ...core.session_types import SessionConfig
from .audio import AudioReader
from .calls import CallTable, ClaimTiming
from .deliveries import SharedDocuments
from .housekeeping import Housekeeping, dead_consumer_after_s
from .intake import Intake
from .link import RedisLink
from .metrics import BusCollector, BusCounters, BusGauges
from .options import RedisOptions
from .outbox import MAX_QUEUED_EVENTS, Outbox
from .wire import REDIS_ERRORS
from .writer import Writer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ...core.events import CallEvent
    from ...runtime.manager import SessionManager
    from ...transcripts import WebhookPlan


class RedisStreamsBus:
    name = "redis_streams"

    def __init__(
        self,
        options: RedisOptions | None = None,
        session: SessionConfig | None = None,
        *,
        max_queued_events: int = MAX_QUEUED_EVENTS,
    ) -> None:
        settings = options or RedisOptions()
        # A call's audio is fed ahead of what its session sent on by at most half of what a
        # session keeps for replay, so feeding never makes a session shed audio.
        feed_limit_s = (session or SessionConfig()).max_retained_s / 2
        parts = urlsplit(settings.url)
        if parts.password:
            logs.register_secret(parts.password)
        where = f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.timing = ClaimTiming(settings.claim_idle_s)
        self.counters = BusCounters()
        self._calls = CallTable()
        cluster = settings.cluster
        self._link = RedisLink(settings.url, where, self.consumer, self._link_up, cluster=cluster)
        self._writer = Writer(self._link, self._calls, self.counters, self.timing, Outbox(max_queued_events))
        self._intake = Intake(
            self._link,
            self._calls,
            self.counters,
            self.timing,
            max_takeovers=settings.max_takeovers,
            cluster=cluster,
        )
        self._reader = AudioReader(
            self._link,
            self._calls,
            self.counters,
            feed_limit_s=feed_limit_s,
            read_interval_s=settings.read_interval_ms / 1000,
        )
        self._housekeeping = Housekeeping(
            self.consumer, dead_consumer_after_s=dead_consumer_after_s(settings.claim_idle_s)
        )
        self._cluster = cluster

    def _link_up(self, again: bool) -> None:
        if again:
            self._intake.hold_claims()
        self._writer.link_up()

    # --- the Bus interface --------------------------------------------------------------------

    def publish(self, event: CallEvent) -> None:
        self._writer.publish(event)

    def healthy(self) -> bool:
        return self._link.up

    def status(self) -> dict[str, object]:
        """From facts: unknown until the first attempt to reach Redis has ended; while Redis
        is away, what happens to calls meanwhile."""
        link = self._link
        outbox = self._writer.outbox
        if link.up:
            state, detail = "ok", f"connected to {link.where}"
        elif not link.attempted:
            state, detail = "unknown", f"connecting to {link.where}"
        else:
            state = "failing"
            detail = (
                f"{link.where} unreachable ({link.last_error}): calls in progress go on and their "
                f"events wait here ({len(outbox)} of at most {outbox.max_events}, then interims and the "
                "oldest are dropped); no call is taken from the bus, and /ready says bus_down, so "
                "new calls go to other workers"
            )
        status: dict[str, object] = {
            "adapter": self.name,
            "state": state,
            "ok": None if state == "unknown" else self.healthy(),
            "detail": detail,
            "redis": link.where,
            "cluster": link.cluster,
            "consumer": self.consumer,
            "callsOwned": len(self._calls),
            "eventsQueued": len(outbox),
            "eventsDropped": self.counters.events_dropped,
        }
        down_for = link.down_for_s
        if down_for is not None:
            status["downForSeconds"] = round(down_for, 1)
            status["lastError"] = link.last_error
        return status

    async def first_sighting(self, token: str, ttl_s: float) -> bool:
        """SET NX with the window as its expiry: the first worker to set it wins. With Redis
        away, True: the signature, its time window and this process's own cache still hold."""
        key = "asr:seen:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            return bool(await self._link.client.set(key, "1", nx=True, ex=max(1, math.ceil(ttl_s))))
        except REDIS_ERRORS:
            return True

    def share_transcripts(self, keep_s: float, plan: WebhookPlan) -> SharedDocuments:
        self._intake.plan = plan
        return SharedDocuments(self._link, self._writer, self.timing, keep_s, cluster=self._cluster)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        outbox = self._writer.outbox
        gauges = BusGauges(
            up=self.healthy,
            events_queued=outbox.__len__,
            max_queued_events=outbox.max_events,
            calls_owned=self._calls.__len__,
            outages=lambda: self._link.outages,
        )
        registry.register(BusCollector(self.counters, gauges))

    async def run(self, manager: SessionManager) -> None:
        self._link.open()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._link.keep(), name="bus:link")
                tg.create_task(self._intake.run(manager), name="bus:calls")
                tg.create_task(self._reader.run(), name="bus:audio")
                tg.create_task(self._writer.run(), name="bus:write")
                tg.create_task(self._housekeeping.run(self._link), name="bus:housekeeping")
        finally:
            await self._writer.final_flush()
            await self._link.close()
