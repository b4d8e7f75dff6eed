"""`asr-worker stream FILE --url WS_URL [--calls N]`: play a file into a running worker at real
time over the ingest WebSocket and print what comes back. The first thing a user runs."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import sys
from dataclasses import dataclass, field
from typing import Final, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from .audio_files import AudioFile

_AUDIO_PATH = "/v1/audio/"


@dataclass
class CallResult:
    interaction_id: str
    finals: list[str] = field(default_factory=list)
    latencies_ms: list[int] = field(default_factory=list)
    ended: dict[str, object] | None = None
    errors: list[str] = field(default_factory=list)


def call_urls(url: str, calls: int, audio: AudioFile) -> list[tuple[str, str]]:
    """(interaction_id, url) for each call: the URL's id (suffixed -1..-N for several calls),
    or a fresh one; the file's format fills the query unless the URL sets it."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"--url must be a ws:// or wss:// URL, not {url!r}")
    base_id = parts.path.split(_AUDIO_PATH, 1)[1].strip("/") if _AUDIO_PATH in parts.path else ""
    prefix = parts.path.split(_AUDIO_PATH, 1)[0] if base_id else parts.path.rstrip("/")
    base_id = base_id or f"stream-{secrets.token_hex(4)}"
    query = dict(parse_qsl(parts.query))
    # The file says what its audio is; a URL that says otherwise would have the worker read it
    # wrongly (a 22,050 Hz file heard as 16 kHz), so it is refused, not silently obeyed.
    for name, value in (
        ("encoding", str(audio.fmt.encoding)),
        ("sample_rate", str(audio.fmt.sample_rate)),
        ("channels", str(audio.fmt.channels)),
    ):
        given = query.setdefault(name, value)
        if given != value:
            raise ValueError(
                f"--url says {name}={given[:20]} but {audio.path.name} is {name}={value}; "
                f"leave {name} off the URL (the file's own format is sent)"
            )
    out = []
    for i in range(calls):
        call_id = base_id if calls == 1 else f"{base_id}-{i + 1}"
        path = f"{prefix}{_AUDIO_PATH}{call_id}"
        out.append((call_id, urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))))
    return out


async def stream_calls(
    audio: AudioFile,
    url: str,
    *,
    calls: int = 1,
    chunk_ms: int = 20,
    speed: float = 1.0,
    as_json: bool = False,
    token: str | None = None,
    out: TextIO = sys.stdout,
) -> list[CallResult]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    targets = call_urls(url, calls, audio)
    async with (
        aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as http,
        asyncio.TaskGroup() as tg,
    ):
        tasks = [
            tg.create_task(_one_call(http, call_id, call_url, audio, chunk_ms, speed, as_json, out))
            for call_id, call_url in targets
        ]
    return [t.result() for t in tasks]


# What to do about a refused handshake, for the answers a user's own mistake gets.
_HINTS: Final = {
    401: ": the worker needs its token (--token, or ASR_WORKER_TOKEN)",
    404: ": no such endpoint; the ingest socket is ws://HOST:PORT/v1/audio/INTERACTION_ID",
}


async def _one_call(
    http: aiohttp.ClientSession,
    call_id: str,
    url: str,
    audio: AudioFile,
    chunk_ms: int,
    speed: float,
    as_json: bool,
    out: TextIO,
) -> CallResult:
    result = CallResult(call_id)
    try:
        async with http.ws_connect(url, max_msg_size=1 << 22) as ws, asyncio.TaskGroup() as tg:
            tg.create_task(play(ws, audio, chunk_ms, speed))
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                _show(event, result, out, msg.data if as_json else None)
    except aiohttp.ClientError as exc:
        # A refused handshake's str() quotes the URL, and the URL may carry ?token=: say what
        # happened, not where.
        if isinstance(exc, aiohttp.ClientResponseError):
            problem = f"HTTP {exc.status} {exc.message}{_HINTS.get(exc.status, '')}"
        else:
            problem = str(exc)
        result.errors.append(f"connection: {problem}")
        print(f"[{call_id}] connection failed: {problem}", file=sys.stderr)
    return result


async def play(ws: aiohttp.ClientWebSocketResponse, audio: AudioFile, chunk_ms: int, speed: float) -> None:
    """Send `audio` as a live call would, `chunk_ms` per message at `speed` (1 = real time,
    0 = as fast as possible), then `end`; stops early if the worker closed the socket."""
    loop = asyncio.get_running_loop()
    step = max(audio.fmt.frame_bytes, audio.fmt.bytes_for(chunk_ms / 1000))
    interval = chunk_ms / 1000 / speed if speed > 0 else 0.0
    start = loop.time()
    for n, i in enumerate(range(0, len(audio.data), step)):
        if ws.closed:
            return
        await ws.send_bytes(audio.data[i : i + step])
        if interval:
            await asyncio.sleep(max(0.0, start + (n + 1) * interval - loop.time()))
    if not ws.closed:
        await ws.send_str(json.dumps({"type": "end"}))


def _show(event: dict[str, object], result: CallResult, out: TextIO, json_text: str | None) -> None:
    """Count the event into `result` and print it: with `json_text` (--json), that text as the
    worker sent it, not a re-serialized copy; without, as one readable line."""
    kind = event.get("type")
    if kind == "transcript":
        latency = event.get("latency_ms")
        if isinstance(latency, int):
            result.latencies_ms.append(latency)
        if event.get("is_final") and event.get("text"):
            result.finals.append(str(event["text"]))
    elif kind == "session_ended":
        result.ended = event
    elif kind == "error":
        result.errors.append(f"{event.get('code')}: {event.get('message')}")
    if json_text is not None:
        print(json_text, file=out, flush=True)
        return
    call = result.interaction_id
    if kind == "transcript":
        mark = "final" if event.get("is_final") else "interim"
        print(
            f"[{call}] {mark:7} ch{event.get('channel')} {event.get('start'):>7}-{event.get('end'):<7} "
            f"{event.get('text')}",
            file=out,
            flush=True,
        )
    elif kind in ("session_started", "session_ended", "error"):
        details = {
            k: v for k, v in event.items() if k not in ("type", "interaction_id", "tenant_id", "timestamp_ms")
        }
        print(f"[{call}] {kind} {json.dumps(details)}", file=out, flush=True)


def summary(results: list[CallResult]) -> str:
    """One line for the run. Finals are counted as printed, with text: `session_ended`'s
    `finals` also counts the empty ones that tile silence and confirm a finalize."""
    ended = sum(1 for r in results if r.ended is not None)
    latencies = [ms for r in results for ms in r.latencies_ms]
    latency = f"{statistics.median(latencies):.0f} ms" if latencies else "n/a (no transcripts)"
    finals = sum(len(r.finals) for r in results)
    errors = sum(len(r.errors) for r in results)
    return (
        f"calls {len(results)}, ended {ended}, finals with text {finals}, errors {errors}, "
        f"transcript latency p50 {latency}"
    )
