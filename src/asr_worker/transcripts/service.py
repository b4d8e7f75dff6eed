"""A worker's transcript documents and webhooks, beside the event hub and the bus: the worker
publishes every call event here too (`publish`, before the bus, so that the deliveries an
event makes ride with it onto the bus).

* Documents: every call's document events are kept in memory (`store.py`); on the bus path
  the bus keeps them in Redis as well (`SharedTranscripts`), and a document is built from
  both, Redis first (every worker's part of the call) and then what this worker has that
  Redis does not have yet.
* Webhooks: each call's targets are noted when it starts (its `callback`, `ASR_WEBHOOK_URL`);
  a final, and the call's end, make their deliveries (`deliveries.py`). Alone, the worker
  queues them here (at most `ASR_WEBHOOK_MAX_QUEUED`, the rest dropped and counted) and
  `DELIVERY_TASKS` tasks send them; on the bus path they go to the bus's durable queue, which
  any worker sends from. Publishing never waits on a delivery: a call's session never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Gauge

from ..core.call_options import CallOptions
from ..core.events import CallEvent, SessionEnded, SessionStarted, Transcript
from ..core.ids import ANY_TENANT, DEFAULT_TENANT, CallKey
from .deliveries import COMPLETED, FINAL, Delivery, Target, WebhookPlan, document_payload
from .document import Document, build
from .shared import SharedTranscripts, SharedUnavailable
from .store import StoreCollector, TranscriptOptions, TranscriptStore
from .webhooks import Outcome, WebhookMetrics, WebhookOptions, WebhookSender

log = logging.getLogger("asr_worker.webhooks")

DELIVERY_TASKS: Final = 8  # deliveries sent at once from this worker's own queue
SETTLE_S: Final = 5.0  # at shutdown, how long queued deliveries may still take

# How a bus shares documents and deliveries: given how long documents are kept and who gets
# which webhooks (for a call whose end another worker wrote), its shared part, or None.
Share = Callable[[float, WebhookPlan], SharedTranscripts | None]


class Transcripts:
    def __init__(
        self,
        store: TranscriptOptions,
        webhooks: WebhookOptions,
        registry: CollectorRegistry,
        *,
        options_of: Callable[[CallKey], CallOptions],
        share: Share | None = None,
        clock: Callable[[], float] = time.monotonic,
        sender: WebhookSender | None = None,
    ) -> None:
        """`options_of(call)`: a live call's options (its callback); `share`: the bus's."""
        self.store = TranscriptStore(store, clock)
        registry.register(StoreCollector(self.store))
        self.plan = WebhookPlan(webhooks)
        self.sender = sender or WebhookSender(webhooks, WebhookMetrics(registry))
        self.shared = None if share is None else share(store.keep_s, self.plan)
        self._options_of = options_of
        self._targets: dict[CallKey, tuple[Target, ...]] = {}  # live calls that have any
        self._queue: deque[Delivery] = deque()
        self._max_queued = webhooks.max_queued
        self._queue_full_logged = False
        self._wake = asyncio.Event()  # something was queued
        self._idle = asyncio.Event()  # nothing is queued or being sent
        self.in_flight = 0
        Gauge(
            "asr_webhook_queued",
            f"Webhooks waiting in this worker's queue (at most {webhooks.max_queued}).",
            registry=registry,
        ).set_function(self._queue.__len__)
        Gauge(
            "asr_webhook_in_flight", "Webhooks this worker is sending now.", registry=registry
        ).set_function(lambda: self.in_flight)

    # --- events in ------------------------------------------------------------------------------

    def publish(self, event: CallEvent) -> None:
        self.store.publish(event)
        if isinstance(event, SessionStarted):
            call = _key(event)
            targets = self.plan.targets(self._options_of(call))
            if targets:
                self._targets[call] = targets
            else:
                self._targets.pop(call, None)
            return
        if not self._targets or not isinstance(event, Transcript | SessionEnded):
            return
        call = _key(event)
        found = self._targets.pop(call, None) if isinstance(event, SessionEnded) else self._targets.get(call)
        if not found:
            return
        deliveries = self.plan.deliveries(event, call.tenant, found)
        if not deliveries:
            return
        if self.shared is not None:
            self.shared.deliver_after(event, deliveries)
        else:
            self._enqueue(deliveries)

    def _enqueue(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if len(self._queue) >= self._max_queued:
                if not self._queue_full_logged:
                    self._queue_full_logged = True
                    log.error("webhook queue full; dropping webhooks", extra={"queued": len(self._queue)})
                self.sender.metrics.dropped.labels("queue_full").inc()
                continue
            self._queue_full_logged = False
            self._queue.append(delivery)
        self._wake.set()

    # --- documents ------------------------------------------------------------------------------

    async def document(self, call: CallKey, *, strict: bool = False) -> Document | None:
        """The call's document: while it runs and until it expires (None when not kept). On
        the bus path, with Redis away: what this worker has, or (`strict`) SharedUnavailable."""
        local = self.store.events(call)
        if self.shared is None:
            return build(local)
        if call.tenant == ANY_TENANT:
            tenants = set(self.store.tenants_of(call.interaction_id))
            call = CallKey(tenants.pop() if len(tenants) == 1 else DEFAULT_TENANT, call.interaction_id)
        try:
            kept = await self.shared.document_events(call)
        except SharedUnavailable:
            if strict:
                raise
            kept = []  # Redis away: what this worker has
        return build(merged(kept, local))

    # --- webhooks -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send webhooks until cancelled: this worker's queue, and the bus's if shared."""
        async with self.sender, asyncio.TaskGroup() as tg:
            for n in range(DELIVERY_TASKS):
                tg.create_task(self._deliveries(), name=f"webhooks:{n}")
            if self.shared is not None:
                tg.create_task(self.shared.serve_deliveries(self), name="webhooks:shared")

    async def settle(self, timeout_s: float = SETTLE_S) -> None:
        """At shutdown: give queued webhooks a little time to go (on the bus path a delivery
        not sent by then waits in Redis for another worker)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._queue or self.in_flight:
                    self._idle.clear()
                    await self._idle.wait()

    async def _deliveries(self) -> None:
        queue = self._queue
        while True:
            while not queue:
                self._wake.clear()
                await self._wake.wait()
            await self.deliver(queue.popleft())

    async def deliver(self, delivery: Delivery) -> Outcome:
        prepared = await self.prepare(delivery)
        if prepared is None:
            return self.gone(delivery)
        return await self.send(delivery, *prepared)

    # --- what a bus's delivery queue has done (`shared.Deliverer`) -----------------------------

    async def prepare(self, delivery: Delivery) -> tuple[str, bytes] | None:
        if delivery.kind == FINAL:
            return delivery.key, delivery.body
        document = await self.document(CallKey(delivery.tenant_id, delivery.interaction_id), strict=True)
        if document is None:
            return None
        return document.key(delivery.target, COMPLETED), document_payload(document)

    async def send(self, delivery: Delivery, key: str, body: bytes) -> Outcome:
        self.in_flight += 1
        try:
            return await self.sender.send(
                delivery.target, key, body, trusted=delivery.trusted, what=delivery.what
            )
        except Exception:  # a bug here must not stop every other webhook
            log.exception("webhook failed", extra={"what": delivery.what})
            return self.sender.drop(
                "internal", delivery.target, delivery.what, "the worker failed sending it"
            )
        finally:
            self.in_flight -= 1
            if not self._queue and not self.in_flight:
                self._idle.set()

    def gone(self, delivery: Delivery) -> Outcome:
        return self.sender.drop("gone", delivery.target, delivery.what, "the call's document expired first")


def _key(event: CallEvent) -> CallKey:
    return CallKey(event.tenant_id or DEFAULT_TENANT, event.interaction_id)


def merged(kept: list[CallEvent], local: list[CallEvent]) -> list[CallEvent]:
    """A call's events as the shared store keeps them (every worker's), then this worker's
    that it does not have yet (published here, not yet written there). If this worker has a
    newer call with the same id than the store's, that one."""
    if not kept:
        return local
    if not local:
        return kept
    started_kept, started_local = _last_start(kept), _last_start(local)
    if started_local is not None and (started_kept is None or started_local[1] > started_kept[1]):
        return local[started_local[0] :]
    newest = max(event.seq for event in kept[started_kept[0] if started_kept else 0 :])
    return kept + [event for event in local if event.seq > newest]


def _last_start(events: list[CallEvent]) -> tuple[int, int] | None:
    """(index, time) of the last start of a call (a session_started that is no resume)."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if isinstance(event, SessionStarted) and not event.resumed:
            return index, event.timestamp_ms
    return None
