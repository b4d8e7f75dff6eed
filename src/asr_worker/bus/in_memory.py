"""The embedded bus: events go only to this process's watchers (sockets, SSE, the page),
which the event hub already serves, and calls come in only over the ingest endpoints."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..core.events import CallEvent
from ..core.session_types import SessionConfig
from ..settings import Section
from .base import BusKind

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..runtime.manager import SessionManager
    from ..transcripts import WebhookPlan


class InMemoryBus:
    name = "in_memory"

    def publish(self, event: CallEvent) -> None:
        return None

    async def run(self, manager: SessionManager) -> None:
        await asyncio.Future()  # nothing to do; runs until cancelled

    def healthy(self) -> bool:
        return True

    def status(self) -> dict[str, object]:
        return {
            "adapter": self.name,
            "state": "ok",
            "ok": True,
            "detail": "in this process: events go to the call's sockets, SSE and the page",
        }

    def register_metrics(self, registry: CollectorRegistry) -> None:
        return None  # nothing of its own: the event hub's figures are the worker's

    async def first_sighting(self, token: str, ttl_s: float) -> bool:
        return True  # one process: its own caches have looked

    def share_transcripts(self, keep_s: float, plan: WebhookPlan) -> None:
        return None  # one process: its own memory and queue


@dataclass(frozen=True)
class InMemoryOptions:
    """Nothing to configure."""


def create(options: InMemoryOptions, session: SessionConfig) -> InMemoryBus:
    return InMemoryBus()


SETTINGS: Final = Section("in_memory", "in-memory bus", InMemoryOptions, ())

KIND: Final = BusKind(SETTINGS, create)
