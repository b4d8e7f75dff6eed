"""Real-time calls into a real server, by the three ways a call reaches the local engine, for
`bench.local`.

Each path runs against its own process started as a user starts it, on a free port, with
default settings (the local engine unless told otherwise), and taken as ready only once its
speech model is loaded:

* `ingest`: `asr-worker serve`'s ingest WebSocket (`/v1/audio/{id}`), binary audio frames, the
  call's events on the same socket, `{"type": "end"}` at the end;
* `twilio`: the same `serve`'s Twilio Media Streams endpoint (`/v1/twilio`): `connected`,
  `start` (the inbound track, the call's id as the `interaction_id` parameter), base64 mu-law
  `media` messages, `stop`; the events come back as a Twilio user gets them, from the call's
  Server-Sent Events stream (`/v1/calls/{id}/events`), opened before the call starts;
* `dg`: `asr-worker dg-server` driven by the official `deepgram-sdk`
  (`listen.v1.connect(encoding=..., sample_rate=..., interim_results=true)`, `send_media`, then
  `CloseStream`); finals are `is_final` results, their end `start + duration`.

Every path sends 20 ms of audio at a time at 1x (each frame at the call's start plus its
offset, so delays do not add up). A call's run records the arrival time and the audio end of
each final; an utterance's latency is from the client sending its last sound (the call's
start + `Spoken.end_s`) to receiving the first final that reaches it.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from tests.conftest import free_port
from tests.support.cli import logging_command
from tests.support.smoke import wait_ready
from tests.support.speech import CallAudio, Spoken
from tests.support.telephony import SseStream, fixture_text, twilio_media, twilio_start, twilio_stop

FRAME_S = 0.02
PATHS = ("ingest", "twilio", "dg")
COMMAND = {"ingest": "serve", "twilio": "serve", "dg": "dg-server"}
CALL_TIMEOUT_S = 120.0  # beyond the longest call's audio: a call that never ends fails the run


@dataclass
class CallRun:
    started_at: float = 0.0  # loop time of the first frame sent
    finals: list[tuple[float, float, str]] = field(default_factory=list)  # (arrived, audio end, text)
    interims: int = 0
    ended: bool = False  # the call's end arrived: `session_ended`, the SDK's `Metadata`
    errors: list[str] = field(default_factory=list)  # error events' codes (`finalize_timeout`...)

    def heard(self, is_final: bool, end_s: float, text: str) -> None:
        if not text:
            return
        if is_final:
            self.finals.append((asyncio.get_running_loop().time(), end_s, text))
        else:
            self.interims += 1

    @property
    def text(self) -> str:
        return " ".join(f[2] for f in self.finals)

    def latency(self, spoken: Spoken) -> float | None:
        """From sending the utterance's last sound to receiving the final that covers it."""
        covering = next((f for f in self.finals if f[1] >= spoken.end_s - 0.05), None)
        return None if covering is None else covering[0] - (self.started_at + spoken.end_s)


def call_latencies(calls: list[CallAudio], runs: list[CallRun]) -> tuple[list[float], int]:
    """Every utterance's finals latency, and how many utterances no final covered."""
    found, missing = [], 0
    for call, run in zip(calls, runs, strict=True):
        for spoken in call.spoken:
            latency = run.latency(spoken)
            if latency is None:
                missing += 1
            else:
                found.append(latency)
    return found, missing


async def play(run: CallRun, call: CallAudio, send: Callable[[int, bytes], Awaitable[object]]) -> None:
    """The call's audio in 20 ms frames at 1x: `send(index, frame)`."""
    loop = asyncio.get_running_loop()
    step = call.fmt.bytes_for(FRAME_S)
    run.started_at = loop.time()
    for n, i in enumerate(range(0, len(call.data), step)):
        await send(n, call.data[i : i + step])
        await asyncio.sleep(max(0.0, run.started_at + (n + 1) * FRAME_S - loop.time()))


# --- the paths' clients -----------------------------------------------------------------------


async def ingest_call(
    http: aiohttp.ClientSession, port: int, name: str, call: CallAudio, delay_s: float = 0.0
) -> CallRun:
    run = CallRun()
    await asyncio.sleep(delay_s)
    query = f"encoding={call.fmt.encoding}&sample_rate={call.fmt.sample_rate}&channels=1"
    async with http.ws_connect(f"ws://127.0.0.1:{port}/v1/audio/{name}?{query}") as ws:

        async def talk() -> None:
            await play(run, call, lambda _n, frame: ws.send_bytes(frame))
            await ws.send_str(json.dumps({"type": "end"}))

        async with asyncio.timeout(CALL_TIMEOUT_S), asyncio.TaskGroup() as tg:
            tg.create_task(talk())
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    take_event(run, json.loads(msg.data))
    return run


