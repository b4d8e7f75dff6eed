"""A fake-clock harness for the session core: feeds inputs at chosen times, polls at every
deadline in between, and records every action with the time it was taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asr_worker import jsonwire
from asr_worker.core.actions import AbortStream, Action, Emit, EndStream, OpenStream, SendAudio, SendKeepAlive
from asr_worker.core.audio import AudioFormat
from asr_worker.core.clock import FakeClock
from asr_worker.core.events import Event
from asr_worker.core.failover import Failover
from asr_worker.core.redact import Redactor
from asr_worker.core.session import Link, Phase, SessionCore
from asr_worker.core.session_types import Resume, SessionConfig

from .audio import PCM8K

# An event as its watchers receive it: the JSON the worker writes, read back.
WireEvent = dict[str, Any]


def wire(event: Event) -> WireEvent:
    """What a watcher reads for `event`: the tests of the documented shapes check this."""
    data = jsonwire.loads(jsonwire.dumps_event(event))
    assert isinstance(data, dict)
    return data


def make_core(
    clock: FakeClock,
    *,
    fmt: AudioFormat = PCM8K,
    interaction_id: str = "call-1",
    resume: Resume | None = None,
    failover: Failover | None = None,
    provider: str = "mock",
    redact: frozenset[str] = frozenset(),
    **config: Any,
) -> SessionCore:
    import random

    return SessionCore(
        interaction_id=interaction_id,
        tenant_id="acme",
        fmt=fmt,
        provider=provider,
        config=SessionConfig(**config),
        created_at=clock.monotonic(),
        wall_ms_at_create=clock.wall_ms(),
        rng=random.Random(7),
        resume=resume,
        failover=failover,
        redactor=Redactor.of(redact),
    )


@dataclass
class Recorder:
    core: SessionCore
    clock: FakeClock
    log: list[tuple[float, Action]] = field(default_factory=list)

    def phase(self) -> Phase:
        """Read through a call, so type checkers do not pin it after one assert."""
        return self.core.phase

    def link(self) -> Link:
        return self.core.link

    def poll(self) -> list[Action]:
        actions = self.core.poll(self.clock.monotonic())
        self.log.extend((self.clock.monotonic(), a) for a in actions)
        return actions

    def run_until(self, t: float) -> None:
        """Advance to time t, polling at every deadline on the way."""
        while True:
            self.poll()
            deadline = self.core.next_deadline()
            if deadline is None or deadline > t:
                break
            self.clock.advance(max(0.0, deadline - self.clock.monotonic()))
        self.clock.advance(max(0.0, t - self.clock.monotonic()))
        self.poll()

    # --- views -----------------------------------------------------------------------------

    def of(self, kind: type) -> list[Action]:
        return [a for _, a in self.log if isinstance(a, kind)]

    def opens(self) -> list[OpenStream]:
        return [a for a in self.of(OpenStream) if isinstance(a, OpenStream)]

    def sends(self, conn_id: int | None = None) -> list[SendAudio]:
        return [a for a in self.of(SendAudio) if isinstance(a, SendAudio) and conn_id in (None, a.conn_id)]

    def sent_bytes(self, conn_id: int | None = None) -> bytes:
        return b"".join(a.data for a in self.sends(conn_id))

    def events(self, kind: str | None = None) -> list[WireEvent]:
        """The events emitted so far (of one type), as watchers receive them."""
        return [wire(a.event) for a in self.of(Emit) if isinstance(a, Emit) and kind in (None, a.event.type)]

    def keepalives(self) -> list[tuple[float, Action]]:
        return [(t, a) for t, a in self.log if isinstance(a, SendKeepAlive)]

    def ends(self) -> list[EndStream]:
        return [a for a in self.of(EndStream) if isinstance(a, EndStream)]

    def aborts(self) -> list[AbortStream]:
        return [a for a in self.of(AbortStream) if isinstance(a, AbortStream)]
