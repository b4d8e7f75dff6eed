"""Telephony platforms for tests: messages shaped like Twilio's and Exotel's, sent over a real
WebSocket, and an SSE reader that watches a call's events the way a browser would."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from asr_worker.worker import Worker

Event = dict[str, object]
FIXTURES = Path(__file__).resolve().parent.parent / "transports" / "fixtures"


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, step_s: float = 0.01) -> None:
    """Poll `condition` until it holds; fail after `timeout_s` (never a bare sleep that races)."""
    for _ in range(int(timeout_s / step_s)):
        if condition():
            return
        await asyncio.sleep(step_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def fixture(platform: str, name: str) -> dict[str, object]:
    body: dict[str, object] = json.loads((FIXTURES / platform / f"{name}.json").read_text())
    return body


def fixture_text(platform: str, name: str) -> str:
    return (FIXTURES / platform / f"{name}.json").read_text()


def ws_url(worker: Worker, path: str) -> str:
    return f"ws://127.0.0.1:{worker.port}{path}"


# --- Twilio -----------------------------------------------------------------------------------


def twilio_start(
    call_sid: str = "CA00000000000000000000000000000001",
    tracks: tuple[str, ...] = ("inbound", "outbound"),
    interaction_id: str | None = None,
    stream_sid: str = "MZ00000000000000000000000000000001",
    params: dict[str, str] | None = None,
) -> str:
    """A `start`; `params` are more custom parameters (TwiML's `<Parameter>`s)."""
    params = {**({"interaction_id": interaction_id} if interaction_id else {}), **(params or {})}
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": "AC00000000000000000000000000000001",
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
            "streamSid": stream_sid,
        }
    )


def twilio_media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": "MZ00000000000000000000000000000001",
        }
    )


def twilio_stop() -> str:
    return json.dumps(
        {"event": "stop", "sequenceNumber": "99", "stop": {"callSid": "CA1"}, "streamSid": "MZ1"}
    )


# --- Exotel -----------------------------------------------------------------------------------


def exotel_start(
    call_sid: str = "exo-call-1",
    sample_rate: int = 8000,
    interaction_id: str | None = None,
    params: dict[str, str] | None = None,
) -> str:
    """A `start`; `params` are more of its `custom_parameters`."""
    params = {**({"interaction_id": interaction_id} if interaction_id else {}), **(params or {})}
    return json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_sid": "exo-stream-1",
            "start": {
                "stream_sid": "exo-stream-1",
                "call_sid": call_sid,
                "account_sid": "exo-account",
                "from": "+919876543210",
                "to": "+918047491899",
                "custom_parameters": params,
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(sample_rate),
                    "bit_rate": "16",
                },
            },
        }
    )


def exotel_media(chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(chunk + 1),
            "stream_sid": "exo-stream-1",
            "media": {
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def exotel_stop() -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequence_number": "99",
            "stream_sid": "exo-stream-1",
            "stop": {"reason": "callended"},
        }
    )


# --- watching a call over SSE -----------------------------------------------------------------


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: Event


@dataclass
class SseStream:
    response: aiohttp.ClientResponse
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    async def __aiter__(self) -> AsyncIterator[SseEvent]:
        fields: dict[str, str] = {}
        async for raw in self.response.content:
            line = raw.decode().rstrip("\n").rstrip("\r")
            if line == "":
                if "data" in fields:
                    event = SseEvent(fields.get("id"), fields.get("event"), json.loads(fields["data"]))
                    self.events.append(event)
                    yield event
                fields = {}
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value

    async def until(self, kind: str, timeout_s: float = 10.0) -> SseEvent:
        async with asyncio.timeout(timeout_s):
            async for event in self:
                if event.event == kind:
                    return event
        raise AssertionError(f"the stream ended before a {kind} event")

    async def rest(self, timeout_s: float = 10.0) -> list[SseEvent]:
        """Read until the server ends the stream."""
        async with asyncio.timeout(timeout_s):
            async for _ in self:
                pass
        return self.events

    def of(self, kind: str) -> list[Event]:
        return [e.data for e in self.events if e.event == kind]


async def open_sse(
    http: aiohttp.ClientSession, worker: Worker, path: str, headers: dict[str, str] | None = None
) -> SseStream:
    response = await http.get(f"http://127.0.0.1:{worker.port}{path}", headers=headers or {})
    return SseStream(response)
