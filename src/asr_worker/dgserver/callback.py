"""A live stream's `callback`, as Deepgram's streaming callback does it: every response the
stream produces (each `Results`, `SpeechStarted`, `UtteranceEnd`, and the closing `Metadata`)
is POSTed to the callback URL as it is produced, in order, one request each, while the socket
carries the same messages as without one.

Each POST is signed and retried by the worker's webhook sender (`transcripts/webhooks.py`:
Standard Webhooks' headers keyed with ASR_WEBHOOK_SECRET, retries with backoff and jitter on
timeouts and 5xx, ASR_WEBHOOK_PRIVATE_TARGETS); `webhook-id` is the stream's request id and the
message's number in it (`REQUEST_ID.7`), the same on every try, so a receiver drops a repeat.
Deepgram's own `dg-token` header (its API key's identifier) has no counterpart here: the
signature is what proves the sender.

Posting never holds up the stream: responses wait in a bounded queue (`MAX_QUEUED`; beyond it
one is dropped and counted as `asr_webhook_dropped_total{reason="queue_full"}`) for one task
that sends them in order; when the stream ends, what is queued is still sent (each message
within the sender's bound of tries), and then the connection's handler returns.
"""

from __future__ import annotations

import asyncio
from typing import Final

from .. import jsonwire
from ..transcripts.webhooks import WebhookSender

MAX_QUEUED: Final = 1000  # responses of one stream waiting to be posted


class StreamCallback:
    """One stream's callback: `post` each response, `run` sends them until `close`."""

    def __init__(self, sender: WebhookSender, url: str, request_id: str) -> None:
        self._sender = sender
        self._url = url
        self._request_id = request_id
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(MAX_QUEUED + 1)
        self._posted = 0
        self._closed = False

    def post(self, message: dict[str, object]) -> None:
        """Queue a response to be POSTed (never waits)."""
        if self._closed:
            return
        self._posted += 1
        webhook_id = f"{self._request_id}.{self._posted}"
        if self._queue.qsize() >= MAX_QUEUED:
            self._sender.drop("queue_full", self._url, "dg-server callback", f"{MAX_QUEUED} responses wait")
            return
        self._queue.put_nowait((webhook_id, jsonwire.dumps_text(message).encode()))

    def close(self) -> None:
        """No more responses: `run` returns once the queued ones are sent."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    async def run(self) -> None:
        while (item := await self._queue.get()) is not None:
            webhook_id, body = item
            await self._sender.send(self._url, webhook_id, body, trusted=False, what="dg-server callback")
