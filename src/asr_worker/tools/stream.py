"""`asr-worker stream FILE --url WS_URL [--protocol NAME] [--calls N]`: play a file into a
running worker at real time as a live call over one of its routes, and print what comes back.
The first thing a user runs, on every route.

The route is `--protocol`'s module (`tools/protocols/`): it speaks that platform's own messages
(and signatures), in the format the platform carries (a file is converted to it: mu-law 8 kHz
for Twilio and AudioHook, ...). What the route returns is read on the route itself (ingest,
AudioHook, OpenAI Realtime, Deepgram), or over SSE where it returns nothing (Twilio, Exotel,
SIPREC, whose call goes over SIP and RTP to `--sip-port` on the --url's host).
Every event is one line (`tools/printer.py`), the same whatever the route; `--json` prints
each message as the route sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final, TextIO, TypeVar

import aiohttp

from . import printer, protocols
from .audio_files import AudioFile, convert
from .protocols.base import CallRefused, CallSpec, Keys, Leg, Received, RouteProtocol, SipOptions
from .protocols.ingest import id_in_url
from .protocols.sse import call_events


@dataclass
class CallResult:
    interaction_id: str
    finals: list[str] = field(default_factory=list)
    latencies_ms: list[int] = field(default_factory=list)
    ended: dict[str, object] | None = None
    errors: list[str] = field(default_factory=list)
    transcripts: int = 0
    began: bool = False  # the call's session_started came

    def count(self, event: dict[str, object]) -> None:
        kind = event.get("type")
        if kind == "session_started":
            self.began = True
        elif kind == "transcript":
            self.transcripts += 1
            latency = event.get("latency_ms")
            if isinstance(latency, int):
                self.latencies_ms.append(latency)
            if event.get("is_final") and str(event.get("text") or "").strip():
                self.finals.append(str(event["text"]))
        elif kind == "session_ended":
            self.ended = event
        elif kind == "error":
            self.errors.append(f"{event.get('code')}: {event.get('message')}")


def call_ids(route: RouteProtocol, url: str, calls: int, interaction_id: str | None) -> list[str]:
    """Each call's id: the one given (or the ingest URL's), as the route names calls."""
    named = id_in_url(url)
    if named and interaction_id and named != interaction_id:
        raise ValueError(f"--url names the call {named!r} and --id {interaction_id!r}: give one")
    return route.call_ids(interaction_id or named, calls)


async def stream_calls(
    audio: AudioFile,
    url: str,
    *,
    protocol: str = "ingest",
    calls: int = 1,
    interaction_id: str | None = None,
    chunk_ms: int | None = None,
    speed: float = 1.0,
    as_json: bool = False,
    keys: Keys | None = None,
    tenant_id: str | None = None,
    sip: SipOptions | None = None,
    audiosocket_port: int = 9092,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> list[CallResult]:
    """Play `audio` as `calls` live calls at once over the route `protocol` names; each call's
    events are printed as they come. Raises ValueError for a bad --url or --protocol."""
    route = protocols.load(protocol)
    played = convert(audio, route.call_format(audio.fmt))
    keys = keys or Keys()
    sip = sip or SipOptions()
    specs = [
        CallSpec(i, url, played.fmt, keys, tenant_id, sip, audiosocket_port)
        for i in call_ids(route, url, calls, interaction_id)
    ]
    for spec in specs:
        spec.route_url(route.path)  # a bad URL is refused before any call starts
    player = Player(played, chunk_ms or route.chunk_ms, speed)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        asyncio.TaskGroup() as tg,
    ):
        tasks = [tg.create_task(_one_call(http, route, spec, player, as_json, out, err)) for spec in specs]
    return [t.result() for t in tasks]


@dataclass(frozen=True)
class Player:
    """The call's audio in the route's format, `chunk_ms` a message, at `speed` (1 = real time,
    0 = as fast as the route takes it)."""

    audio: AudioFile
    chunk_ms: int
    speed: float

    async def play(self, leg: Leg) -> None:
        """Send the audio as a live call would, then end the call; stops early if the route
        closed the call."""
        fmt = self.audio.fmt
        step = max(fmt.frame_bytes, fmt.bytes_for(self.chunk_ms / 1000))
        step -= step % fmt.frame_bytes
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for i in range(0, len(self.audio.data), step):
                if leg.closed:
                    return
                chunk = self.audio.data[i : i + step]
                await leg.send_audio(chunk)
                if self.speed > 0:  # the next message is due when this one's audio has played
                    played_s = fmt.seconds(i + len(chunk)) / self.speed
                    await asyncio.sleep(max(0.0, start + played_s - loop.time()))
                else:
                    await asyncio.sleep(0)
            if not leg.closed:
                await leg.end()
        except (aiohttp.ClientError, ConnectionError):
            return  # the route went away under a send: what it said is read on the other side


async def _one_call(
    http: aiohttp.ClientSession,
    route: RouteProtocol,
    call: CallSpec,
    player: Player,
    as_json: bool,
    out: TextIO,
    err: TextIO,
) -> CallResult:
    result = CallResult(call.interaction_id)

    def show(received: Received) -> None:
        for event in received.events:
            result.count(event)
        if as_json:
            if received.raw:
                print(received.raw, file=out, flush=True)
            return
        for event in received.events:
            line = printer.describe(event, call=call.interaction_id)
            if line is not None:
                print(line, file=out, flush=True)

    try:
        async with contextlib.AsyncExitStack() as stack:
            events: AsyncIterator[Received] | None = None
            if route.events_over_sse:
                events = await stack.enter_async_context(call_events(http, call))
            leg = await route.open(http, call)
            stack.push_async_callback(leg.close)
            if leg.opened is not None:
                show(leg.opened)
            async with asyncio.TaskGroup() as tg:
                playing = tg.create_task(player.play(leg))
                if events is None:
                    events = leg.received()
                else:  # the route's own socket is read too: its close, or its refusal of the call
                    tg.create_task(_drain(leg, result))
                async for received in events:
                    show(received)
                playing.cancel()  # the call is over, whether or not all of it was played
                await leg.close()
    except* aiohttp.ClientError as group:
        problem = _problem(_first(group), route)
        result.errors.append(f"connection: {problem}")
        print(f"[{call.interaction_id}] connection failed: {problem}", file=err, flush=True)
    except* CallRefused as group:
        result.errors.append(f"refused: {_first(group)}")
        print(f"[{call.interaction_id}] refused: {_first(group)}", file=err, flush=True)
    except* OSError as group:  # SIP and RTP: nothing listens on the port, no answer in time
        result.errors.append(f"connection: {_first(group)}")
        print(f"[{call.interaction_id}] connection failed: {_first(group)}", file=err, flush=True)
    return result


E = TypeVar("E", bound=Exception)


def _first(group: BaseExceptionGroup[E]) -> E:
    """The first leaf of a task group's exceptions (the one that stopped the call)."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _drain(leg: Leg, result: CallResult) -> None:
    """Read the route's own socket to its end. A route that hangs up on a call it had begun
    (the worker ended it) refused nothing: the call's end comes over SSE."""
    try:
        async for _ in leg.received():
            pass
    except CallRefused:
        if not result.began:
            raise


