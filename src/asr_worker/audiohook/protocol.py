"""AudioHook v2 messages (developer.genesys.cloud/devapps/audiohook), typed.

The client (Genesys Cloud) sends JSON text messages `open`, `ping`, `paused`, `resumed`,
`discarded`, `update`, `error`, `close`, and binary audio; the server answers `opened`, `pong`,
`updated`, `closed`, and may send `pause`, `resume`, `event`, `disconnect`, `reconnect`.
Every message carries `version: "2"`, the session `id`, its sender's `seq` (1, 2, 3, ...) and
the last `seq` it saw from the other side (`serverseq` from the client, `clientseq` from the
server); a client message also carries `position`, how far its audio stream has got, as an
ISO-8601 duration (`PT12.34S`).

`parse_client_message` is pure, text in, one message or a `ProtocolError` out (with a reason
short enough for a `disconnect`'s `info`), so it can be fuzzed without a socket. It checks what
the reference implementation's validators check, with two allowances: an `open` may offer media
the worker does not know (another rate, another format), which are skipped, not fatal; and its
`participant` need only be an object (the worker does not use the caller's number).

The client's side is here too, for a client that plays a call into the worker (`asr-worker
stream --protocol audiohook`): `client_message` and `open_parameters` write what Genesys
sends, `parse_server_message` and `transcripts_in` read what the server answers.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from ..errors import ProtocolError

VERSION: Final = "2"
NULL_UUID: Final = "00000000-0000-0000-0000-000000000000"
MAX_TEXT_CHARS: Final = 65535  # the reference refuses longer text messages, both ways

_UUID: Final = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000)$"
)
_DURATION: Final = re.compile(r"^PT(\d+\.\d*|\.?\d+)S$")
_LANGUAGE: Final = re.compile(r"^[a-z]{2,3}-[A-Za-z]{2,3}$")
_MAX_SEQ: Final = 2**53 - 1  # JSON numbers the client can count to exactly
_MAX_OFFERS: Final = 16
_MAX_CONTINUED: Final = 16

CloseReason = Literal["end", "error", "disconnect", "reconnect"]
DisconnectReason = Literal["completed", "unauthorized", "error"]
CLOSE_REASONS: Final = ("end", "error", "disconnect", "reconnect")
CLIENT_TYPES: Final = ("open", "ping", "paused", "resumed", "discarded", "update", "error", "close")
CHANNELS: Final = ("external", "internal")


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


def parse_duration(value: object) -> float:
    """`PT1.23S` to seconds; ProtocolError if it is not one."""
    match = _DURATION.match(value) if isinstance(value, str) and len(value) <= 40 else None
    if match is None:
        raise ProtocolError("bad_message", f"not a duration: {str(value)[:40]!r}")
    seconds = float(match.group(1))
    if seconds >= 2**53 / 1e9:
        raise ProtocolError("bad_message", "duration too large")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as the protocol's duration, to the millisecond: 1.5 -> `PT1.5S`, 0 -> `PT0S`."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return f"PT{text or '0'}S"


# --- what the client sends ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaOffer:
    format: Literal["PCMU", "L16"]
    rate: int
    channels: tuple[str, ...]  # each "external" or "internal"

    def wire(self) -> dict[str, object]:
        return {"type": "audio", "format": self.format, "channels": list(self.channels), "rate": self.rate}


@dataclass(frozen=True, slots=True)
class ContinuedSession:
    id: str
    serverseq: int
    clientseq: int


@dataclass(frozen=True, slots=True)
class Header:
    """What every client message carries."""

    id: str
    seq: int
    serverseq: int
    position: float  # seconds


@dataclass(frozen=True, slots=True)
class Open:
    header: Header
    organization_id: str
    conversation_id: str
    participant_id: str | None
    media: tuple[MediaOffer, ...]  # the offers the worker can read, in the client's order
    offered: int  # how many offers there were, readable or not
    language: str | None = None
    supported_languages: bool = False
    continued_sessions: tuple[ContinuedSession, ...] = ()
    custom_config: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ping:
    header: Header
    rtt: float | None = None  # seconds, the client's last measured round trip


@dataclass(frozen=True, slots=True)
class Paused:
    header: Header


@dataclass(frozen=True, slots=True)
class Resumed:
    header: Header
    start: float
    discarded: float


@dataclass(frozen=True, slots=True)
class Discarded:
    header: Header
    start: float
    discarded: float


@dataclass(frozen=True, slots=True)
class Update:
    header: Header
    language: str


@dataclass(frozen=True, slots=True)
class ClientError:
    header: Header
    code: int
    message: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Close:
    header: Header
    reason: str  # one of CLOSE_REASONS


ClientMessage = Open | Ping | Paused | Resumed | Discarded | Update | ClientError | Close


def parse_client_message(text: str) -> ClientMessage:
    """One client text message; raises ProtocolError with a reason."""
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError("bad_message", f"Text message too large (>64K). Length: {len(text)}")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", "Text message not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_message", "Message not a well-formed client message")
    header = _header(body)
    kind = body["type"]
    params: dict[str, object] = body["parameters"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError(
            "bad_message", f"Invalid Message: '{kind[:40]}' is not a supported client message"
        )
    try:
        return _parse_parameters(kind, header, params)
    except ProtocolError as exc:
        raise ProtocolError(
            "bad_message", f"Invalid Message: Invalid/missing parameters of '{kind}' ({exc.message})"
        ) from None


def _header(body: dict[str, object]) -> Header:
    kind, params = body.get("type"), body.get("parameters")
    if (
        body.get("version") != VERSION
        or not is_uuid(body.get("id"))
        or not isinstance(kind, str)
        or not isinstance(params, dict)
    ):
        raise ProtocolError("bad_message", "Message not a well-formed client message")
    seq, serverseq = body.get("seq"), body.get("serverseq")
    if not _is_seq(seq) or not _is_seq(serverseq):
        raise ProtocolError("bad_message", "Message not a well-formed client message")
    try:
        position = parse_duration(body.get("position"))
    except ProtocolError:
        raise ProtocolError("bad_message", "Message not a well-formed client message") from None
    assert isinstance(seq, int) and isinstance(serverseq, int)
    return Header(str(body["id"]), seq, serverseq, position)


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_SEQ


def _parse_parameters(kind: str, header: Header, params: dict[str, object]) -> ClientMessage:
    if kind == "ping":
        rtt = params.get("rtt")
        return Ping(header, None if rtt is None else parse_duration(rtt))
    if kind == "paused":
        return Paused(header)
    if kind in ("resumed", "discarded"):
        start, discarded = parse_duration(params.get("start")), parse_duration(params.get("discarded"))
        return Resumed(header, start, discarded) if kind == "resumed" else Discarded(header, start, discarded)
    if kind == "update":
        return Update(header, _language(params.get("language")))
    if kind == "error":
        code, message = params.get("code"), params.get("message")
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code < 10000:
            raise ProtocolError("bad_message", "`code` must be a number from 400")
        if not isinstance(message, str):
            raise ProtocolError("bad_message", "`message` must be a string")
        retry = params.get("retryAfter")
        return ClientError(header, code, message[:500], None if retry is None else parse_duration(retry))
    if kind == "close":
        reason = params.get("reason")
        if reason not in CLOSE_REASONS:
            raise ProtocolError("bad_message", f"`reason` must be one of {', '.join(CLOSE_REASONS)}")
        return Close(header, str(reason))
    return _open(header, params)


def _language(value: object) -> str:
    if not isinstance(value, str) or _LANGUAGE.match(value) is None:
        raise ProtocolError("bad_message", "`language` must be a language code such as en-US")
    return value


def _open(header: Header, params: dict[str, object]) -> Open:
    organization_id, conversation_id = params.get("organizationId"), params.get("conversationId")
    if not is_uuid(organization_id) or not is_uuid(conversation_id):
        raise ProtocolError("bad_message", "`organizationId` and `conversationId` must be UUIDs")
    participant = params.get("participant")
    if not isinstance(participant, dict):
        raise ProtocolError("bad_message", "`participant` must be an object")
    participant_id = participant.get("id")
    media = params.get("media")
    if not isinstance(media, list):
        raise ProtocolError("bad_message", "`media` must be a list")
    offers = tuple(offer for offer in (_offer(item) for item in media[:_MAX_OFFERS]) if offer is not None)
    language = params.get("language")
    supported = params.get("supportedLanguages", False)
    if not isinstance(supported, bool):
        raise ProtocolError("bad_message", "`supportedLanguages` must be true or false")
    custom = params.get("customConfig", {})
    if not isinstance(custom, dict):
        raise ProtocolError("bad_message", "`customConfig` must be an object")
    return Open(
        header=header,
        organization_id=str(organization_id),
        conversation_id=str(conversation_id),
        participant_id=str(participant_id) if is_uuid(participant_id) else None,
        media=offers,
        offered=len(media),
        language=None if language is None else _language(language),
        supported_languages=supported,
        continued_sessions=_continued(params.get("continuedSessions")),
        custom_config=custom,
    )


def _offer(item: object) -> MediaOffer | None:
    """One media offer the worker can read, or None for one it cannot (skipped)."""
    if not isinstance(item, dict) or item.get("type") != "audio":
        return None
    fmt, rate, channels = item.get("format"), item.get("rate"), item.get("channels")
    if fmt not in ("PCMU", "L16") or not isinstance(rate, int) or isinstance(rate, bool):
        return None
    if not isinstance(channels, list) or not 1 <= len(channels) <= 2:
        return None
    if any(c not in CHANNELS for c in channels) or len(set(channels)) != len(channels):
        return None
    return MediaOffer("PCMU" if fmt == "PCMU" else "L16", rate, tuple(str(c) for c in channels))


def _continued(value: object) -> tuple[ContinuedSession, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProtocolError("bad_message", "`continuedSessions` must be a list")
    out: list[ContinuedSession] = []
    for item in value[:_MAX_CONTINUED]:
        if (
            not isinstance(item, dict)
            or not is_uuid(item.get("id"))
            or not _is_seq(item.get("serverseq"))
            or not _is_seq(item.get("clientseq"))
        ):
            raise ProtocolError(
                "bad_message", "`continuedSessions` entries need `id`, `serverseq` and `clientseq`"
            )
        out.append(ContinuedSession(str(item["id"]), int(item["serverseq"]), int(item["clientseq"])))
    return tuple(out)


# --- media choice ------------------------------------------------------------------------------

# Both parties in one stereo stream first, then the customer alone, then the agent alone.
_CHANNEL_PREFERENCE: Final = (("external", "internal"), ("external",), ("internal",))
SAMPLE_RATE: Final = 8000


def choose_media(offers: Sequence[MediaOffer]) -> MediaOffer | None:
    """The offer the worker takes: 8 kHz PCMU or L16, both parties in one stereo stream
    (`external` first) if offered, else one party; the client's order among equals. None when
    nothing fits."""
    for channels in _CHANNEL_PREFERENCE:
        for offer in offers:
            if offer.rate == SAMPLE_RATE and offer.channels == channels:
                return offer
    return None


# --- what the server sends ---------------------------------------------------------------------


def server_message(
    kind: str, session_id: str, seq: int, clientseq: int, parameters: Mapping[str, object]
) -> str:
    """One server text message."""
    return json.dumps(
        {
            "version": VERSION,
            "id": session_id,
            "type": kind,
            "seq": seq,
            "clientseq": clientseq,
            "parameters": dict(parameters),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def opened_parameters(
    media: MediaOffer | None, supported_languages: Sequence[str] | None
) -> dict[str, object]:
    out: dict[str, object] = {"media": [] if media is None else [media.wire()], "startPaused": False}
    if supported_languages is not None:
        out["supportedLanguages"] = list(supported_languages)
    return out


def disconnect_parameters(reason: DisconnectReason, info: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"reason": reason}
    if info:
        out["info"] = info[:500]
    return out


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    confidence: float
    offset: float  # seconds in the session's stream
    duration: float


def transcript_entity(
    *,
    utterance_id: str,
    channel_id: int,
    is_final: bool,
    offset: float,
    duration: float,
    text: str,
    confidence: float,
    tokens: Sequence[Token],
    language: str | None,
) -> dict[str, object]:
    """A `transcript` event entity, shaped as the reference's `entities-transcript.ts`."""
    alternative: dict[str, object] = {"confidence": _unit(confidence)}
    if language:
        alternative["languages"] = [language]
    alternative["interpretations"] = [
        {
            "type": "display",
            "transcript": text,
            "tokens": [
                {
                    "type": "word",
                    "value": t.value,
                    "confidence": _unit(t.confidence),
                    "offset": format_duration(t.offset),
                    "duration": format_duration(t.duration),
                }
                for t in tokens
            ],
        }
    ]
    return {
        "type": "transcript",
        "data": {
            "id": utterance_id,
            "channelId": channel_id,
            "isFinal": is_final,
            "offset": format_duration(offset),
            "duration": format_duration(duration),
            "alternatives": [alternative],
        },
    }


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)


