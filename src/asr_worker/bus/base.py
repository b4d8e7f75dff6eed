"""The bus seam. A bus publishes every call event (in order, without blocking the session)
and may bring calls in (Redis Streams hands calls out as jobs). `run` does both until
cancelled; `healthy` feeds /health and /ready."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..core.events import CallEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..runtime.manager import SessionManager


class Bus(Protocol):
    name: str

    def publish(self, event: CallEvent) -> None:
        """Queue one event for the bus; never blocks."""

    async def run(self, manager: SessionManager) -> None:
        """Take calls in and publish events until cancelled."""

    def healthy(self) -> bool: ...

    def status(self) -> dict[str, object]:
        """Figures for /health."""
        ...

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Add the bus's own metrics (queues, calls, Redis state) to the worker's registry."""
