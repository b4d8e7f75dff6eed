"""Documents and webhooks shared by every worker on the bus (`SharedTranscripts`).

* A call's document events are in `asr:document:{ID}` (a list of event JSON, written by the
  writer in the same script as the call's transcript, so only by the call's owner and never
  twice), kept `ASR_TRANSCRIPT_KEEP_S` after the last. Any worker builds the call's document
  from it: the part a worker killed mid-call wrote and the part its successor wrote.
* Webhook deliveries are entries of `asr:webhooks`, queued once the event that made them is
  written (`register_deliveries`, by the writer; by intake for a call it finds done but not
  acknowledged). Every worker reads them in the consumer group `asr-webhooks`, as calls are
  read: a delivery is held by one worker, which keeps its claim fresh while it tries, and
  acknowledges and deletes it once it was taken or given up. If that worker dies, the entry
  goes idle and another claims it (XAUTOCLAIM after three quarters of `ASR_CLAIM_IDLE_S`)
  and sends it again, with the same idempotency key. A delivery taken is marked
  (`asr:webhook-sent:{key}`, kept as long as documents), so a copy queued twice is sent once.

The stream is one key, like `asr:calls` (nothing atomic spans it and a call's keys, so it is
fine on a cluster), capped at `MAX_QUEUED_DELIVERIES` (approximately, oldest dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from redis.exceptions import ResponseError

from ...core.events import CallEvent
from ...core.ids import CallKey
from ...jsonwire import dumps_text
from ...transcripts import Delivery, SharedUnavailable
from ...transcripts.deliveries import COMPLETED, WebhookPlan
from ...transcripts.readback import read_events
from ...transcripts.webhooks import Outcome
from .wire import (
    DELIVERIES_KEY,
    DELIVERY_GROUP,
    REDIS_ERRORS,
    Announcement,
    Fields,
    RedisClient,
    call_tag,
    delivered_key,
    document_key,
    entries,
    honour_cancel,
    json_object,
    streams,
    text,
)

if TYPE_CHECKING:
    from ...transcripts.shared import Deliverer
    from .calls import ClaimTiming
    from .link import RedisLink
    from .writer import Writer

log = logging.getLogger("asr_worker.webhooks")

MAX_QUEUED_DELIVERIES: Final = 100_000
CONCURRENT_DELIVERIES: Final = 16  # held and sent at once by one worker
READ_BLOCK_MS: Final = 500


async def register_deliveries(client: RedisClient, deliveries: Sequence[Delivery]) -> None:
    """Queue deliveries for every worker to send."""
    pipe = client.pipeline(transaction=False)
    for delivery in deliveries:
        pipe.xadd(
            DELIVERIES_KEY,
            {"data": dumps_text(delivery.wire())},
            maxlen=MAX_QUEUED_DELIVERIES,
            approximate=True,
        )
    await pipe.execute()


def done_deliveries(plan: WebhookPlan, announcement: Announcement) -> list[Delivery]:
    """The documents of a call found done (its end written, its entry not acknowledged: the
    worker that ended it stopped, maybe before queueing them)."""
    return [
        Delivery(COMPLETED, target.url, target.trusted, announcement.tenant_id, announcement.interaction_id)
        for target in plan.targets(announcement.options)
    ]


class SharedDocuments:
    def __init__(
        self,
        link: RedisLink,
        writer: Writer,
        timing: ClaimTiming,
        keep_s: float,
        *,
        cluster: bool = False,
    ) -> None:
        self._link = link
        self._writer = writer
        self._timing = timing
        self._keep_s = max(1, math.ceil(keep_s))
        self._cluster = cluster
        self._held: dict[str, asyncio.Task[None]] = {}  # entry id -> the task sending it
        self._freed = asyncio.Event()
        writer.document_ttl_s = self._keep_s

    # --- documents --------------------------------------------------------------------------

    async def document_events(self, call: CallKey) -> list[CallEvent]:
        if not self._link.up:
            raise SharedUnavailable("redis is unreachable")
        key = document_key(call_tag(call.tenant, call.interaction_id), cluster=self._cluster)
        try:
            raws: object = await self._link.client.lrange(key, 0, -1)
        except REDIS_ERRORS as exc:
            raise SharedUnavailable(f"{type(exc).__name__}") from exc
        return read_events([r for r in raws if isinstance(r, bytes)]) if isinstance(raws, list) else []

    # --- deliveries -------------------------------------------------------------------------

    def deliver_after(self, event: CallEvent, deliveries: Sequence[Delivery]) -> None:
        self._writer.attach(event, tuple(deliveries))

    @property
    def held(self) -> int:
        """Deliveries this worker holds now."""
        return len(self._held)

    async def serve_deliveries(self, deliverer: Deliverer) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._new(deliverer, tg), name="webhooks:read")
            tg.create_task(self._idle(deliverer, tg), name="webhooks:claim")

    async def _room(self) -> int:
        """How many more deliveries this worker may hold, once it may hold one."""
        while (room := CONCURRENT_DELIVERIES - len(self._held)) <= 0:
            self._freed.clear()
            await self._freed.wait()
        return room

    async def _new(self, deliverer: Deliverer, tg: asyncio.TaskGroup) -> None:
        """Deliveries queued and not yet read by any worker."""
        link = self._link
        grouped = False
        while True:
            honour_cancel()
            room = await self._room()
            await link.wait_up()
            try:
                if not grouped:
                    await self._ensure_group()
                    grouped = True
                reply: object = await link.client.xreadgroup(
                    DELIVERY_GROUP, link.consumer, {DELIVERIES_KEY: ">"}, count=room, block=READ_BLOCK_MS
                )
            except REDIS_ERRORS as exc:
                link.failed(exc)
                continue
            except ResponseError as exc:
                grouped = not _no_group(exc)
                await asyncio.sleep(1.0)
                continue
            for _, batch in streams(reply):
                for entry_id, fields in batch:
                    self._hold(entry_id, fields, deliverer, tg)

    async def _idle(self, deliverer: Deliverer, tg: asyncio.TaskGroup) -> None:
        """Deliveries held by a worker that stopped refreshing them (it died)."""
        link, timing = self._link, self._timing
        cursor = "0-0"
        while True:
            honour_cancel()
            await asyncio.sleep(timing.claim_scan_interval_s)
            room = await self._room()
            await link.wait_up()
            try:
                reply: object = await link.client.xautoclaim(
                    DELIVERIES_KEY,
                    DELIVERY_GROUP,
                    link.consumer,
                    timing.claim_min_idle_ms,
                    cursor,
                    count=room,
                )
            except REDIS_ERRORS as exc:
                link.failed(exc)
                continue
            except ResponseError:
                continue  # no group yet: the reading loop makes it
            if isinstance(reply, list | tuple) and len(reply) >= 2:
                cursor = text(reply[0])
                for entry_id, fields in entries(reply[1]):
                    if entry_id not in self._held:
                        self._hold(entry_id, fields, deliverer, tg)

    def _hold(self, entry_id: str, fields: Fields, deliverer: Deliverer, tg: asyncio.TaskGroup) -> None:
        self._held[entry_id] = tg.create_task(self._send(entry_id, fields, deliverer), name="webhooks:send")

    async def _send(self, entry_id: str, fields: Fields, deliverer: Deliverer) -> None:
        try:
            await self._deliver(entry_id, fields, deliverer)
        except SharedUnavailable:
            pass  # Redis went away: the entry stays pending, and is claimed again once idle
        except REDIS_ERRORS as exc:
            self._link.failed(exc)
        finally:
            self._held.pop(entry_id, None)
            self._freed.set()

    async def _deliver(self, entry_id: str, fields: Fields, deliverer: Deliverer) -> None:
        client = self._link.client
        delivery = Delivery.from_wire(json_object(fields.get(b"data")))
        if delivery is None:
            log.warning("a webhook entry that is no delivery; deleted", extra={"entry": entry_id})
            await self._done(entry_id)
            return
        prepared = await deliverer.prepare(delivery)
        if prepared is None:
            deliverer.gone(delivery)
            await self._done(entry_id)
            return
        key, body = prepared
        if await client.exists(delivered_key(key)):
            await self._done(entry_id)  # a copy of one already taken
            return
        refreshing = asyncio.create_task(self._keep_claim(entry_id))
        try:
            outcome = await deliverer.send(delivery, key, body)
        finally:
            refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refreshing
        if outcome is Outcome.DELIVERED:
            await client.set(delivered_key(key), "1", ex=self._keep_s)
        await self._done(entry_id)

    async def _keep_claim(self, entry_id: str) -> None:
        """While a delivery is tried: keep its entry looking busy, so no other worker takes it."""
        link = self._link
        while True:
            await asyncio.sleep(self._timing.refresh_interval_s)
            with contextlib.suppress(*REDIS_ERRORS):
                await link.client.xclaim(
                    DELIVERIES_KEY, DELIVERY_GROUP, link.consumer, 0, [entry_id], idle=0, justid=True
                )

    async def _done(self, entry_id: str) -> None:
        pipe = self._link.client.pipeline(transaction=False)
        pipe.xack(DELIVERIES_KEY, DELIVERY_GROUP, entry_id)
        pipe.xdel(DELIVERIES_KEY, entry_id)
        await pipe.execute()

    async def _ensure_group(self) -> None:
        try:
            await self._link.client.xgroup_create(DELIVERIES_KEY, DELIVERY_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _no_group(exc: ResponseError) -> bool:
    return "NOGROUP" in str(exc)
