"""The skeleton of a remote streaming provider: one WebSocket per provider stream to a server
that transcribes (Deepgram's `/v1/listen`, an OpenAI Realtime endpoint). The session core
decides when to open, send, finalize, reconnect and replay; a remote provider speaks the
server's protocol for it and turns every failure into a `ProviderError` whose `retryable` flag
is the decision the core needs.

What does not depend on the protocol is written here once; a provider gets it by deriving from
`RemoteProvider`, `RemoteStream` and `RemoteOptions`:

* the circuit breaker shared by all calls (`breaker.CircuitBreaker`), which fails *new* calls at
  once while the server is failing for everyone: a call's first connection attempt
  (`StreamRequest.attempt` 1) is refused; calls already admitted keep retrying with their own
  backoff, and those attempts are the probes that close it again. While it is open every
  failure says so (`ProviderError.outage`) and `taking_new_calls` is False: with a fallback
  provider, the session core moves such calls there, and new calls start there;
* the handshake (`handshake.open_websocket`) and what its outcome counts: the handshake series,
  the breaker, the last failure and the last refusal that retrying cannot fix (for /health);
* the API key, which goes into the `Authorization` header and nowhere else, and the key
  scrubber: what the server says (a refusal's body, a close reason, an error message) may echo
  the request's headers, so it is read only with the key hidden;
* the stall watchdog: one timer per stream that gives the connection up as `stalled`
  (retryable) when the server has not answered by the earliest time it owes an answer. Pings
  alone would keep such a connection, and every word said into it, forever; the session
  replays what no final covered on a new connection, as after a drop;
* a connection's end: its close counted by code, a close the worker did not ask for turned
  into the stream's error, protocol garbage counted and logged once per stream, `abort`;
* `health`, `taking_new_calls`, `register_metrics` and `aclose`.

What a new remote provider supplies is its protocol mapping and its options:

* options: a frozen dataclass deriving from `RemoteOptions`, adding the server's own settings;
* metrics: a `ConnectionMetrics` named after the provider, built from the breaker's state;
* on its `RemoteProvider`: class attributes that name the server (`name`, which also names
  the logger websockets writes to, `asr_worker.<name>.wire`, and the key where it is hidden,
  `<NAME_API_KEY>`; `peer`, `auth_scheme`, `bad_url_message`) and shape its socket
  (`max_queue`, `connection`); and methods: `_url_for` (the request's URL), `_refused` (a
  handshake refusal as the call's error, built with `_lasting_refusal` or
  `_retryable_failure`), `_unreachable` (a network failure or timeout, built with
  `_retryable_failure`), `_start_stream` (the stream on the `Opened` connection) and, where it
  needs them, `_before_handshake` and `_circuit_opened`;
* its `RemoteStream`: the `ProviderStream` methods that speak the protocol (`send_audio`,
  `keepalive`, `finalize`, `close_stream`, `events`), the server's next answer due
  (`_earliest_due`; the stream sets the watchdog with `_expect_by` or `_rewatch` as it asks
  for answers), what a stall is called (`_stall_message`) and what a close means
  (`_close_error`, `_unasked_close`), with its logger and its name for the server in logs.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, Generic, TypeVar
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, CloseCode
from websockets.http11 import Response
from websockets.protocol import State

from ..core.clock import Clock, SystemClock
from ..credentials import Secret
from ..errors import ProviderError
from ..settings import Setting, secret
from .base import ProviderHealth, StreamRequest
from .breaker import CircuitBreaker
from .connection_metrics import ConnectionMetrics
from .handshake import Refused, Unreachable, open_websocket

# A refused handshake's HTTP status as its `ProviderError.code`; any other is `http_<status>`.
STATUS_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}

# No close frame received: the TCP connection just ended.
_ABNORMAL_CLOSE: Final = int(CloseCode.ABNORMAL_CLOSURE)
# A key shorter than this is no real key, and hiding it would garble every message.
_MIN_KEY_CHARS: Final = 4


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    """The options the skeleton reads: the key, the socket's timing, the breaker's limits.
    A provider's options derive from it and add the server's own."""

    api_key: Secret | None = field(default=None, repr=False)  # never printed
    open_timeout_s: float = 5.0
    # websockets' own pings find a dead TCP connection (and a send blocked on it) in <= 20 s.
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    close_timeout_s: float = 1.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0


def _key_scrubber(key: Secret | None, placeholder: str) -> Callable[[str], str]:
    """A function that shows `key` as `placeholder` wherever it appears in a text from the
    server (no key, or one too short to be real: the text as it is)."""
    text = _real_key(key)
    if text is None:
        return str
    return lambda message: message.replace(text, placeholder)


def _real_key(key: Secret | None) -> str | None:
    text = None if key is None else key.reveal()
    return text if text is not None and len(text) >= _MIN_KEY_CHARS else None


OptionsT = TypeVar("OptionsT", bound=RemoteOptions)
MetricsT = TypeVar("MetricsT", bound=ConnectionMetrics)
StreamT = TypeVar("StreamT")


@dataclass(frozen=True, slots=True)
class Opened(Generic[MetricsT]):
    """What a provider hands the stream it opened: the connection, the call it is for, and
    the provider's series and key scrubber, which the stream shares with every other."""

    conn: ClientConnection
    request: StreamRequest
    metrics: MetricsT
    scrub: Callable[[str], str]


