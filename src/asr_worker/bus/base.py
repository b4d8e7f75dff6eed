"""The bus seam. A bus publishes every call event (in order, without blocking the session)
and may bring calls in (Redis Streams hands calls out as jobs). `run` does both until
cancelled; `healthy` feeds /health and /ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..core.events import CallEvent
from ..core.session_types import SessionConfig
from ..settings import Section

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..runtime.manager import SessionManager
    from ..settings import Options
    from ..transcripts import SharedTranscripts, WebhookPlan

OptionsT = TypeVar("OptionsT", bound="Options")


class Bus(Protocol):
    name: str

    def publish(self, event: CallEvent) -> None:
        """Queue one event for the bus; never blocks."""

    async def run(self, manager: SessionManager) -> None:
        """Take calls in and publish events until cancelled."""

    def healthy(self) -> bool: ...

    def status(self) -> dict[str, object]:
        """Figures for /health, with at least `state` (`ok`, `unknown` before the first
        connection attempt has ended, `failing`), `ok` (null while unknown) and `detail`."""
        ...

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Add the bus's own metrics (queues, calls, Redis state) to the worker's registry."""

    async def first_sighting(self, token: str, ttl_s: float) -> bool:
        """True the first time any worker sharing this bus sees `token` within `ttl_s` (a
        signed request's nonce): a replay to another worker is refused there too. A bus that
        is one process answers True: the process's own cache has already looked."""
        ...

    def share_transcripts(self, keep_s: float, plan: WebhookPlan) -> SharedTranscripts | None:
        """Keep every call's document events for `keep_s` where every worker sharing this bus
        reads them, and queue webhook deliveries there (`plan` says a call's targets), so
        that any worker serves a document and sends a delivery; None for a bus that is this
        process alone."""
        ...


class BusKind:
    """What a bus module registers as `KIND`: its settings, and how to build it from them and
    the sessions' own (how much audio a call keeps bounds how far ahead a bus may feed it)."""

    def __init__(self, settings: Section[OptionsT], create: Callable[[OptionsT, SessionConfig], Bus]) -> None:
        self.settings: Section[Options] = settings
        self._create: Callable[[object, SessionConfig], Bus] = lambda options, session: create(
            settings.pick(options), session
        )

    def create(self, options: object, session: SessionConfig) -> Bus:
        return self._create(options, session)
