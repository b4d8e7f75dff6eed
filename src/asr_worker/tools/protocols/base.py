"""What `asr-worker stream` needs of a route, so that a route is one small module: how to open
a call on it with a key, send the call's audio, end the call, and read back what the route
itself returns (the routes that return nothing have their events read over SSE instead).

A module defines a `RouteProtocol` (its name, default path, the audio format the route
carries, whether its events come back on it) whose `open` returns a `Leg`: the call from the
caller's side. The driver (`tools/stream.py`) converts the file to `call_format`, opens the
leg, plays the audio into it at real time `chunk_ms` at a time, ends it, and prints what comes
back, one line per event (`tools/printer.py`): what a route returns in its own words (an
AudioHook `event`, an OpenAI `...completed`, a Deepgram `Results`) is handed on in the
worker's event vocabulary, so every route's calls read the same.
"""

from __future__ import annotations

import base64
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from ...core.audio import AudioFormat

Event = dict[str, object]


@dataclass(frozen=True)
class Keys:
    """What opens a call and reads its events. None: not given (a worker that asks for none)."""

    api_key: str | None = field(default=None, repr=False)  # the route's key
    watch_key: str | None = field(default=None, repr=False)  # reads the call's events over SSE
    client_secret: bytes | None = field(default=None, repr=False)  # AudioHook's signature key
    twilio_auth_token: str | None = field(default=None, repr=False)  # signs Twilio's upgrade
    vonage_signature_secret: str | None = field(default=None, repr=False)  # signs Vonage's upgrade


@dataclass(frozen=True)
class SipOptions:
    """`--protocol siprec`: the worker's SIP port on the --url's host, and a header to name the
    call's id in (besides the metadata's session id), for a worker with ASR_SIPREC_ID_HEADER."""

    port: int = 5060
    id_header: str | None = None


@dataclass(frozen=True)
class CallSpec:
    """One call to play: its id, where (`url` as given to --url), in which format, with what."""

    interaction_id: str
    url: str
    fmt: AudioFormat  # what the route carries: `RouteProtocol.call_format` of the file's
    keys: Keys = Keys()
    tenant_id: str | None = None
    sip: SipOptions = SipOptions()
    audiosocket_port: int = 9092  # `--protocol audiosocket`: the worker's ASR_AUDIOSOCKET_PORT

    def route_url(self, default_path: str, query: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> str:
        """`url`'s scheme and host, its path if it names one (else `default_path`), and `query`."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"--url must be a ws:// or wss:// URL, not {self.url!r}")
        path = parts.path if parts.path not in ("", "/") else default_path
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
        return urlunsplit((parts.scheme, parts.netloc, path, urlencode(pairs), ""))

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def basic_authorization(user: str, key: str | None) -> dict[str, str]:
    """HTTP Basic with the key as the password, as the platforms that send a user and a
    password send a worker's key (none without a key)."""
    if not key:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode("ascii")}


def bearer_authorization(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def highest_rate(rate: int, rates: Sequence[int]) -> int:
    """The highest of a platform's sample `rates` (ascending) that is not above the file's
    `rate`, or its lowest: the file is carried as well as the platform can, never upsampled."""
    return max((r for r in rates if r <= rate), default=rates[0])


class CallRefused(Exception):
    """The route refused the call in its own words (an AudioHook `disconnect` before `opened`,
    an OpenAI `error` to the session's configuration); the message says what it said."""


@dataclass(frozen=True)
class Received:
    """One message the route returned (`raw`, as sent: `--json` prints it) and the events it
    carries, in the worker's vocabulary (none, for a message that carries nothing to show)."""

    raw: str
    events: list[Event]


class Leg(ABC):
    """One call from the caller's side, on an open route."""

    # What the route said as it took the call (AudioHook's `opened`, Deepgram's handshake), if
    # it says it on opening rather than in a message `received` reads.
    opened: Received | None = None

    @abstractmethod
    async def send_audio(self, chunk: bytes) -> None:
        """`chunk_ms` of the call's audio, in `call_format`, whole samples."""

    @abstractmethod
    async def end(self) -> None:
        """The call is over, in the route's own words (`end`, `stop`, `close`, a commit...)."""

    @abstractmethod
    def received(self) -> AsyncIterator[Received]:
        """What the route sends back, until the call has ended on it; a route whose events go
        over SSE yields nothing and returns when its socket closes."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """The route closed the call: no more audio."""

    @abstractmethod
    async def close(self) -> None:
        """Let go of the route (after the end, or when the driver gives up)."""


class SocketLeg(Leg):
    """A leg over one WebSocket, which reads text messages with `_read` until it closes."""

    # Close codes with which a worker refuses a call (a bad request, no room): the call never
    # began, and a watcher over SSE would wait for it forever.
    REFUSALS: ClassVar[frozenset[int]] = frozenset({1008, 1011, 1013})

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()

    async def received(self) -> AsyncIterator[Received]:
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                got = await self._read(msg.data)
                if got is not None:
                    yield got
                if self._done():
                    return
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                code = self.ws.close_code
                if code in self.REFUSALS:
                    reason = msg.extra if isinstance(msg.extra, str) and msg.extra else "no reason given"
                    raise CallRefused(f"the worker closed the socket {code}: {reason}")
                last = self._closed_by_route(code)
                if last is not None:
                    yield last
                return
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return

    async def _read(self, text: str) -> Received | None:
        """A text message the route sent, as what to show (None: nothing); it may answer."""
        return None

    def _done(self) -> bool:
        """The call has ended on this route: stop reading (the caller closes the socket)."""
        return False

    def _closed_by_route(self, code: int | None) -> Received | None:
        """What the route's own close (not a refusal) says, for a route whose close is its
        word that the call is over."""
        return None


class RouteProtocol(ABC):
    name: ClassVar[str]  # what --protocol says
    path: ClassVar[str]  # the route on the worker (dg-server for deepgram)
    events_over_sse: ClassVar[bool]  # the route returns no events: read them over SSE
    chunk_ms: ClassVar[int]  # audio per message, as the platform sends it
    key_env: ClassVar[str]  # the environment variable the key comes from without --api-key
    key_hint: ClassVar[str]  # what a refused key needs, for the 401 and 403 hint

    def call_ids(self, named: str | None, calls: int) -> list[str]:
        """Each call's id: the one named (--id, or the ingest URL's), suffixed -1..-N for
        several calls, or a fresh one. ValueError for one the route cannot carry."""
        base = named or f"stream-{secrets.token_hex(4)}"
        return [base] if calls == 1 else [f"{base}-{i + 1}" for i in range(calls)]

    @abstractmethod
    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        """The format this route carries a file of `fmt` in."""

    @abstractmethod
    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        """The call, open on the route (its first messages sent). Raises aiohttp.ClientError."""