def new_id() -> str:
    return str(uuid.uuid4())


# --- the client's side ---------------------------------------------------------------------------


def client_message(
    kind: str, session_id: str, seq: int, serverseq: int, position_s: float, parameters: Mapping[str, object]
) -> str:
    """One client text message: its `seq`, the last server `seq` seen, and how far the audio
    stream has got."""
    return json.dumps(
        {
            "version": VERSION,
            "id": session_id,
            "type": kind,
            "seq": seq,
            "serverseq": serverseq,
            "position": format_duration(position_s),
            "parameters": dict(parameters),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def open_parameters(
    organization_id: str,
    conversation_id: str,
    media: Sequence[MediaOffer],
    custom_config: Mapping[str, object],
    language: str = "en-US",
) -> dict[str, object]:
    """`open`'s parameters, as Genesys sends them for a call it starts monitoring."""
    return {
        "organizationId": organization_id,
        "conversationId": conversation_id,
        "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
        "media": [offer.wire() for offer in media],
        "language": language,
        "customConfig": dict(custom_config),
    }


@dataclass(frozen=True, slots=True)
class ServerMessage:
    type: str
    seq: int
    clientseq: int
    parameters: Mapping[str, object]


def parse_server_message(text: str) -> ServerMessage:
    """One server text message; ProtocolError if it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        raise ProtocolError("bad_message", "a server message that is not JSON") from None
    if not isinstance(body, dict) or body.get("version") != VERSION or not isinstance(body.get("type"), str):
        raise ProtocolError("bad_message", "not an AudioHook v2 message")
    seq, clientseq, parameters = body.get("seq"), body.get("clientseq"), body.get("parameters", {})
    if not isinstance(seq, int) or not isinstance(clientseq, int) or not isinstance(parameters, dict):
        raise ProtocolError("bad_message", f"{str(body['type'])[:20]}: bad seq, clientseq or parameters")
    if not (_is_seq(seq) and _is_seq(clientseq)):
        raise ProtocolError("bad_message", f"{str(body['type'])[:20]}: seq or clientseq out of range")
    return ServerMessage(str(body["type"]), seq, clientseq, parameters)


@dataclass(frozen=True, slots=True)
class TranscriptEntity:
    """A `transcript` entity of an `event`, as read back: its channel, whether final, its span
    (seconds of the session's stream), the best alternative's text and confidence."""

    channel_id: int
    is_final: bool
    offset: float
    duration: float
    text: str
    confidence: float


def transcripts_in(parameters: Mapping[str, object]) -> list[TranscriptEntity]:
    """The transcript entities of an `event`'s parameters; ProtocolError for a malformed one."""
    entities = parameters.get("entities")
    out: list[TranscriptEntity] = []
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict) or entity.get("type") != "transcript":
            continue
        data = entity.get("data")
        try:
            if not isinstance(data, dict):
                raise TypeError("no data")
            best = data["alternatives"][0]
            display = best["interpretations"][0]
            out.append(
                TranscriptEntity(
                    channel_id=int(data["channelId"]),
                    is_final=bool(data["isFinal"]),
                    offset=parse_duration(data["offset"]),
                    duration=parse_duration(data["duration"]),
                    text=str(display["transcript"]),
                    confidence=float(best.get("confidence", 0.0)),
                )
            )
        except (KeyError, IndexError, TypeError, ValueError, ProtocolError):
            raise ProtocolError("bad_message", "event: a transcript entity without its fields") from None
    return out
