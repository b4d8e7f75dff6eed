"""One ingest socket's part in its call, whichever socket implementation carries it: aiohttp's
(`ingest_ws`) or the raw one served on the loop's transport (`ingest_raw`).

The socket's path and query name the call and its audio format, and may list the words the
call is expected to use, by Deepgram's names (`keyterm`, `keywords`, each repeated once per
term; read by the Deepgram protocol's own parser, so the limits and errors are dg-server's);
they are the call's for its life, set by the socket that starts it. Joining gives the socket its
`CallSource` (what it feeds the call through and leaves it by) and a subscription to the
call's events. Text messages are control: `{"type": "end"}` ends the call, `finalize` asks for
the pending final, `pause` and `resume` stop and restart the call's audio reaching the provider
(a PCI pause, as `POST /v1/calls/{id}/pause` does); anything else is an `error` event for the
call's watchers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Final

from ..core.audio import AudioFormat
from ..core.call_options import CallOptions
from ..core.ids import CallKey, check_id
from ..errors import AccessDenied, BadRequest, ProtocolError, SessionRefused
from ..runtime.hub import Subscription
from ..runtime.source import CallSource
from ..tenancy import Principal
from .host import CallHost

log = logging.getLogger("asr_worker.ingest")

# Deepgram's names are taken too (any case), so a client written for Deepgram works as it is.
_END_TYPES: Final = frozenset({"end", "closestream"})
_FINALIZE_TYPES: Final = frozenset({"finalize"})
_IGNORED_TYPES: Final = frozenset({"keepalive"})
_PAUSE_TYPES: Final = frozenset({"pause", "resume"})


class IngestCall:
    """The socket's source handle on its call and its subscription to the call's events."""

    def __init__(self, source: CallSource, subscription: Subscription) -> None:
        self.source = source
        self.subscription = subscription

    @classmethod
    def open(
        cls,
        host: CallHost,
        principal: Principal,
        interaction_id: str | None,
        query: Mapping[str, str],
        path: str,
    ) -> IngestCall:
        """Join (or start) the call the socket's path and query name, under the tenant its key
        names, or raise BadRequest, AccessDenied or SessionRefused (a socket sends it as an
        `error` event, then closes with `common.close_code_for` it).
        `query` may hold a key more than once (aiohttp's and yarl's MultiDict: `items()`
        yields every pair), as repeated `keyterm` values do."""
        try:
            checked_id = check_id(interaction_id, "interaction_id")
            key = CallKey(principal.tenant_of_call(query.get("tenant_id")), checked_id)
            fmt = AudioFormat.parse(
                query.get("encoding", "linear16"),
                query.get("sample_rate", "8000"),
                query.get("channels", "1"),
            )
            options = CallOptions.from_query(query)
        except (BadRequest, AccessDenied) as exc:
            log.info("ingest refused", extra={"reason": exc.message, "path": path[:200]})
            raise
        try:
            # A socket joining a call already under way leaves its options as they are.
            source = host.manager.join(key, fmt, options=options)
        except SessionRefused as exc:
            log.info("ingest refused", extra={"interaction_id": checked_id, "reason": exc.code})
            raise
        # Subscribe before anything can yield, so a new call's socket sees its session_started.
        return cls(source, host.hub.subscribe(key))

    def text(self, text: str) -> None:
        """A control message: `end` ends the call, `finalize` asks for the pending final now,
        `pause` and `resume` a PCI pause; anything unknown is an `error` event."""
        try:
            command = parse_control(text)
        except ProtocolError as exc:
            self.source.error(exc.code, exc.message)
            return
        if command == "end":
            self.source.end("end")
        elif command == "finalize":
            self.source.finalize()
        elif command == "pause":
            self.source.pause()
        elif command == "resume":
            self.source.resume()

    def close(self) -> None:
        """The socket is gone: stop its events and leave the call (which goes on, or ends
        after its grace period if this was its last source). Idempotent."""
        self.subscription.close()
        self.source.leave()


def parse_control(text: str) -> str:
    """A text message to the command it carries ("end", "finalize", "pause", "resume" or
    "keepalive"), or ProtocolError."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(
            "bad_message", 'a text message must be JSON such as {"type": "end"}; ignored'
        ) from None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        raise ProtocolError(
            "bad_message", "a text message must be a JSON object with a string `type`; ignored"
        )
    if kind.lower() in _END_TYPES:
        return "end"
    if kind.lower() in _FINALIZE_TYPES:
        return "finalize"
    if kind.lower() in _IGNORED_TYPES:
        return "keepalive"
    if kind.lower() in _PAUSE_TYPES:
        return kind.lower()
    raise ProtocolError(
        "unknown_message",
        f"unknown message type {kind[:40]!r}; known: end, finalize, pause, resume, keepalive; ignored",
    )
