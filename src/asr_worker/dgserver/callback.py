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

When the stream ends, the stream's transcript document follows (as `GET
/v1/calls/{id}/transcript` gives a worker's call: `"type": "transcript"`, every final with words,
times, confidence and language, under `webhook-id` `REQUEST_ID.transcript`), the one POST a
receiver that wants the call after it needs; a Deepgram client that reads `type` passes over it.
It keeps at most `MAX_UTTERANCES` finals (beyond them the document says it was cut, in `errors`).

Posting never holds up the stream: responses wait in a bounded queue (`MAX_QUEUED`; beyond it
one is dropped and counted as `asr_webhook_dropped_total{reason="queue_full"}`) for one task
that sends them in order; when the stream ends, what is queued is still sent (each message
within the sender's bound of tries), and then the connection's handler returns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from .. import jsonwire
from ..core.audio import AudioFormat
from ..core.events import TranscriptWord
from ..core.provider_events import TranscriptResult
from ..transcripts.document import ENDED, Document, Utterance, call_order, roles
from ..transcripts.webhooks import WebhookSender

MAX_QUEUED: Final = 1000  # responses of one stream waiting to be posted
MAX_UTTERANCES: Final = 10_000  # finals of one stream kept for its document


class StreamCallback:
    """One stream's callback: `post` each response and `keep` each result, `run` sends them
    until `close`, which adds the stream's document."""

    def __init__(
        self, sender: WebhookSender, url: str, request_id: str, fmt: AudioFormat, provider: str
    ) -> None:
        self._sender = sender
        self._url = url
        self._request_id = request_id
        self._fmt = fmt
        self._provider = provider
        self._started_ms = int(time.time() * 1000)
        self._finals: list[TranscriptResult] = []
        self._cut = False
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(MAX_QUEUED + 2)
        self._posted = 0
        self._closed = False

    def keep(self, result: TranscriptResult) -> None:
        """A result of the stream, for its document (finals with words only)."""
        if not (result.is_final and result.text):
            return
        if len(self._finals) < MAX_UTTERANCES:
            self._finals.append(result)
        else:
            self._cut = True

    def document(self, end_reason: str, audio_s: float) -> Document:
        """The stream's transcript document, as a worker's call has one."""
        channel_roles = roles(self._fmt.channels)
        utterances = [
            Utterance(
                seq,
                r.channel,
                channel_roles[r.channel] if 0 <= r.channel < len(channel_roles) else "unknown",
                r.start,
                r.start + r.duration,
                r.text,
                r.confidence,
                tuple(
                    TranscriptWord(w.word, w.start, w.end, w.confidence, w.punctuated_word, w.speaker)
                    for w in r.words
                ),
                r.language,
                self._provider,
                r.speech_final,
                r.from_finalize,
            )
            for seq, r in enumerate(self._finals, 1)
        ]
        cut: dict[str, object] = {
            "code": "document_truncated",
            "message": f"only the first {MAX_UTTERANCES} finals are kept",
        }
        return Document(
            f"dg-{self._request_id}",
            None,
            ENDED,
            str(self._fmt.encoding),
            self._fmt.sample_rate,
            self._fmt.channels,
            self._started_ms,
            int(time.time() * 1000),
            end_reason,
            audio_s,
            (self._provider,),
            tuple(sorted(utterances, key=call_order)),
            (),
            (),
            (cut,) if self._cut else (),
            (),
            len(utterances),
        )

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

    def close(self, end_reason: str, audio_s: float) -> None:
        """No more responses: the stream's document is queued last, and `run` returns once the
        queued ones are sent (the queue keeps room for both)."""
        if not self._closed:
            self._closed = True
            body = jsonwire.dumps_text(self.document(end_reason, audio_s).wire()).encode()
            self._queue.put_nowait((f"{self._request_id}.transcript", body))
            self._queue.put_nowait(None)

    async def run(self) -> None:
        while (item := await self._queue.get()) is not None:
            webhook_id, body = item
            await self._sender.send(self._url, webhook_id, body, trusted=False, what="dg-server callback")
