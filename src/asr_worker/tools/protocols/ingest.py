"""`--protocol ingest` (the default): the worker's own ingest WebSocket, `/v1/audio/{ID}`,
with the file's format in the query; the call's events come back on the same socket."""

from __future__ import annotations

import json
from typing import ClassVar, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from ...core.audio import AudioFormat
from .base import CallSpec, Leg, Received, RouteProtocol, SocketLeg

AUDIO_PATH: Final = "/v1/audio/"


def id_in_url(url: str) -> str | None:
    """The interaction id a `ws://HOST:PORT/v1/audio/ID` URL names, if it names one."""
    path = urlsplit(url).path
    if AUDIO_PATH not in path:
        return None
    return path.split(AUDIO_PATH, 1)[1].strip("/") or None


def call_url(url: str, interaction_id: str, fmt: AudioFormat) -> str:
    """The call's socket: `url`'s host (and any path before /v1/audio/), the call's id, and
    the URL's query with the file's format. A URL whose query says another format than the
    file's is refused: the worker would read the audio wrongly (a 22,050 Hz file heard as
    16 kHz), so it is not silently obeyed."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"--url must be a ws:// or wss:// URL, not {url!r}")
    prefix = parts.path.split(AUDIO_PATH, 1)[0] if AUDIO_PATH in parts.path else parts.path.rstrip("/")
    query = dict(parse_qsl(parts.query))
    for name, value in (
        ("encoding", str(fmt.encoding)),
        ("sample_rate", str(fmt.sample_rate)),
        ("channels", str(fmt.channels)),
    ):
        given = query.setdefault(name, value)
        if given != value:
            raise ValueError(
                f"--url says {name}={given[:20]} but the file is {name}={value}; "
                f"leave {name} off the URL (the file's own format is sent)"
            )
    path = f"{prefix}{AUDIO_PATH}{interaction_id}"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


class IngestLeg(SocketLeg):
    async def send_audio(self, chunk: bytes) -> None:
        await self.ws.send_bytes(chunk)

    async def end(self) -> None:
        await self.ws.send_str(json.dumps({"type": "end"}))

    async def _read(self, text: str) -> Received | None:
        event = json.loads(text)
        return Received(text, [event] if isinstance(event, dict) else [])


class Ingest(RouteProtocol):
    name: ClassVar[str] = "ingest"
    path: ClassVar[str] = AUDIO_PATH
    events_over_sse: ClassVar[bool] = False
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return fmt  # the worker takes every format a WAV file holds

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        url = call_url(call.url, call.interaction_id, call.fmt)
        if call.tenant_id and "tenant_id=" not in urlsplit(url).query:
            url += "&" + urlencode({"tenant_id": call.tenant_id})
        headers = {"Authorization": f"Bearer {call.keys.api_key}"} if call.keys.api_key else {}
        ws = await http.ws_connect(url, headers=headers, max_msg_size=1 << 22)
        return IngestLeg(ws)


PROTOCOL: Final = Ingest()
