"""What the Twilio and Exotel endpoints share: one media-stream socket feeding one call.

The socket says `start` (which call, which format, which tracks), then `media` until `stop`.
The worker sends nothing back. `stop` ends the call; a socket that drops
without `stop` only detaches, so the session waits `ASR_SESSION_GRACE_S` for the same call to
come back, and a new socket for it continues the same session on the same provider connection.

A call's expected words (its keyterms, for every provider stream it opens) are the custom
parameters `keyterm` (one term) and `keyterms` (comma-separated: a platform gives one value
per name), held to the Deepgram protocol's keyterm limits.

Bad input never crashes anything: before `start` there is no call to tell, so the worker logs
one line and closes the socket with a reason; after it, the problem becomes an `error` event
for the call's watchers and the stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from ..core.audio import AudioFormat
from ..core.call_options import CallOptions
from ..core.ids import CallKey, check_id
from ..core.session import Phase
from ..errors import AccessDenied, BadRequest, ProtocolError, SessionRefused
from ..http.auth import principal_of
from ..runtime.source import CallSource
from ..tenancy import Principal
from .common import (
    CLOSE_BAD_INPUT,
    CLOSE_NORMAL,
    REFUSAL_CLOSE_CODES,
    close_reason,
    first_within,
    upgrade_refusal,
)
from .host import CallHost
from .interleave import TrackInterleaver
from .reorder import ChunkReorder
from .telephony_messages import Clear, Connected, Dtmf, Mark, Media, Message, Start, Stop

log = logging.getLogger("asr_worker.telephony")

CLOSE_GOING_AWAY: Final = int(WSCloseCode.GOING_AWAY)


@dataclass(frozen=True, slots=True)
class Platform:
    name: str  # "twilio", "exotel": metric label and log field
    parse: Callable[[str], Message]
    max_message_chars: int
    channel_of_track: Mapping[str, int]  # track name -> channel (inbound 0 = customer, outbound 1 = agent)
    end_reason: str = "stop"  # the reason a call ends with on the platform's `stop`
    close_ends_call: bool = False  # the platform's close frame is its end of call (it sends no `stop`)
    reorder_frames: int = 0  # media may come out of order: hold up to this many per track (by chunk)
    epoch_timestamps: bool = False  # media timestamps are wall-clock ms, not ms from the stream's start
    # For a platform whose `start` names no tracks: the stream URL's `?track=` values and the
    # tracks each means (without one, the inbound track alone).
    url_tracks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _event_name(message: Message) -> str:
    return type(message).__name__.lower()


_URL_PARAMETERS: Final = frozenset({"interaction_id", "tenant_id", "keyterm", "keyterms", "track"})


async def media_stream(host: CallHost, request: web.Request, platform: Platform) -> web.StreamResponse:
    """Serve one telephony media-stream WebSocket until `stop` or the socket goes away."""
    # aiohttp refuses (and closes with 1009) a message over this; the parser has tighter limits.
    ws = web.WebSocketResponse(max_msg_size=platform.max_message_chars * 4, heartbeat=None)
    refusal = upgrade_refusal(request, ws, host.draining)
    if refusal is not None:
        return refusal
    await ws.prepare(request)
    # Parameters on the socket's URL (`?interaction_id=...`), for platforms whose users set
    # them there: the `start` message's custom parameters win where both name one.
    url_params = {k: v for k, v in request.query.items() if k in _URL_PARAMETERS}
    stream = _MediaStream(host, ws, platform, url_params, principal_of(request))
    try:
        await stream.run()
    finally:
        stream.release()
    return ws


class _MediaStream:
    def __init__(
        self,
        host: CallHost,
        ws: web.WebSocketResponse,
        platform: Platform,
        url_params: dict[str, str],
        principal: Principal,
    ) -> None:
        self._host = host
        self._principal = principal  # whose calls this stream may open: its key's tenant
        self._url_params = url_params
        self._ws = ws
        self._platform = platform
        self._messages = host.metrics.telephony_messages
        self._source: CallSource | None = None
        self._fmt: AudioFormat | None = None
        self._interleaver: TrackInterleaver | None = None
        self._stream_sid: str | None = None
        self._filled_samples = 0
        self._pending_s = 0.0
        self._reorder: dict[str, ChunkReorder[Media]] = {}
        self._first_timestamp_ms: int | None = None

    async def run(self) -> None:
        async for msg in first_within(self._ws, self._host, with_close=self._platform.close_ends_call):
            if msg.type is WSMsgType.CLOSE:
                await self._closed_by_platform()
                return
            if msg.type is WSMsgType.TEXT:
                try:
                    message = self._platform.parse(msg.data)
                except ProtocolError as exc:
                    self._messages.labels(self._platform.name, "invalid").inc()
                    if await self._problem(exc.code, exc.message):
                        return
                    continue
                self._messages.labels(self._platform.name, _event_name(message)).inc()
                if await self._handle(message):
                    return
            elif msg.type is WSMsgType.BINARY:
                if await self._problem(
                    "bad_message", "binary messages are not part of this protocol; ignored"
                ):
                    return
            elif msg.type is WSMsgType.ERROR:
                failure = self._ws.exception()
                too_big = getattr(failure, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
                await self._problem(
                    "too_large" if too_big else "bad_message",
                    f"the socket failed: {failure!s:.200}",
                    fatal=True,
                )
                return

    def release(self) -> None:
        """The socket is gone (after `stop`, or dropped): hand over what is buffered, detach."""
        source = self._source
        if source is None or not source.attached:
            return
        for track, waiting in self._reorder.items():
            for media in waiting.flush():
                self._take(media, self._platform.channel_of_track.get(track, 0))
        if self._interleaver is not None:
            self._feed(self._interleaver.flush())
            self._account()
        source.leave()
        metric = self._host.metrics.telephony_pending.labels(self._platform.name)
        metric.dec(self._pending_s)
        self._pending_s = 0.0

    # --- messages --------------------------------------------------------------------------

    async def _handle(self, message: Message) -> bool:
        """Act on one message; True when the socket is done."""
        if isinstance(message, Media):
            return await self._media(message)
        if isinstance(message, Start):
            return await self._start(message)
        if isinstance(message, Stop):
            return await self._stop(message)
        if isinstance(message, Connected):
            return False
        if self._source is None:
            return await self._problem("bad_message", f"`{_event_name(message)}` before `start`")
        if isinstance(message, Dtmf):
            # Twilio names a DTMF's track `inbound_track`; a media's, `inbound`.
            track = (message.track or "inbound").removesuffix("_track")
            self._source.dtmf(message.digit, self._platform.channel_of_track.get(track, 0))
        elif isinstance(message, Mark | Clear):
            log.debug(
                "telephony control message",
                extra={"platform": self._platform.name, "event": _event_name(message)},
            )
        return False

    async def _start(self, start: Start) -> bool:
        if self._source is not None:
            self._source.error("bad_message", "a second `start` on one stream; ignored")
            return False
        params = {**self._url_params, **start.custom_parameters}
        try:
            interaction_id = check_id(params.get("interaction_id") or start.call_sid, "interaction_id")
            key = CallKey(self._principal.tenant_of_call(params.get("tenant_id")), interaction_id)
            options = CallOptions.from_parameters(params)
        except (BadRequest, AccessDenied) as exc:
            return await self._problem(exc.code, exc.message)
        channel_map = self._platform.channel_of_track
        tracks = start.tracks or self._platform.url_tracks.get(params.get("track") or "", ())
        if not tracks and params.get("track"):
            choices = ", ".join(self._platform.url_tracks)
            return await self._problem("bad_message", f"?track= must be one of {choices}")
        start = replace(start, tracks=tracks or ("inbound",))
        channels = 1 + max(channel_map.get(t, 0) for t in start.tracks)
        fmt = AudioFormat(start.fmt.encoding, start.fmt.sample_rate, channels)
        try:
            # A socket continuing a call under way leaves its options as they are.
            source = self._host.manager.join(key, fmt, options=options)
        except SessionRefused as exc:
            log.info(
                "telephony stream refused",
                extra={"platform": self._platform.name, "interaction_id": interaction_id, "reason": exc.code},
            )
            await self._close(REFUSAL_CLOSE_CODES.get(exc.code, CLOSE_BAD_INPUT), exc.message)
            return True
        self._source, self._fmt, self._stream_sid = source, fmt, start.stream_sid
        if channels == 2:
            self._interleaver = TrackInterleaver(
                start.fmt, max_lag_ms=self._host.manager.config.max_buffer_ms
            )
            metrics = self._host.metrics  # the series exist (at 0) from the first two-track call on
            metrics.telephony_silence.labels(self._platform.name)
            metrics.telephony_pending.labels(self._platform.name)
        log.info(
            "telephony stream started",
            extra={
                "platform": self._platform.name,
                "interaction_id": interaction_id,
                "stream_sid": start.stream_sid,
                "tracks": ",".join(start.tracks),
                "encoding": str(fmt.encoding),
                "sample_rate": fmt.sample_rate,
                "channels": channels,
                "keyterms": len(options.keyterms),
                "resumed": source.runner.status.resumed,
            },
        )
        return False

    async def _media(self, media: Media) -> bool:
        source, fmt = self._source, self._fmt
        if source is None or fmt is None:
            return await self._problem("bad_message", "`media` before `start`")
        status = source.runner.status
        if status.phase is not Phase.ACTIVE:
            # The call ended without this socket's `stop` (shutdown, a provider that refused it):
            # close rather than answer every 20 ms message with an error.
            going_away = self._host.draining or status.end_reason == "shutdown"
            await self._close(CLOSE_GOING_AWAY if going_away else CLOSE_NORMAL, "the call has ended")
            return True
        channel = self._platform.channel_of_track.get(media.track, -1)
        if not 0 <= channel < fmt.channels:
            source.error(
                "bad_message", f"media for track {media.track!r}, which `start` did not announce; dropped"
            )
            return False
        if self._platform.reorder_frames:
            waiting = self._reorder.get(media.track)
            if waiting is None:
                waiting = self._reorder[media.track] = ChunkReorder(self._platform.reorder_frames)
            before = (waiting.held, waiting.late, waiting.skipped, waiting.duplicates)
            for due in waiting.push(media.chunk, media):
                self._take(due, channel)
            after = (waiting.held, waiting.late, waiting.skipped, waiting.duplicates)
            if after != before:
                counter = self._host.metrics.telephony_reordered
                for outcome, old, new in zip(
                    ("held", "late", "skipped", "duplicate"), before, after, strict=True
                ):
                    if new > old:
                        counter.labels(self._platform.name, outcome).inc(new - old)
            return False
        self._take(media, channel)
        return False

    def _take(self, media: Media, channel: int) -> None:
        """One track's media, in order, into the call (interleaved with the other track's)."""
        source, fmt = self._source, self._fmt
        if source is None or fmt is None:
            return
        if self._interleaver is None:
            source.feed(media.payload)
            return
        if len(media.payload) % fmt.bytes_per_sample:
            source.error(
                "bad_audio", f"a payload of {len(media.payload)} bytes is not whole samples; dropped"
            )
            return
        timestamp_ms = media.timestamp_ms
        if timestamp_ms is not None and self._platform.epoch_timestamps:
            # Wall-clock ms: counted from the stream's first media message instead.
            if self._first_timestamp_ms is None:
                self._first_timestamp_ms = timestamp_ms
            timestamp_ms = max(0, timestamp_ms - self._first_timestamp_ms)
        self._feed(self._interleaver.push(channel, media.payload, timestamp_ms))
        self._account()

    async def _stop(self, stop: Stop) -> bool:
        source = self._source
        if source is None:
            log.info("telephony stream stopped before start", extra={"platform": self._platform.name})
            await self._close(CLOSE_NORMAL, "stop")
            return True
        self.release()
        source.end(self._platform.end_reason)
        log.info(
            "telephony stream stopped",
            extra={
                "platform": self._platform.name,
                "interaction_id": source.interaction_id,
                "reason": stop.reason,
            },
        )
        await self._close(CLOSE_NORMAL, "stop")
        return True

    async def _closed_by_platform(self) -> None:
        """The platform closed the socket, its way of saying the call is over (it sends no `stop`)."""
        source = self._source
        if source is None:
            log.info("telephony stream closed before start", extra={"platform": self._platform.name})
            return
        self.release()
        source.end(self._platform.end_reason)
        log.info(
            "telephony stream stopped",
            extra={
                "platform": self._platform.name,
                "interaction_id": source.interaction_id,
                "reason": "close",
            },
        )

    # --- helpers ---------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if data and self._source is not None:
            self._source.feed(data)

    def _account(self) -> None:
        """Move the interleaver's silence and pending figures into the metrics."""
        interleaver = self._interleaver
        if interleaver is None or self._fmt is None:
            return
        metrics = self._host.metrics
        filled = interleaver.stats.silence_filled_samples
        if filled > self._filled_samples:
            metrics.telephony_silence.labels(self._platform.name).inc(
                (filled - self._filled_samples) / self._fmt.sample_rate
            )
            self._filled_samples = filled
        pending_s = interleaver.pending_ms / 1000
        if pending_s != self._pending_s:
            metrics.telephony_pending.labels(self._platform.name).inc(pending_s - self._pending_s)
            self._pending_s = pending_s

    async def _problem(self, code: str, message: str, *, fatal: bool = False) -> bool:
        """Bad input. With a call: an `error` event to its watchers (and go on unless fatal).
        Without: one log line and a close that says why. True when the socket is done."""
        if self._source is not None:
            self._source.error(code, message)
            if fatal:
                await self._close(CLOSE_BAD_INPUT, message)
            return fatal
        log.info(
            "telephony stream refused",
            extra={"platform": self._platform.name, "code": code, "reason": message},
        )
        await self._close(CLOSE_BAD_INPUT, message)
        return True

    async def _close(self, code: int, reason: str) -> None:
        if not self._ws.closed:
            await self._ws.close(code=code, message=close_reason(reason))