async def twilio_call(http: aiohttp.ClientSession, port: int, name: str, call: CallAudio) -> CallRun:
    run = CallRun()
    # The stream waits for a call that has not started: subscribed first, nothing is missed.
    async with (
        asyncio.timeout(CALL_TIMEOUT_S),
        http.get(f"http://127.0.0.1:{port}/v1/calls/{name}/events") as events,
        http.ws_connect(f"ws://127.0.0.1:{port}/v1/twilio") as ws,
    ):
        events.raise_for_status()

        async def talk() -> None:
            await ws.send_str(fixture_text("twilio", "connected"))
            await ws.send_str(twilio_start(tracks=("inbound",), interaction_id=name))
            ms = round(FRAME_S * 1000)
            await play(run, call, lambda n, frame: ws.send_str(twilio_media("inbound", n, n * ms, frame)))
            await ws.send_str(twilio_stop())

        async with asyncio.TaskGroup() as tg:
            tg.create_task(talk())
            async for event in SseStream(events):  # ends after session_ended
                take_event(run, event.data)
    return run


def take_event(run: CallRun, event: dict[str, object]) -> None:
    """A worker event (the ingest socket's JSON, an SSE event's data)."""
    if event["type"] == "transcript":
        run.heard(bool(event["is_final"]), float(str(event["end"])), str(event["text"]))
    elif event["type"] == "session_ended":
        run.ended = True
    elif event["type"] == "error":
        run.errors.append(str(event["code"]))


async def dg_call(port: int, call: CallAudio) -> CallRun:
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment
    from deepgram.listen.v1 import ListenV1Metadata, ListenV1Results

    run = CallRun()
    url = f"ws://127.0.0.1:{port}"
    base = f"http://127.0.0.1:{port}"
    client = AsyncDeepgramClient(
        api_key="bench-key",
        environment=DeepgramClientEnvironment(base=base, production=url, agent=url, agent_rest=base),
    )

    def on_message(message: object) -> None:
        if isinstance(message, ListenV1Results):
            text = message.channel.alternatives[0].transcript
            run.heard(bool(message.is_final), message.start + message.duration, text)
        elif isinstance(message, ListenV1Metadata):
            run.ended = True

    async with client.listen.v1.connect(
        model="nova-3",
        encoding=str(call.fmt.encoding),
        sample_rate=call.fmt.sample_rate,
        interim_results="true",
    ) as connection:
        connection.on(EventType.MESSAGE, on_message)
        async with asyncio.timeout(CALL_TIMEOUT_S), asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())  # until the server closes
            await play(run, call, lambda _n, frame: connection.send_media(frame))
            await connection.send_close_stream()  # the last finals, Metadata, then close 1000
            await listening
    return run


# --- the servers ------------------------------------------------------------------------------


@asynccontextmanager
async def running(
    command: str, provider: str = "local", env: dict[str, str] | None = None
) -> AsyncIterator[int]:
    """`asr-worker serve` or `asr-worker dg-server` on a free port (yielded), its log in a
    temporary file, from when it takes calls with its engine loaded: `serve` answers `/ready`
    (which waits for the engine); `dg-server` has no readiness probe, so its log says so (both
    listen before the engine loads); SIGTERM and awaited at the block's end."""
    port = free_port()
    args = ("serve",) if command == "serve" else (command, "--port", str(port))
    env = {"PORT": str(port), "ASR_LOG_LEVEL": "info", "ASR_PROVIDER": provider, **(env or {})}
    started = {"serve": "serving", "dg-server": "local engine ready" if provider == "local" else "listening"}
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        async with logging_command(
            *args, env=env, log_path=Path(tmp) / "server.log", until_logged=started[command], timeout_s=180
        ) as process:
            if command == "serve":
                await wait_ready(f"http://127.0.0.1:{port}", process, timeout_s=180)
            yield port


@dataclass
class PathRun:
    runs: list[CallRun]  # in the calls' order
    load: float  # the 1-minute load average as the path's calls ended: what else ran meanwhile


async def paths_at_once(
    calls: list[tuple[str, CallAudio]], paths: list[str], provider: str = "local"
) -> dict[str, PathRun]:
    """All the calls at once over each path in turn (a path's calls alone on its server), by
    path. One `serve` takes both the ingest and the Twilio calls."""
    out: dict[str, PathRun] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for command in dict.fromkeys(COMMAND[p] for p in paths):
            async with running(command, provider) as port:
                for path in (p for p in paths if COMMAND[p] == command):
                    async with asyncio.TaskGroup() as tg:
                        tasks = [tg.create_task(one_call(path, http, port, name, c)) for name, c in calls]
                    out[path] = PathRun([t.result() for t in tasks], os.getloadavg()[0])
    return {p: out[p] for p in paths}


async def one_call(path: str, http: aiohttp.ClientSession, port: int, name: str, call: CallAudio) -> CallRun:
    if path == "ingest":
        return await ingest_call(http, port, f"ingest-{name}", call)
    if path == "twilio":
        return await twilio_call(http, port, f"twilio-{name}", call)
    return await dg_call(port, call)


def parse_paths(text: str) -> list[str]:
    paths = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {', '.join(unknown)}: choose from {','.join(PATHS)}")
    return paths
