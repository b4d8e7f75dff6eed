"""Which webhooks a call's events make, and what one delivery is.

A call has targets: its own `callback` (with `callback_finals`, each final too), and the
process's `ASR_WEBHOOK_URL` (with `ASR_WEBHOOK_FINALS`, each final too). When the call ends
each target gets one `transcript.completed` delivery, the call's document; a target that
asked for finals also gets one `transcript.final` delivery per final, as it is published.

A delivery names its call rather than holding its document: the document is built when it is
sent, from wherever the call's events are kept (so on the bus path any worker can send it),
and its idempotency key comes from the document. A final's delivery holds its payload and
key, fixed when the final was published.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from .. import jsonwire
from ..core.call_options import CallOptions
from ..core.events import CallEvent, SessionEnded, Transcript
from .document import Document, iso_time
from .webhooks import WebhookOptions

COMPLETED: Final = "transcript.completed"  # the call's document, when it ended
FINAL: Final = "transcript.final"  # one final, as it happened


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    trusted: bool  # the operator's ASR_WEBHOOK_URL: not held to the private-address policy
    finals: bool  # it gets each final too


@dataclass(frozen=True, slots=True)
class Delivery:
    kind: str  # COMPLETED or FINAL
    target: str
    trusted: bool
    tenant_id: str
    interaction_id: str
    key: str = ""  # a final's idempotency key (a document's comes from the document)
    body: bytes = b""  # a final's payload (a document's is built when it is sent)

    def wire(self) -> dict[str, object]:
        """As a JSON object (a Redis entry on the bus path)."""
        return {
            "kind": self.kind,
            "target": self.target,
            "trusted": self.trusted,
            "tenant_id": self.tenant_id,
            "interaction_id": self.interaction_id,
            "key": self.key,
            "body": self.body.decode(),
        }

    @classmethod
    def from_wire(cls, data: object) -> Delivery | None:
        if not isinstance(data, dict):
            return None
        kind, target, trusted = data.get("kind"), data.get("target"), data.get("trusted")
        tenant, iid, key, body = (data.get(k) for k in ("tenant_id", "interaction_id", "key", "body"))
        if (
            kind not in (COMPLETED, FINAL)
            or not isinstance(target, str)
            or not isinstance(trusted, bool)
            or not isinstance(tenant, str)
            or not isinstance(iid, str)
            or not isinstance(key, str)
            or not isinstance(body, str)
        ):
            return None
        return cls(str(kind), target, trusted, tenant, iid, key, body.encode())

    @property
    def what(self) -> str:
        """How log lines name it."""
        return f"{self.kind} of {self.tenant_id}/{self.interaction_id}"


def document_payload(document: Document) -> bytes:
    """A `transcript.completed` webhook's body (Standard Webhooks' `type`, `timestamp`,
    `data`): the same bytes however often and by whichever worker it is built."""
    return jsonwire.dumps(
        {"type": COMPLETED, "timestamp": iso_time(document.ended_ms), "data": document.wire()}
    )


class WebhookPlan:
    """Who gets what of a call."""

    def __init__(self, options: WebhookOptions) -> None:
        self._process = (
            None if options.url is None else Target(options.url, trusted=True, finals=options.finals)
        )

    def targets(self, options: CallOptions) -> tuple[Target, ...]:
        out: list[Target] = []
        if options.callback is not None:
            out.append(Target(options.callback, trusted=False, finals=options.callback_finals))
        if self._process is not None and self._process.url != options.callback:
            out.append(self._process)
        return tuple(out)

    def deliveries(self, event: CallEvent, tenant: str, targets: tuple[Target, ...]) -> list[Delivery]:
        """What `event` makes for a call with these targets."""
        if isinstance(event, SessionEnded):
            return [Delivery(COMPLETED, t.url, t.trusted, tenant, event.interaction_id) for t in targets]
        if isinstance(event, Transcript) and event.is_final and event.text:
            wanting = [t for t in targets if t.finals]
            if not wanting:
                return []
            body = jsonwire.dumps(
                {"type": FINAL, "timestamp": iso_time(event.timestamp_ms), "data": event.wire()}
            )
            return [
                Delivery(FINAL, t.url, t.trusted, tenant, event.interaction_id, final_key(event, t.url), body)
                for t in wanting
            ]
        return []


def final_key(event: Transcript, target: str) -> str:
    """A final's idempotency key: its call, seq and time, and the target."""
    name = f"{FINAL}|{event.tenant_id}|{event.interaction_id}|{event.seq}|{event.timestamp_ms}|{target}"
    return "fin_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