class RemoteProvider(ABC, Generic[OptionsT, MetricsT, StreamT]):
    """Opens one stream per call on a remote server: the breaker's gate, the handshake and
    what its outcome counts, health and metrics. Its subclass maps the protocol."""

    # The provider's name in settings, metrics and logs ("deepgram"): websockets logs its
    # connections to `asr_worker.<name>.wire`, and a hidden key reads `<DEEPGRAM_API_KEY>`.
    name: str
    peer: ClassVar[str]  # the server in messages: "Deepgram", "the OpenAI endpoint"
    auth_scheme: ClassVar[str]  # of the Authorization header: "Token", "Bearer"
    bad_url_message: ClassVar[str]  # the error for a URL that is no WebSocket URL
    max_queue: ClassVar[int]  # messages read ahead of the stream
    connection: ClassVar[type[ClientConnection]] = ClientConnection

    def __init__(
        self,
        options: OptionsT,
        metrics: Callable[[Callable[[], float]], MetricsT],
        clock: Clock | None = None,
    ) -> None:
        """`metrics` builds the provider's series from a reading of the breaker's state."""
        self.options = options
        self._clock = clock or SystemClock()
        self.breaker = CircuitBreaker(options.breaker_threshold, options.breaker_cooldown_s)
        self.metrics = metrics(lambda: float(self.breaker.state(self._clock.monotonic())))
        key = "" if options.api_key is None else options.api_key.reveal()
        self._headers = [("Authorization", f"{self.auth_scheme} {key}")] if key else []
        self._key_placeholder = f"<{self.name.upper()}_API_KEY>"
        self.scrub = _key_scrubber(options.api_key, self._key_placeholder)
        # websockets logs every handshake header at DEBUG, the Authorization header (the key)
        # among them: its logger for our connections never goes below INFO, whatever
        # ASR_LOG_LEVEL says.
        self._wire_log = logging.getLogger(f"asr_worker.{self.name}.wire")
        self._wire_log.setLevel(logging.INFO)
        self._refusal: str | None = None  # the last refusal retrying cannot fix, for /health
        self._last_failure = ""
        self._connected = False  # a handshake has succeeded: /health knows the server works

    # --- the Provider interface -----------------------------------------------------------

    async def open(self, request: StreamRequest) -> StreamT:
        now = self._clock.monotonic()
        refused = (
            self.breaker.refuse_new_call(now, self.peer, self._last_failure) if request.attempt == 1 else None
        )
        if refused is not None:
            self.metrics.failed_fast.inc()
            raise refused
        await self._before_handshake(request, now)
        started = self._clock.monotonic()
        conn = await open_websocket(
            self._url_for(request),
            self._headers,
            self.options,
            max_queue=self.max_queue,
            logger=self._wire_log,
            connection=self.connection,
        )
        if isinstance(conn, Refused):
            self.metrics.handshakes.labels(str(conn.response.status_code)).inc()
            raise self._refused(conn.response)
        if isinstance(conn, Unreachable):
            if conn.kind == "bad_url":
                raise ProviderError("bad_url", self.bad_url_message, retryable=False)
            self.metrics.handshakes.labels(conn.kind).inc()
            raise self._unreachable(conn.kind, self.scrub(conn.detail))
        self.metrics.handshakes.labels("101").inc()
        self.metrics.handshake_seconds.observe(self._clock.monotonic() - started)
        self.breaker.success()
        self._refusal = None
        self._connected = True
        return await self._start_stream(Opened(conn, request, self.metrics, self.scrub))

    def taking_new_calls(self) -> bool:
        """New calls fail at once while the breaker is open (a fallback takes them meanwhile)."""
        return not self._outage()

    def health(self) -> ProviderHealth:
        """From facts: unknown until a call has tried the server, then what the last attempts
        showed (a provider is not `ok` for never having failed)."""
        return self.breaker.health(
            self._clock.monotonic(), self._last_failure, self._refusal, connected=self._connected
        )

    async def aclose(self) -> None:
        return None  # every connection belongs to a stream, which its session closes

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.metrics.registry)

    # --- the protocol mapping, supplied by the provider -------------------------------------

    @abstractmethod
    def _url_for(self, request: StreamRequest) -> str:
        """The WebSocket URL the request's stream opens."""

    async def _before_handshake(self, request: StreamRequest, now: float) -> None:
        """What must happen after the breaker let the request through and before its handshake
        (`now`: when the request came): a check that refuses it, a wait the server asked for."""

    @abstractmethod
    def _refused(self, response: Response) -> ProviderError:
        """The server's refusal of the handshake (its HTTP response, not yet scrubbed) as the
        call's error: `_lasting_refusal` or `_retryable_failure`."""

    @abstractmethod
    def _unreachable(self, kind: str, detail: str) -> ProviderError:
        """A handshake that got no answer (`kind` "network" or "timeout"; `detail` scrubbed)
        as the call's error: `_retryable_failure`."""

    @abstractmethod
    async def _start_stream(self, opened: Opened[MetricsT]) -> StreamT:
        """The stream on the open connection, ready for the call's audio."""

    def _circuit_opened(self, last_failure: str) -> None:
        """Called when a failure opens the breaker, to say so where the provider does."""

    # --- for the protocol mapping -----------------------------------------------------------

    def scrub_body(self, body: bytes) -> bytes:
        """A response body with the key hidden, as `scrub` hides it in text."""
        key = _real_key(self.options.api_key)
        return body if key is None else body.replace(key.encode(), self._key_placeholder.encode())

    def _retryable_failure(
        self, code: str, message: str, what: str, status: int | None = None
    ) -> ProviderError:
        """A connection attempt that failed in a way retrying may fix: counted against the
        breaker, remembered for /health as `what`, and an outage if the breaker is now open."""
        self._last_failure = what
        was_open = self._outage()
        self.breaker.failure(self._clock.monotonic())
        if not was_open and self._outage():
            self._circuit_opened(what)
        return ProviderError(code, message, retryable=True, status=status, outage=self._outage())

    def _lasting_refusal(self, code: str, message: str, health: str, status: int) -> ProviderError:
        """A refusal that retrying cannot fix (a bad key, a bad request): the call fails, and
        /health says `health` until a connection succeeds. Not a breaker failure: the server
        answers."""
        self._refusal = health
        return ProviderError(code, message, retryable=False, status=status)

    def _outage(self) -> bool:
        """The breaker is open: the server is failing for every call, not only this one."""
        return self.breaker.is_open(self._clock.monotonic())


