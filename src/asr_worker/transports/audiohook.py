"""`GET /v1/audiohook`: Genesys Cloud AudioHook v2, both parties of a call in one stereo stream.

The upgrade request is authenticated first (`X-API-KEY` from `ASR_AUDIOHOOK_API_KEYS` and,
for a key with a client secret, the HTTP message signature; `audiohook.signature`); a refusal
is an HTTP answer (401, or 403 while no key is configured) after a fixed delay, as the
reference server does. Then the dialogue (`audiohook.protocol` has the messages):

- `open` is answered at once with `opened`: joining a call is synchronous and never waits for
  the provider, so the answer goes out in milliseconds however busy the worker is. The worker
  picks 8 kHz PCMU or L16 with the channels `external` (channel 0) and `internal` (channel 1)
  interleaved, else one party alone, and refuses with `disconnect` when nothing fits. The call
  is `customConfig.interaction_id` or else the `conversationId`; the tenant the
  `organizationId`; its keyterms `customConfig.keyterms` (a list of strings or one
  comma-separated string, held to the Deepgram protocol's keyterm limits). An `open` for the
  null conversation id is Genesys's connection probe: answered, but no call is started.
- Audio feeds the call; the call's transcripts come back as `event` messages with `transcript`
  entities whose times are the client's stream `position`s (see `_Timeline`).
- `ping` -> `pong`, `paused`/`resumed`: the call's own pause (the session core's input, as
  `POST /v1/calls/{id}/pause` is: `paused` and `resumed` events, no audio to the provider in
  between), `discarded`, `error` (logged, and an `error` event for the call's watchers). A call
  paused another way (the operator endpoint, another source) sends the client `pause`, and its
  resume `resume`, so Genesys stops sending the audio too.
- Languages: `opened` lists the provider's languages in `supportedLanguages` when `open` asks
  (the engine's own, unless ASR_AUDIOHOOK_LANGUAGES names some); `open`'s `language` is the
  call's (unless `customConfig.language` says otherwise), refused like any call's language the
  provider cannot transcribe; `update` with a new `language` makes it the call's from then on
  and is answered `updated`, or, for a language the provider cannot transcribe, leaves the
  call's as it was with an `error` event for its watchers and no `updated`.
- `close` ends the call: the session flushes, its last finals go out as events, then `closed`.
  A `close` for `reconnect`, or a socket that drops, only leaves the call: a new session that
  continues it (`continuedSessions`, the same conversation) joins the same call within
  `ASR_SESSION_GRACE_S`.
- A protocol violation (bad JSON, an unknown type, seq out of order, audio before `opened`, a
  frame that is not whole samples) gets `disconnect` with reason `error` and one log line; the
  client then closes, and the call still flushes its finals.
- The worker disconnects on its own when the call ends without the client (shutdown, another
  source ended it), and `POST /v1/audiohook/{interaction_id}/pause|resume|disconnect` (behind
  the worker's bearer token) sends `pause`, `resume` or `disconnect` to the call's sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from typing import Final

from aiohttp import WSMsgType, web

from ..audiohook import protocol as ah
from ..audiohook.signature import (
    NONCE_TTL_S,
    ApiKeys,
    NonceCache,
    VerifyResult,
    authenticate,
    header_fields,
    signed_nonce,
)
from ..core.audio import AudioFormat, Encoding
from ..core.call_options import CallOptions
from ..core.events import Paused, Resumed, SessionEnded, Transcript
from ..core.ids import CallKey, check_id
from ..errors import AccessDenied, BadRequest, ProtocolError, SessionRefused
from ..http.auth import SELF_CHECKED, Route, principal_of
from ..providers.base import LanguageAware
from ..runtime.hub import Subscription
from ..runtime.source import CallSource
from ..settings import Section, Setting
from ..tenancy import Scope
from .common import call_named, first_within, upgrade_refusal
from .host import CallHost

log = logging.getLogger("asr_worker.audiohook")

FAILURE_DELAY_S: Final = 0.5  # an authentication failure is answered no sooner (timing leaks)
CLOSE_WAIT_S: Final = 8.0  # the client waits 10 s for `closed`; the finals get this long
_MAX_BREAKS: Final = 256
_NORMAL_ENDS: Final = frozenset({"end", "stop", "close", "grace"})


@dataclass(frozen=True)
class AudioHookOptions:
    api_keys: ApiKeys | None = None  # None: the endpoint is closed
    # What `opened` lists in supportedLanguages, of those the provider transcribes; empty: the
    # provider's own languages (the local engine's), or en-US for one that does not say.
    languages: tuple[str, ...] = ()


_LANGUAGE_CODE: Final = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,3})?$")
DEFAULT_LANGUAGES: Final = ("en-US",)  # a provider that does not say which it transcribes


def _language_codes(text: str) -> tuple[str, ...]:
    codes = tuple(code.strip() for code in text.split(",") if code.strip())
    if any(_LANGUAGE_CODE.match(code) is None for code in codes):
        raise ValueError("must be comma-separated language codes such as en-US,es-ES (empty: the engine's)")
    return codes


SETTINGS: Final = Section(
    "audiohook",
    "Genesys AudioHook",
    AudioHookOptions,
    (
        Setting(
            "api_keys",
            "ASR_AUDIOHOOK_API_KEYS",
            "Genesys AudioHook credentials: comma-separated KEY or KEY:BASE64_CLIENT_SECRET (several for "
            "rotation; never logged); unset: /v1/audiohook is closed",
            ApiKeys.parse,
            secret=True,
        ),
        Setting(
            "languages",
            "ASR_AUDIOHOOK_LANGUAGES",
            "languages /v1/audiohook reports to Genesys (supportedLanguages), comma-separated; those the "
            "provider cannot transcribe are left out. Empty: the provider's own (the local engine's)",
            _language_codes,
        ),
    ),
)


def routes(host: CallHost, options: AudioHookOptions) -> list[Route]:
    endpoint = _Endpoint(host, options)
    return [
        Route("GET", "/v1/audiohook", endpoint.socket, SELF_CHECKED, long_lived=True),
        Route("POST", "/v1/audiohook/{interaction_id}/{action}", endpoint.control, Scope.OPERATE),
    ]


@dataclass(frozen=True)
class _Binding:
    """What an AudioHook key is bound to: the tenant ASR_API_KEYS names for it (else its calls
    belong to their Genesys organization), and the one organization it may serve."""

    tenant: str | None
    organization: str | None


class _Endpoint:
    """The endpoint's state across connections: seen nonces, and the live sessions by call."""

    def __init__(self, host: CallHost, options: AudioHookOptions) -> None:
        self.host = host
        self.options = options
        self.nonces = NonceCache()
        self.live: dict[CallKey, set[_Session]] = {}

    def supported_languages(self) -> tuple[str, ...]:
        """What `opened` lists: the configured languages the provider transcribes, else the
        provider's own (the local engine's codes, `multi` among them)."""
        provider = self.host.manager.provider
        if not isinstance(provider, LanguageAware):
            return self.options.languages or DEFAULT_LANGUAGES
        if self.options.languages:
            return tuple(c for c in self.options.languages if provider.language_refusal(c) is None)
        return provider.languages()

    def language_refusal(self, language: str) -> str | None:
        provider = self.host.manager.provider
        return provider.language_refusal(language) if isinstance(provider, LanguageAware) else None

    async def socket(self, request: web.Request) -> web.StreamResponse:
        host = self.host
        ws = web.WebSocketResponse(max_msg_size=host.http.max_message_bytes, heartbeat=None, compress=False)
        refusal = upgrade_refusal(request, ws, host.draining)
        if refusal is not None:
            return refusal
        keys = self.options.api_keys
        if keys is None:
            host.metrics.audiohook_refused.labels("disabled").inc()
            log.info("audiohook refused", extra={"reason": "disabled", "peer": request.remote})
            return web.json_response(
                {
                    "error": "audiohook_disabled",
                    "message": "AudioHook is not enabled on this worker: set ASR_AUDIOHOOK_API_KEYS",
                },
                status=403,
            )
        started = time.monotonic()
        headers = header_fields((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)
        result = authenticate(headers, request.raw_path, keys, self.nonces, time.time())
        host.metrics.audiohook_nonces.set(len(self.nonces))
        nonce = signed_nonce(headers) if result.ok else None
        if nonce is not None and not await host.bus.first_sighting(f"audiohook:{nonce}", NONCE_TTL_S):
            result = VerifyResult("FAILED", "the signature's nonce was already used")
        if not result.ok:
            host.metrics.audiohook_refused.labels("unauthorized").inc()
            log.info(
                "audiohook refused",
                extra={"reason": result.code, "detail": result.reason, "peer": request.remote},
            )
            await asyncio.sleep(max(0.0, started + FAILURE_DELAY_S - time.monotonic()))
            return web.json_response(
                {"error": "unauthorized", "message": f"signature verification failed ({result.code})"},
                status=401,
            )
        session_id = headers.get("audiohook-session-id", "")
        if not ah.is_uuid(session_id):
            host.metrics.audiohook_refused.labels("bad_request").inc()
            log.info("audiohook refused", extra={"reason": "no session id", "peer": request.remote})
            return web.json_response(
                {"error": "bad_request", "message": 'Missing or invalid "audiohook-session-id" header field'},
                status=400,
            )
        await ws.prepare(request)
        api_key = headers.get("x-api-key", "")
        ring = host.keyring.keys
        binding = _Binding(
            tenant=None if ring is None else ring.tenant_of(api_key), organization=keys.organization(api_key)
        )
        session = _Session(self, ws, session_id, headers.get("audiohook-organization-id"), binding)
        try:
            await session.run()
        finally:
            session.release()
        return ws

    async def control(self, request: web.Request) -> web.Response:
        """`POST /v1/audiohook/{interaction_id}/pause|resume|disconnect`: the worker asks the
        call's AudioHook sessions to pause or resume their audio, or to end the session."""
        interaction_id, action = request.match_info["interaction_id"], request.match_info["action"]
        if action not in ("pause", "resume", "disconnect"):
            raise web.HTTPNotFound()
        try:
            claimed = request.query.get("tenant_id")
            call = call_named(self.host, principal_of(request), interaction_id, claimed)
        except (BadRequest, AccessDenied) as exc:
            status = exc.status if isinstance(exc, AccessDenied) else 400
            return web.json_response({"error": exc.code, "message": exc.message}, status=status)
        sessions = list(self.live.get(call, ()))
        if not sessions:
            return web.json_response(
                {"error": "not_found", "message": "no AudioHook session carries this call"}, status=404
            )
        for session in sessions:
            if action == "disconnect":
                await session.disconnect("completed", "the worker ended the session")
            else:
                await session.send(action, {})
        return web.json_response(
            {"interaction_id": interaction_id, "action": action, "sessions": len(sessions)}
        )


class _Timeline:
    """This session's stream time (the client's `position`) for a call time.

    The call's time counts the audio the worker took; the client's position also counts audio
    it discarded, and, after a reconnect, a continued call started earlier. Every client message
    says its position, and the socket delivers it after the audio sent before it, so
    position - audio received is the offset at that point; it changes only where audio was left
    out, and the changes are kept (bounded) as breaks."""

    def __init__(self, fmt: AudioFormat, call_start_s: float) -> None:
        self.bytes_per_second = fmt.bytes_per_second
        self.call_start_s = call_start_s
        self.bytes_in = 0
        self._at: list[float] = [0.0]
        self._delta: list[float] = [0.0]

    @property
    def received_s(self) -> float:
        return self.bytes_in / self.bytes_per_second

    def note_position(self, position: float) -> None:
        local = self.received_s
        delta = position - local
        if abs(delta - self._delta[-1]) > 0.0005:
            if local <= self._at[-1]:
                self._delta[-1] = delta
            else:
                self._at.append(local)
                self._delta.append(delta)
            if len(self._at) > _MAX_BREAKS:  # keep the newest
                del self._at[1], self._delta[1]

    def stream_time(self, call_s: float, *, end: bool = False) -> float:
        """The stream time of a call time; an `end` at a break belongs to the audio before it."""
        local = max(0.0, call_s - self.call_start_s)
        index = (bisect_left if end else bisect_right)(self._at, local) - 1
        return max(0.0, local + self._delta[max(0, index)])


class _Session:
    """One AudioHook session: one WebSocket, at most one call joined."""

    def __init__(
        self,
        endpoint: _Endpoint,
        ws: web.WebSocketResponse,
        session_id: str,
        org: str | None,
        binding: _Binding,
    ) -> None:
        self.endpoint = endpoint
        self.host = endpoint.host
        self.ws = ws
        self.id = session_id
        self.probe = session_id == ah.NULL_UUID  # Genesys's connection probe (or its null conversation)
        self.org_header = org
        self.binding = binding
        self.key: CallKey | None = None  # the call, once opened
        self.state = "PREPARING"  # ACTIVE, PAUSED, CLOSING, CLOSED, ERROR (we disconnected)
        self.seq = 0
        self.clientseq = 0
        self.source: CallSource | None = None
        self.subscription: Subscription | None = None
        self.media: ah.MediaOffer | None = None
        self.timeline: _Timeline | None = None
        self.language: str | None = None
        self.ended = asyncio.Event()  # the call's last event has gone out
        self.events_allowed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tg: asyncio.TaskGroup | None = None
        self._utterances: dict[int, str] = {}
        self._paused_audio_logged = False
        self._own_controls = 0  # `paused`/`resumed` events this session's client caused, not yet seen

    @property
    def interaction_id(self) -> str | None:
        return None if self.source is None else self.source.interaction_id

    # --- the socket ---------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                async for msg in first_within(self.ws, self.host):
                    if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                        await self.receive(msg.type, msg.data)
                    elif msg.type is WSMsgType.ERROR:
                        log.info(
                            "audiohook socket failed",
                            extra={"session": self.id, "detail": f"{self.ws.exception()!s:.200}"},
                        )
                        break
            finally:
                self.events_allowed.set()
                if self.subscription is not None:
                    self.subscription.close()  # the event pump drains and returns

    async def receive(self, kind: WSMsgType, data: str | bytes) -> None:
        """One message; a fault of the worker's own is the session's `disconnect` (reason
        `error`), never the connection's or the process's end."""
        try:
            if isinstance(data, str):
                await self.text(data)
            else:
                await self.audio(data)
        except Exception:
            log.exception("audiohook message failed", extra={"session": self.id, "kind": kind.name})
            await self.disconnect("error", "Internal server error")

    def release(self) -> None:
        """The socket is gone: leave the call (it ends after its grace period unless a session
        continues it), stop its events. Idempotent."""
        if self.subscription is not None:
            self.subscription.close()
        if self.source is not None:
            self.source.leave()
            key = self.key
            sessions = self.endpoint.live.get(key) if key is not None else None
            if key is not None and sessions is not None:
                sessions.discard(self)
                if not sessions:
                    del self.endpoint.live[key]

    async def send(self, kind: str, parameters: dict[str, object]) -> bool:
        """One server message, numbered in the order sent."""
        async with self._lock:
            if self.ws.closed:
                return False
            self.seq += 1
            text = ah.server_message(kind, self.id, self.seq, self.clientseq, parameters)
            try:
                await self.ws.send_str(text)
            except ConnectionError:
                return False
        return True

    async def disconnect(self, reason: ah.DisconnectReason, info: str) -> None:
        """End the session from this side: the client answers with `close`."""
        if self.state in ("CLOSING", "CLOSED", "ERROR"):
            return
        self.state = "ERROR"
        self.events_allowed.clear()
        self.host.metrics.audiohook_refused.labels(reason).inc()
        await self.send("disconnect", ah.disconnect_parameters(reason, info))

    async def client_error(self, info: str) -> None:
        """A protocol violation: one log line, `disconnect` with reason `error`."""
        if self.state in ("CLOSED", "ERROR"):
            return
        log.info(
            "audiohook protocol error",
            extra={"session": self.id, "interaction_id": self.interaction_id, "reason": info},
        )
        if self.source is not None:
            self.source.error("bad_message", f"AudioHook: {info}")
        await self.disconnect("error", f"Client Error: {info}")

    # --- client messages ----------------------------------------------------------------------

    async def text(self, text: str) -> None:
        """One text message."""
        messages = self.host.metrics.audiohook_messages
        try:
            message = ah.parse_client_message(text)
        except ProtocolError as exc:
            messages.labels("invalid").inc()
            await self.client_error(exc.message)
            return
        header = message.header
        messages.labels(type(message).__name__.lower()).inc()
        if self.state == "ERROR" and isinstance(message, ah.Close):
            self.clientseq = max(self.clientseq, header.seq)  # after a violation: close regardless
            await self.close(message)
            return
        if header.seq != self.clientseq + 1:
            await self.client_error("Invalid seq value (not monotonically increasing)")
            return
        self.clientseq = header.seq
        if header.serverseq > self.seq:
            await self.client_error("Invalid serverseq value")
            return
        if header.id != self.id:
            if self.id != ah.NULL_UUID:
                await self.client_error("Session identifier mismatch")
                return
            self.id = header.id
        if self.timeline is not None:
            self.timeline.note_position(header.position)
        await self.dispatch(message)

    async def dispatch(self, message: ah.ClientMessage) -> None:
        if isinstance(message, ah.Open):
            await self.open(message)
        elif isinstance(message, ah.Ping):
            await self.send("pong", {})  # parameters: none (the reference's PongParameters)
            if message.rtt is not None:
                self.host.metrics.audiohook_rtt.observe(message.rtt)
        elif isinstance(message, ah.Close):
            await self.close(message)
        elif isinstance(message, ah.Paused):
            if self.state == "ACTIVE":
                self.state = "PAUSED"
                if self.source is not None and self.source.pause():
                    self._own_controls += 1
                log.info(
                    "audiohook paused", extra={"session": self.id, "interaction_id": self.interaction_id}
                )
        elif isinstance(message, ah.Resumed):
            if self.state == "PAUSED":
                self.state = "ACTIVE"
                self._paused_audio_logged = False
                if self.source is not None and self.source.resume():
                    self._own_controls += 1
                log.info(
                    "audiohook resumed",
                    extra={
                        "session": self.id,
                        "interaction_id": self.interaction_id,
                        "discarded_s": message.discarded,
                    },
                )
        elif isinstance(message, ah.Update):
            await self.update(message.language)
        elif isinstance(message, ah.Discarded):
            log.info(
                "audiohook audio discarded by the client",
                extra={
                    "session": self.id,
                    "interaction_id": self.interaction_id,
                    "discarded_s": message.discarded,
                },
            )
        elif isinstance(message, ah.ClientError):
            log.warning(
                "audiohook client error",
                extra={"session": self.id, "interaction_id": self.interaction_id, "code": message.code},
            )
            if self.source is not None:
                self.source.error("client_error", f"AudioHook client error {message.code}: {message.message}")

    async def open(self, message: ah.Open) -> None:
        if self.state != "PREPARING":
            log.info("audiohook open ignored", extra={"session": self.id, "state": self.state})
            return
        bound = self.binding.organization
        if bound is not None and message.organization_id.lower() != bound:
            self.state = "ERROR"
            self.host.metrics.audiohook_refused.labels("unauthorized").inc()
            log.info(
                "audiohook refused", extra={"session": self.id, "reason": "key bound to another organization"}
            )
            await self.send(
                "disconnect",
                ah.disconnect_parameters("unauthorized", "This API key is not for this organization"),
            )
            return
        if self.org_header != message.organization_id:
            self.state = "ERROR"
            self.host.metrics.audiohook_refused.labels("unauthorized").inc()
            log.info("audiohook refused", extra={"session": self.id, "reason": "organization mismatch"})
            await self.send(
                "disconnect",
                ah.disconnect_parameters(
                    "unauthorized",
                    'Mismatch between "organizationId" open parameter and '
                    '"audiohook-organization-id" header field',
                ),
            )
            return
        languages = self.endpoint.supported_languages()
        supported = languages if message.supported_languages else None
        self.language = message.language
        media = ah.choose_media(message.media)
        if self.probe or message.conversation_id == ah.NULL_UUID:  # the probe: answer, start no call
            self.state, self.media = "ACTIVE", media
            self.events_allowed.set()
            log.info("audiohook connection probe", extra={"session": self.id})
            await self.send("opened", ah.opened_parameters(media, supported))
            return
        if media is None:
            await self.refuse(
                "no_media",
                f"None of the {message.offered} media offered fits: the worker takes PCMU or L16 at 8000 Hz, "
                "channels external and/or internal",
            )
            return
        custom_id = message.custom_config.get("interaction_id")
        try:
            interaction_id = check_id(
                custom_id if isinstance(custom_id, str) else message.conversation_id, "interaction_id"
            )
            options = CallOptions.from_fields(message.custom_config, "customConfig")
            if options.language is None and message.language is not None:
                options = replace(options, language=message.language)  # `open`'s is the call's
            # The tenant is the key's where ASR_API_KEYS names it, else the Genesys organization.
            key = CallKey(
                self.binding.tenant or check_id(message.organization_id, "organizationId"), interaction_id
            )
        except BadRequest as exc:
            await self.refuse("bad_request", str(exc))
            return
        encoding = Encoding.MULAW if media.format == "PCMU" else Encoding.LINEAR16
        fmt = AudioFormat(encoding, ah.SAMPLE_RATE, len(media.channels))
        try:
            # A session continuing the call (`continuedSessions`) leaves its options as they are.
            source = self.host.manager.join(key, fmt, options=options)
        except SessionRefused as exc:
            await self.refuse(exc.code, exc.message)
            return
        # Subscribe before anything can yield, so a new call's first events are seen.
        self.source, self.media = source, media
        self.key = key
        self.subscription = self.host.hub.subscribe(key)
        self.timeline = _Timeline(fmt, source.runner.status.audio_s)
        self.timeline.note_position(message.header.position)
        self.endpoint.live.setdefault(key, set()).add(self)
        self.state = "ACTIVE"
        self.events_allowed.set()
        await self.send("opened", ah.opened_parameters(media, supported))
        assert self._tg is not None
        self._tg.create_task(self.pump())
        log.info(
            "audiohook session opened",
            extra={
                "session": self.id,
                "interaction_id": interaction_id,
                "format": media.format,
                "channels": ",".join(media.channels),
                "continued": len(message.continued_sessions),
                "keyterms": len(options.keyterms),
                "resumed": source.runner.status.resumed,
            },
        )

    async def update(self, language: str) -> None:
        """`update`: the call's language from now on, answered `updated`; one the provider
        cannot transcribe changes nothing but an `error` event (and is not answered)."""
        refusal = self.endpoint.language_refusal(language)
        if refusal is not None:
            log.warning(
                "audiohook update refused",
                extra={"session": self.id, "interaction_id": self.interaction_id, "language": language},
            )
            if self.source is not None:
                self.source.error("language_unsupported", f"AudioHook update to {language}: {refusal}")
            return
        self.language = language
        if self.source is not None and self.source.attached:
            self.source.switch_language(language)
        log.info(
            "audiohook language updated",
            extra={"session": self.id, "interaction_id": self.interaction_id, "language": language},
        )
        await self.send("updated", {})

    async def refuse(self, code: str, info: str) -> None:
        log.info("audiohook refused", extra={"session": self.id, "reason": code, "detail": info})
        await self.disconnect("error", info)

    async def close(self, message: ah.Close) -> None:
        if self.state in ("CLOSING", "CLOSED"):
            return
        self.state = "CLOSING"
        self.events_allowed.set()
        source = self.source
        if source is not None and source.attached:
            if message.reason == "reconnect":
                source.leave()  # a continuing session joins the call again
                if self.subscription is not None:
                    self.subscription.close()
            else:
                source.end("close")
                try:
                    await asyncio.wait_for(self.ended.wait(), CLOSE_WAIT_S)
                except TimeoutError:
                    log.warning(
                        "audiohook close: the call's last results took too long", extra={"session": self.id}
                    )
        await self.send("closed", {})
        self.state = "CLOSED"
        log.info(
            "audiohook session closed",
            extra={"session": self.id, "interaction_id": self.interaction_id, "reason": message.reason},
        )  # the client closes the socket

    async def audio(self, data: bytes) -> None:
        source, timeline, media = self.source, self.timeline, self.media
        if self.state == "PAUSED" and timeline is not None:
            self.host.metrics.audiohook_paused_audio.inc(len(data) / timeline.bytes_per_second)
            if not self._paused_audio_logged:
                self._paused_audio_logged = True
                log.info("audiohook audio while paused, not sent on", extra={"session": self.id})
            return
        if self.state == "PREPARING":
            await self.client_error(f"Received audio in state {self.state}")
            return
        if source is None or timeline is None or media is None or self.state != "ACTIVE":
            return  # the probe, or audio in flight while the session ends
        width = (1 if media.format == "PCMU" else 2) * len(media.channels)
        if len(data) % width:
            await self.client_error(
                f"Binary data not a valid audio frame: {len(data)} bytes is not whole samples "
                f"of {media.format} x{len(media.channels)}"
            )
            return
        timeline.bytes_in += len(data)
        source.feed(data)

    # --- the call's events out ----------------------------------------------------------------

    async def pump(self) -> None:
        subscription = self.subscription
        assert subscription is not None
        async for event in subscription:
            if isinstance(event, Transcript):
                await self.events_allowed.wait()
                if self.state != "CLOSED":
                    await self.transcript(event)
            elif isinstance(event, Paused | Resumed):
                if self._own_controls:  # this session's client paused or resumed the call itself
                    self._own_controls -= 1
                elif isinstance(event, Paused) and self.state == "ACTIVE":
                    await self.send("pause", {})  # paused elsewhere: Genesys stops sending it too
                elif isinstance(event, Resumed) and self.state == "PAUSED":
                    await self.send("resume", {})
            elif isinstance(event, SessionEnded):
                if self.state in ("ACTIVE", "PAUSED"):
                    normal = event.reason in _NORMAL_ENDS
                    await self.disconnect(
                        "completed" if normal else "error", f"the call ended on the worker ({event.reason})"
                    )
                self.ended.set()
                return

    async def transcript(self, event: Transcript) -> None:
        timeline = self.timeline
        if not event.text or timeline is None:
            return
        utterance = self._utterances.get(event.channel) or ah.new_id()
        if event.is_final:
            self._utterances.pop(event.channel, None)
        else:
            self._utterances[event.channel] = utterance
        start = timeline.stream_time(event.start)
        tokens = [
            ah.Token(
                w.punctuated_word or w.word,
                w.confidence,
                timeline.stream_time(w.start),
                max(0.0, timeline.stream_time(w.end, end=True) - timeline.stream_time(w.start)),
            )
            for w in event.words
        ]
        entity = ah.transcript_entity(
            utterance_id=utterance,
            channel_id=event.channel,
            is_final=event.is_final,
            offset=start,
            duration=max(0.0, timeline.stream_time(event.end, end=True) - start),
            text=event.text,
            confidence=event.confidence,
            tokens=tokens,
            language=event.language or self.language,
        )
        with contextlib.suppress(ConnectionError):
            await self.send("event", {"entities": [entity]})