def _problem(exc: aiohttp.ClientError, route: RouteProtocol) -> str:
    """What went wrong, and what to do about the answers a user's own mistake gets. A refused
    handshake's str() quotes the URL, which may carry ?token=: say what happened, not where."""
    if not isinstance(exc, aiohttp.ClientResponseError):
        return str(exc)
    events = exc.request_info.url.path.endswith("/events")
    if events and exc.status in (401, 403):
        hint = ": reading the call's events over SSE needs a key with watch scope (--watch-key, or --api-key)"
    elif exc.status in (401, 403):
        hint = f": the route needs {route.key_hint}"
    elif exc.status == 404:
        hint = f": no such endpoint; --url is {_WHERE.get(route.name, _WHERE[''])}"
    else:
        hint = ""
    try:
        phrase = HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = "(an unknown status)"
    return f"HTTP {exc.status} {phrase}{hint}"


_WHERE: Final = {
    "": "the worker's ws://HOST:PORT",
    "ingest": "the worker's ws://HOST:PORT, or the ingest socket ws://HOST:PORT/v1/audio/INTERACTION_ID",
    "deepgram": "dg-server's ws://HOST:PORT (3002 by default)",
}


def summary(results: list[CallResult]) -> str:
    """One line for the run. Finals are counted as printed, with text: `session_ended`'s
    `finals` also counts the empty ones that tile silence and confirm a finalize."""
    ended = sum(1 for r in results if r.ended is not None)
    latencies = [ms for r in results for ms in r.latencies_ms]
    if latencies:
        latency = f"{statistics.median(latencies):.0f} ms"
    elif any(r.transcripts for r in results):
        latency = "n/a (the route's messages carry none)"
    else:
        latency = "n/a (no transcripts)"
    finals = sum(len(r.finals) for r in results)
    errors = sum(len(r.errors) for r in results)
    return (
        f"calls {len(results)}, ended {ended}, finals with text {finals}, errors {errors}, "
        f"transcript latency p50 {latency}"
    )