class RemoteStream(ABC, Generic[MetricsT]):
    """One live connection: its stall watchdog, its end and its errors. Its subclass speaks
    the protocol, and maps every socket failure to a ProviderError with `_closed_error`."""

    _log: ClassVar[logging.Logger]  # the provider's logger
    _said_by: ClassVar[str]  # the server as log lines name it: "deepgram", "the OpenAI endpoint"

    def __init__(self, opened: Opened[MetricsT]) -> None:
        self._conn = opened.conn
        self._metrics = opened.metrics
        self._scrub = opened.scrub  # what the server sends may echo the key: never repeat it
        self._interaction_id = opened.request.interaction_id
        self._closing = False  # the worker asked for the end: a close is no failure
        self._warned = False  # protocol garbage was logged for this stream
        # The stall watchdog: one timer, for the earliest time the server owes an answer by.
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self._stalled: str | None = None  # why the watchdog gave the connection up

    async def abort(self) -> None:
        self._stop_watchdog()
        self._closing = True  # the worker ends the stream: its close is no failure
        if self._conn.state is State.CLOSED:
            return
        try:
            await self._conn.close()  # bounded by close_timeout
        except Exception:  # already broken: nothing to close cleanly
            self._conn.transport.abort()

    # --- the stall watchdog ---------------------------------------------------------------

    @abstractmethod
    def _earliest_due(self) -> float | None:
        """The earliest loop time by which the server owes an answer, or None (it owes none)."""

    @abstractmethod
    def _stall_message(self, due: float) -> str:
        """What the call is told when the answer due at `due` did not come."""

    def _expect_by(self, within_s: float) -> float:
        """A due time `within_s` from now; the watchdog wakes by it at the latest."""
        due = self._loop.time() + within_s
        if self._watchdog is None or due < self._watchdog.when():
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = self._loop.call_at(due, self._check_stall)
        return due

    def _rewatch(self) -> None:
        """Wake the watchdog for the earliest due time there is now (if a due time went away)."""
        self._stop_watchdog()
        due = self._earliest_due()
        if due is not None:
            self._watchdog = self._loop.call_at(due, self._check_stall)

    def _check_stall(self) -> None:
        self._watchdog = None
        due = self._earliest_due()
        if due is None:
            return  # answered meanwhile; the next request sets a new due time
        if due > self._loop.time() + 1e-3:
            self._watchdog = self._loop.call_at(due, self._check_stall)
            return
        self._stalled = self._stall_message(due)
        self._metrics.stalls.inc()
        self._conn.transport.abort()  # the reader and any blocked send see the connection end

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # --- the connection's end -------------------------------------------------------------

    @abstractmethod
    def _close_error(self, code: int, reason: str) -> ProviderError:
        """What a close the worker did not ask for means for the call (`reason` scrubbed)."""

    @abstractmethod
    def _unasked_close(self, code: int, reason: str) -> ProviderError:
        """The error of a clean close that came before the worker asked for the end."""

    async def _write(self, message: str | bytes) -> None:
        try:
            await self._conn.send(message)
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    def _closed_error(self, exc: ConnectionClosed) -> ProviderError:
        """The call's error for a connection that ended under a send or the reader."""
        if self._stalled is not None:
            return ProviderError("stalled", self._stalled, retryable=True)
        code, reason = _close_of(exc.rcvd)
        self._metrics.closes.labels(str(code)).inc()
        return self._close_error(code, self._scrub(reason))

    def _clean_close(self) -> None:
        """The reader saw the connection close cleanly: counted, and the call's error if the
        worker had not asked for it."""
        code, reason = _close_of(self._conn.protocol.close_rcvd)
        self._metrics.closes.labels(str(code)).inc()
        if not self._closing:
            raise self._unasked_close(code, self._scrub(reason))

    def _garbage(self, kind: str, detail: str) -> None:
        """A server message that is not valid protocol: counted by `kind`, logged once per
        stream (a broken server must not flood the log), skipped."""
        self._metrics.garbage.labels(kind).inc()
        if not self._warned:
            self._warned = True
            self._log.warning(
                f"{self._said_by} sent a message that is not valid protocol; skipping such messages",
                extra={
                    "interaction_id": self._interaction_id,
                    "kind": kind,
                    "detail": self._scrub(detail)[:200],
                },
            )


def _close_of(frame: Close | None) -> tuple[int, str]:
    """A received close frame's code and reason; none received: 1006, as websockets says."""
    if frame is None:
        return _ABNORMAL_CLOSE, ""
    return frame.code, frame.reason


def cloud_key_missing(url: str, domain: str, key: Secret | None, variable: str) -> tuple[str, str] | None:
    """A provider's vendor cloud (`domain` or a subdomain) takes no call without a key, where a
    self-hosted or test server may: what `ProviderKind.missing` says for it."""
    host = urlsplit(url).hostname or ""
    cloud = host == domain or host.endswith("." + domain)
    return (variable, f"uses api.{domain}") if cloud and key is None else None


def key_setting(variable: str, vendor: str) -> Setting:
    """The settings row of a remote provider's API key."""
    return Setting("api_key", variable, f"{vendor} API key (never logged)", secret, secret=True)
