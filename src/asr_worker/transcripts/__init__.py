"""After the call: each call's transcript document (built from its events, kept for a while,
served by `GET /v1/calls/{id}/transcript` in JSON, WebVTT, SRT and text) and its signed
webhooks (a call's `callback`, `ASR_WEBHOOK_URL`).

* `document.py`: the document, built from a call's events (pure); `formats.py` writes it out;
  `readback.py` reads events back from their JSON (what Redis keeps).
* `store.py`: the documents this worker keeps in memory, bounded.
* `webhooks.py`: sending one webhook, signed and retried (reusable: any command can send a
  call's document with it); `deliveries.py`: which webhooks a call's events make.
* `shared.py`: what a bus shared by workers offers (Redis keeps documents and deliveries).
* `service.py`: the part the worker wires beside the event hub and the bus.
"""

from __future__ import annotations

from .deliveries import Delivery, WebhookPlan
from .document import Document, build
from .service import Transcripts
from .shared import SharedTranscripts, SharedUnavailable
from .store import SETTINGS, TranscriptOptions
from .webhooks import SETTINGS as WEBHOOK_SETTINGS
from .webhooks import WebhookOptions, WebhookSender

__all__ = [
    "SETTINGS",
    "WEBHOOK_SETTINGS",
    "Delivery",
    "Document",
    "SharedTranscripts",
    "SharedUnavailable",
    "TranscriptOptions",
    "Transcripts",
    "WebhookOptions",
    "WebhookPlan",
    "WebhookSender",
    "build",
]
