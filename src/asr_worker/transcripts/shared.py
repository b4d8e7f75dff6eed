"""What the transcripts part needs of a bus that workers share (Redis Streams): where every
worker's events of a call are kept, so any worker can build its document, and a durable
queue of webhook deliveries, so a delivery outlives the worker that made it.

The bus implements it (`bus.redis`), and hands it over from `Bus.share_transcripts`; the
worker gives it to `Transcripts`. A bus that is this process alone has none: the document is
this worker's memory and deliveries its own queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..core.events import CallEvent
from ..core.ids import CallKey
from .deliveries import Delivery
from .webhooks import Outcome


class SharedUnavailable(Exception):
    """The shared store cannot answer now (Redis unreachable)."""


class Deliverer(Protocol):
    """How a bus's delivery queue has a delivery sent (the transcripts part's)."""

    async def prepare(self, delivery: Delivery) -> tuple[str, bytes] | None:
        """Its idempotency key and body (a document's built now); None if its call's document
        is gone (expired before it could be sent). Raises SharedUnavailable if the shared store
        cannot answer (the delivery waits)."""
        ...

    async def send(self, delivery: Delivery, key: str, body: bytes) -> Outcome:
        """One delivery, tried until it is taken or given up."""
        ...

    def gone(self, delivery: Delivery) -> Outcome:
        """A delivery whose document expired before it could be sent: dropped, counted."""
        ...


class SharedTranscripts(Protocol):
    async def document_events(self, call: CallKey) -> list[CallEvent]:
        """The call's document events, as every worker that served it wrote them; raises
        SharedUnavailable."""
        ...

    def deliver_after(self, event: CallEvent, deliveries: Sequence[Delivery]) -> None:
        """Queue `deliveries` durably once `event` is written to the bus; if it never is (the
        call was handed to another worker, or lost to one), they are dropped with it: the
        worker that ends the call makes them."""
        ...

    async def serve_deliveries(self, deliverer: Deliverer) -> None:
        """Send queued deliveries, this worker's and any another worker left, until cancelled."""
        ...

    @property
    def held(self) -> int:
        """Deliveries this worker holds (is sending) now."""
        ...
