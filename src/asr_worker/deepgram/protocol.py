"""Deepgram's live `/v1/listen` protocol as data: both ends of asr-worker speak it from here.

Read from Deepgram's API reference (AsyncAPI spec of listen.v1), the official Python SDK's
generated types (deepgram-sdk 7.x) and recorded real responses. The client
(`providers.deepgram`) parses what a server sends with `parse_server_message`; the server
(`dgserver`) builds what it sends with the `*_message` builders, so the two can be tested
against each other and against the official SDK.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .. import jsonwire
from ..core.call_options import (
    ENDPOINTING_OFF,
    NO_FORMAT,
    CallOptions,
    FormatOptions,
    check_language,
)
from ..core.provider_events import (
    Entity,
    ProviderEvent,
    SearchHit,
    SearchResult,
    SpeechStarted,
    StreamMetadata,
    TranscriptResult,
    UtteranceEnd,
    Word,
)
from ..errors import ParamError, ProtocolViolation

LISTEN_PATH: Final = "/v1/listen"

# Client text messages. JSON, parsed (not compared) by a server; the SDK sends exactly these.
KEEPALIVE: Final = '{"type": "KeepAlive"}'
FINALIZE: Final = '{"type": "Finalize"}'
CLOSE_STREAM: Final = '{"type": "CloseStream"}'
CONFIGURE: Final = "Configure"  # mid-stream: new keyterms, formatting features on or off

# Close codes and the reasons Deepgram gives with them.
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_ABNORMAL: Final = 1006  # no close frame: the TCP connection just ended
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011
NET0001_REASON: Final = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)
NET0000_REASON: Final = (
    "Deepgram did not provide a response message within the timeout window. See https://dpgr.am/net0000"
)
DATA0000_REASON: Final = "The payload cannot be decoded as audio. See https://dpgr.am/data0000"

# Close codes after which the same request cannot succeed by retrying it: the server refused
# what was sent (1008 DATA-0000 undecodable audio: the replay would be the same audio), the
# frames were malformed (1002, 1007) or too big (1009), or the data type was wrong (1003).
NON_RETRYABLE_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1008, 1009, 1010})

# Handshake refusals that a retry cannot fix: bad request, bad key, no credit, not allowed.
NON_RETRYABLE_STATUSES: Final = frozenset({400, 401, 402, 403, 404, 405, 410, 413, 414, 415, 422})

RAW_ENCODINGS: Final = frozenset({"linear16", "mulaw", "alaw"})

# Bounds on what a server message may say: no stream lasts 100 days, no call has a million
# speakers. Beyond them a message is not valid protocol (and would overflow the core's
# arithmetic: times become byte offsets).
MAX_STREAM_S: Final = 1e7
MAX_SPEAKERS: Final = 1_000_000
MAX_LANGUAGE_CHARS: Final = 35  # a language code (BCP 47), as a result names it
MAX_LISTED: Final = 100  # languages, search terms, hits or entities read from one result
MAX_FIELD_CHARS: Final = 2048  # a search snippet, an entity's value
MAX_TAGS: Final = 50
MAX_TAG_CHARS: Final = 128  # Deepgram's limit on a tag
MAX_EXTRA_CHARS: Final = 2048  # Deepgram's limit on an extra key:value
DIARIZE_MODELS: Final = ("v1", "latest")  # diarize_model values Deepgram takes on a stream


# --- query parameters ----------------------------------------------------------------------


def format_bool(value: bool) -> str:
    """Deepgram wants lowercase booleans; Python's str() would say True/False."""
    return "true" if value else "false"


def parse_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ParamError(f"{name} must be true or false, not {text[:20]!r}")


DEFAULT_MODEL: Final = "nova-3"  # what the worker asks for, and what a server assumes unasked
DEFAULT_LANGUAGE: Final = "en-US"


@dataclass(frozen=True, slots=True)
class ListenParams:
    """The query of a live request: what the worker asks for, and what a server parses."""

    encoding: str = "linear16"
    sample_rate: int = 8000
    channels: int = 1
    model: str = DEFAULT_MODEL
    language: str = DEFAULT_LANGUAGE
    interim_results: bool = True
    punctuate: bool = True
    smart_format: bool = False
    endpointing_ms: int | None = 300  # None: endpointing=false
    utterance_end_ms: int | None = 1000  # None: not sent (needs interim_results)
    vad_events: bool = True
    # Words the call is expected to use: Deepgram's `keyterm` (Nova-3) and `keywords` (earlier
    # models, `word:boost`; the boost is Deepgram's own and dropped here), repeated per term.
    keyterms: tuple[str, ...] = ()
    # What to redact (`redact`, repeated): Deepgram's values, read as every route reads them.
    redact: tuple[str, ...] = ()
    # What a server reads besides (the worker sends these per call, providers/deepgram.py):
    # the formatting options with Deepgram's defaults, `tag`s, `extra` key-values (the last
    # value of a key wins), and `diarize` (a two-channel stream's sides as its speakers).
    format: FormatOptions = NO_FORMAT
    tags: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    diarize: bool = False

    @property
    def multichannel(self) -> bool:
        """Each channel transcribed on its own (a call's two sides), never mixed."""
        return self.channels > 1

    def query(self) -> list[tuple[str, str]]:
        pairs = [
            ("encoding", self.encoding),
            ("sample_rate", str(self.sample_rate)),
            ("channels", str(self.channels)),
        ]
        if self.multichannel:
            pairs.append(("multichannel", "true"))
        pairs += [
            ("model", self.model),
            ("language", self.language),
            ("interim_results", format_bool(self.interim_results)),
            ("punctuate", format_bool(self.punctuate)),
            ("smart_format", format_bool(self.smart_format)),
            ("endpointing", "false" if self.endpointing_ms is None else str(self.endpointing_ms)),
        ]
        if self.utterance_end_ms is not None:
            pairs.append(("utterance_end_ms", str(self.utterance_end_ms)))
        pairs.append(("vad_events", format_bool(self.vad_events)))
        pairs += [("keyterm", term) for term in self.keyterms]
        pairs += [("redact", value) for value in self.redact]
        return pairs

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListenParams:
        """What a server makes of a request's query; Deepgram's defaults where a key is absent.
        Raises ParamError naming the first bad parameter, or an option it cannot honour and
        why. Unknown keys are ignored."""
        encoding = query.get("encoding", "").strip().lower()
        if encoding not in RAW_ENCODINGS:
            shown = repr(encoding[:20]) if encoding else "missing"
            raise ParamError(f"encoding must be one of linear16, mulaw, alaw for raw audio ({shown})")
        sample_rate = _int_param(query, "sample_rate", None, 8000, 48000)
        channels = _int_param(query, "channels", 1, 1, 2)
        multichannel = parse_bool(query.get("multichannel", "false"), "multichannel")
        if channels > 1 and not multichannel:
            raise ParamError("channels=2 needs multichannel=true here: the two sides are never mixed")
        options = CallOptions.from_query(query)
        endpointing = 10 if options.endpointing_ms is None else options.endpointing_ms  # Deepgram's default
        diarize = _diarize(query, channels)
        if parse_bool(query.get("detect_entities", "false"), "detect_entities"):
            raise ParamError(
                "detect_entities is not offered here: finding names, places and organisations needs an "
                "entity model this server does not have"
            )
        language = check_language(query.get("language"), "language") or "en"
        for hint in (value for key, value in query.items() if key == "language_hint"):
            if hint.strip().split("-")[0].lower() != language.split("-")[0].lower():
                raise ParamError(
                    f"language_hint={hint.strip()[:40]} is not offered here: a stream is heard in its "
                    f"language ({language}; multi detects each utterance's without hints)"
                )
        method = query.get("callback_method", "post").strip().lower()
        if method != "post":
            raise ParamError(f"callback_method={method[:10]} is not offered here: callbacks are POSTed")
        if parse_bool(query.get("detect_language", "false"), "detect_language"):
            raise ParamError("detect_language is for recorded audio, not streams (as Deepgram's)")
        formatting = options.format.with_defaults(False)
        return cls(
            encoding=encoding,
            sample_rate=sample_rate,
            channels=channels,
            model=query.get("model", "base")[:100],
            language=language,
            interim_results=parse_bool(query.get("interim_results", "false"), "interim_results"),
            punctuate=formatting.punctuate is True,
            smart_format=formatting.smart_format is True,
            endpointing_ms=None if endpointing == ENDPOINTING_OFF else endpointing,
            utterance_end_ms=options.utterance_end_ms,
            vad_events=parse_bool(query.get("vad_events", "false"), "vad_events"),
            keyterms=options.keyterms,
            redact=tuple(sorted(options.redact)),
            format=formatting,
            tags=_tags([value for key, value in query.items() if key == "tag"]),
            extra=_extra([value for key, value in query.items() if key == "extra"]),
            diarize=diarize,
        )


def _diarize(query: Mapping[str, str], channels: int) -> bool:
    """`diarize` (or `diarize_model`, which asks for it): honoured on a two-channel stream, whose
    sides are its speakers; refused on one channel, where telling voices apart needs a model."""
    model = query.get("diarize_model", "").strip().lower()
    if model and model not in DIARIZE_MODELS:
        raise ParamError(f"diarize_model must be one of {', '.join(DIARIZE_MODELS)} on a stream")
    asked = parse_bool(query.get("diarize", "false"), "diarize") or bool(model)
    if asked and channels < 2:
        raise ParamError(
            "diarize is offered on two-channel streams only (channels=2&multichannel=true), whose sides "
            "are its speakers: telling voices apart on one channel needs a diarization model this "
            "server does not have"
        )
    return asked


def _tags(values: list[str]) -> tuple[str, ...]:
    tags = tuple(value.strip() for value in values if value.strip())
    if len(tags) > MAX_TAGS:
        raise ParamError(f"at most {MAX_TAGS} tag values")
    if any(len(tag) > MAX_TAG_CHARS for tag in tags):
        raise ParamError(f"a tag is at most {MAX_TAG_CHARS} characters")
    return tags


def _extra(values: list[str]) -> tuple[tuple[str, str], ...]:
    """`extra=key:value`, repeated; a key given twice keeps its last value, as Deepgram's."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition(":")
        if not sep or not key.strip():
            raise ParamError("extra must be key:value")
        if len(value) > MAX_EXTRA_CHARS:
            raise ParamError(f"an extra key:value is at most {MAX_EXTRA_CHARS} characters")
        pairs.pop(key.strip(), None)
        pairs[key.strip()] = text
    if len(pairs) > MAX_TAGS:
        raise ParamError(f"at most {MAX_TAGS} extra keys")
    return tuple(pairs.items())


def _int_param(query: Mapping[str, str], name: str, default: int | None, lo: int, hi: int) -> int:
    text = query.get(name)
    if text is None:
        if default is None:
            raise ParamError(f"{name} is required")
        return default
    digits = text.strip()
    if not _WHOLE_NUMBER.fullmatch(digits):
        raise ParamError(f"{name} must be a whole number, not {text[:20]!r}")
    value = int(digits)
    if not lo <= value <= hi:
        raise ParamError(f"{name} must be from {lo} to {hi}, not {digits[:20]}")
    return value


_WHOLE_NUMBER: Final = re.compile(r"-?[0-9]{1,18}")


# --- authentication --------------------------------------------------------------------------


def credentials(headers: Mapping[str, str]) -> tuple[str | None, bool]:
    """The key or token a request presents, and whether it came as a WebSocket subprotocol.

    `Authorization: Token KEY` or `Bearer JWT` (any case), or, from browsers that cannot set
    headers, `Sec-WebSocket-Protocol: token, KEY` (the server must then select `token`)."""
    auth = headers.get("Authorization", "").strip()
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip(), False
    offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if len(offered) >= 2 and offered[0].lower() in ("token", "bearer") and offered[1]:
        return offered[1], True
    return None, False


# --- client text messages: parsing (server side) ------------------------------------------------


def parse_client_message(text: str) -> str:
    """The `type` of a client's text message: KeepAlive, Finalize, CloseStream, or any other
    string (which a server answers with an Error). Raises ProtocolViolation for a message
    that is not a JSON object with a string `type`; JSON is parsed, never string-compared."""
    try:
        message = jsonwire.loads(text)
    except ValueError:
        raise ProtocolViolation("not_json", "a text message must be a JSON object with a type") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        raise ProtocolViolation("no_type", "a text message must be a JSON object with a type")
    return kind


# --- handshake refusals ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    err_code: str
    err_msg: str

    def body(self, request_id: str) -> dict[str, object]:
        return {"err_code": self.err_code, "err_msg": self.err_msg, "request_id": request_id}


def unsupported_language(reason: str) -> Refusal:
    """Deepgram's 400 for a language its model cannot transcribe (its words, and why)."""
    return Refusal(
        400, "Bad Request", f"No such model/language/tier combination found. {reason[:300]}".strip()
    )


STANDARD_REFUSALS: Final[dict[int, Refusal]] = {
    400: Refusal(400, "Bad Request", "Bad Request: the request could not be understood."),
    401: Refusal(401, "INVALID_AUTH", "Invalid credentials."),
    402: Refusal(402, "ASR_PAYMENT_REQUIRED", "Project does not have enough credits for an ASR request."),
    403: Refusal(403, "FORBIDDEN", "Insufficient permissions."),
    429: Refusal(429, "TOO_MANY_REQUESTS", "Too many requests. Please try again later."),
    500: Refusal(500, "INTERNAL_SERVER_ERROR", "The server encountered an internal error."),
    502: Refusal(502, "BAD_GATEWAY", "Bad gateway."),
    503: Refusal(503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
}


def refusal_for(status: int) -> Refusal:
    return STANDARD_REFUSALS.get(status) or Refusal(status, f"HTTP_{status}", f"HTTP error {status}.")


def read_refusal(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """Deepgram's own words for a refused handshake: (err_code, err_msg) from the JSON body,
    else the `dg-error` header, else the status. Never echoes anything the client sent."""
    err_code, err_msg = "", ""
    try:
        data = jsonwire.loads(body.decode("utf-8", "replace")) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        err_code = _short(data.get("err_code"))
        err_msg = _short(data.get("err_msg") or data.get("message") or data.get("reason"))
    if not err_msg:
        err_msg = _short(headers.get("dg-error"))
    return err_code or f"HTTP_{status}", err_msg or f"HTTP {status}"


def _short(value: object, limit: int = 300) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


# --- server messages: parsing (client side) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerError:
    """Deepgram's `Error` message (e.g. a SchemaError about a text message we sent)."""

    variant: str
    description: str


ServerMessage = ProviderEvent | ServerError


def parse_server_message(
    text: str | bytes, channels: int, language: str | None = None
) -> ServerMessage | None:
    """One text frame from a Deepgram server, as the worker's provider events. None for a
    message that is valid but carries nothing for the call. Raises ProtocolViolation.
    `language`: the one the stream asked for, a result's where Deepgram names none (it names
    one only when it detects them: `language=multi`, `detect_language`)."""
    if isinstance(text, bytes):
        raise ProtocolViolation("binary", f"a binary message of {len(text)} bytes")
    try:
        data = jsonwire.loads(text)
    except ValueError:
        raise ProtocolViolation("not_json", f"{text[:60]!r}") from None
    if not isinstance(data, dict):
        raise ProtocolViolation("not_object", f"{text[:60]!r}")
    kind = data.get("type")
    try:
        if kind == "Results":
            return _results(data, channels, language)
        if kind == "UtteranceEnd":
            return UtteranceEnd(_channel(data["channel"], channels), _seconds(data["last_word_end"]))
        if kind == "SpeechStarted":
            return SpeechStarted(_channel(data["channel"], channels), _seconds(data["timestamp"]))
        if kind == "Metadata":
            return StreamMetadata(
                request_id=str(data.get("request_id", ""))[:100],
                duration=_seconds(data.get("duration", 0.0)),
                extra={k: data[k] for k in ("sha256", "created", "channels") if k in data},
            )
        if kind == "Error":
            return ServerError(
                str(data.get("variant", ""))[:100],
                str(data.get("description") or data.get("message") or "")[:300],
            )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # str(exc) may quote a huge value (float("xxx...") says what it could not convert)
        raise ProtocolViolation(
            "bad_fields", f"{kind} message: {type(exc).__name__} {str(exc)[:120]}"
        ) from None
    if kind in ("ConfigureSuccess", "ConfigureFailure"):
        return None  # answers to Configure, which the worker never sends
    raise ProtocolViolation("unknown_type", f"type {str(kind)[:40]!r}")


def _results(data: dict[str, object], channels: int, language: str | None = None) -> TranscriptResult:
    index = data["channel_index"]
    if not isinstance(index, list) or not index:
        raise ValueError("channel_index must be a non-empty list")
    channel = _channel(index, channels)
    total = index[1] if len(index) > 1 else channels
    if not isinstance(total, int) or isinstance(total, bool) or not 1 <= total <= channels:
        # the core frees audio once every one of `total` channels is final: never trust more
        # channels than the call has (nor a count that is not a number at all)
        raise ValueError(f"channel_index total must be 1 to {channels}")
    body = data["channel"]
    if not isinstance(body, dict):
        raise TypeError("channel must be an object")
    alternatives = body["alternatives"]
    if not isinstance(alternatives, list):
        raise TypeError("alternatives must be a list")
    best = alternatives[0] if alternatives else {}
    if not isinstance(best, dict):
        raise TypeError("an alternative must be an object")
    raw_words = best.get("words") or []
    if not isinstance(raw_words, list):
        raise TypeError("words must be a list")
    return TranscriptResult(
        channel=channel,
        is_final=data.get("is_final") is True,
        speech_final=data.get("speech_final") is True,
        text=_text(best.get("transcript", ""), "transcript"),
        confidence=_confidence(best.get("confidence", 0.0)),
        start=_seconds(data["start"]),
        duration=_seconds(data["duration"]),
        words=tuple(_word(w) for w in raw_words),
        from_finalize=data.get("from_finalize") is True,
        channels=total,
        language=_language(best, raw_words) or language,
        languages=_languages(best.get("languages")),
        search=_search(body.get("search")),
        entities=_entities(data.get("entities")),
    )


# What a result may carry besides its words (`languages`, `search`, `entities`): read where
# it has Deepgram's shape, an entry that has not skipped (never the whole result for it).


def _languages(value: object) -> tuple[str, ...]:
    if type(value) is not list:
        return ()
    return tuple(v for v in value[:MAX_LISTED] if type(v) is str and 0 < len(v) <= MAX_LANGUAGE_CHARS)


def _search(value: object) -> tuple[SearchResult, ...]:
    if type(value) is not list:
        return ()
    out = []
    for found in value[:MAX_LISTED]:
        if type(found) is not dict or type(found.get("query")) is not str:
            continue
        hits = found.get("hits")
        out.append(
            SearchResult(
                str(found["query"])[:MAX_FIELD_CHARS],
                tuple(hit for hit in map(_hit, hits[:MAX_LISTED] if type(hits) is list else []) if hit),
            )
        )
    return tuple(out)


def _hit(value: object) -> SearchHit | None:
    if type(value) is not dict:
        return None
    try:
        return SearchHit(
            _confidence(value.get("confidence", 0.0)),
            _seconds(value["start"]),
            _seconds(value["end"]),
            _text(value.get("snippet", ""), "snippet")[:MAX_FIELD_CHARS],
        )
    except (KeyError, TypeError, ValueError):
        return None


def _entities(value: object) -> tuple[Entity, ...]:
    if type(value) is not list:
        return ()
    out = []
    for e in value[:MAX_LISTED]:
        if type(e) is not dict:
            continue
        label, text, raw = e.get("label"), e.get("value"), e.get("raw_value", e.get("value"))
        first, last = e.get("start_word"), e.get("end_word")
        if not (type(label) is str and type(text) is str and type(raw) is str):
            continue
        if not (type(first) is int and type(last) is int and 0 <= first <= last <= MAX_STREAM_S):
            continue
        try:
            confidence = _confidence(e.get("confidence", 0.0))
        except (TypeError, ValueError):
            continue
        out.append(
            Entity(label[:100], text[:MAX_FIELD_CHARS], raw[:MAX_FIELD_CHARS], confidence, first, last)
        )
    return tuple(out)


def _language(best: dict[str, object], words: list[object]) -> str | None:
    """The language Deepgram says it heard: the alternative's `languages` (the most spoken
    first), else its first word's `language`; None when it names none (a fixed language)."""
    languages = best.get("languages")
    if type(languages) is list and languages:
        first = languages[0]
        if type(first) is str and 0 < len(first) <= MAX_LANGUAGE_CHARS:
            return first
    if words:
        word = words[0]
        if type(word) is dict:
            named = word.get("language")
            if type(named) is str and 0 < len(named) <= MAX_LANGUAGE_CHARS:
                return named
    return None


def _word(w: object) -> Word:
    # The common case first, in one step: every field of the type and range Deepgram sends.
    # 0.75 us a word here against 1.7 through the general checks below, which give the same
    # Word for it and say precisely what is wrong with any other.
    if type(w) is dict:
        word, start, end, confidence = w.get("word"), w.get("start"), w.get("end"), w.get("confidence")
        if (
            type(word) is str
            and type(start) is float
            and type(end) is float
            and type(confidence) is float
            and 0.0 <= start <= MAX_STREAM_S
            and 0.0 <= end <= MAX_STREAM_S
            and 0.0 <= confidence <= 1.0
        ):
            punctuated, speaker = w.get("punctuated_word"), w.get("speaker")
            return Word(
                word,
                start,
                end,
                confidence,
                punctuated if type(punctuated) is str else None,
                speaker if type(speaker) is int and 0 <= speaker < MAX_SPEAKERS else None,
            )
    return _checked_word(w)


def _checked_word(w: object) -> Word:
    if not isinstance(w, dict):
        raise TypeError("a word must be an object")
    punctuated = w.get("punctuated_word")
    speaker = w.get("speaker")
    return Word(
        word=_text(w["word"], "word"),
        start=_seconds(w["start"]),
        end=_seconds(w["end"]),
        confidence=_confidence(w.get("confidence", 0.0)),
        punctuated_word=punctuated if isinstance(punctuated, str) else None,
        speaker=speaker
        if isinstance(speaker, int) and not isinstance(speaker, bool) and 0 <= speaker < MAX_SPEAKERS
        else None,
    )


def _channel(index: object, channels: int) -> int:
    if not isinstance(index, list) or not index:
        raise ValueError("channel must be a non-empty list")
    channel = index[0]
    if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < channels:
        raise ValueError(f"channel {str(channel)[:20]} is not one of this call's {channels}")
    return channel


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{what} is out of range") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, not {number}")
    return number


def _seconds(value: object) -> float:
    """A time in a stream: finite, not negative, and not beyond any stream's length (the core
    turns times into byte offsets)."""
    seconds = _number(value, "a time")
    if not 0 <= seconds <= MAX_STREAM_S:
        raise ValueError(f"a time must be from 0 to {MAX_STREAM_S:g} seconds, not {seconds:.6g}")
    return seconds


def _confidence(value: object) -> float:
    return min(1.0, max(0.0, _number(value, "a confidence")))


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    return value


# --- server messages: building (server side) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    arch: str
    uuid: str

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "arch": self.arch}


def _t(seconds: float) -> float:
    return round(seconds, 6)


def results_message(
    result: TranscriptResult,
    *,
    channels: int,
    request_id: str,
    model: ModelInfo,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, object]:
    """A `Results` message with every field a strict client reads (LiveKit's plugin indexes
    keys directly and drops a message lacking one); `channel.search` where the stream
    searches, `metadata.extra` where it asked for extra key-values. Where the result's
    language is known, the alternative's `languages` and each word's `language` say it, as
    Deepgram's `multi` results do (its JavaScript SDK's types require both)."""
    language = result.language
    alternative: dict[str, object] = {
        "transcript": result.text,
        "confidence": round(result.confidence, 6),
        "words": [_word_message(w, language) for w in result.words],
    }
    if result.languages or language is not None:
        alternative["languages"] = list(result.languages) or [language]
    message: dict[str, object] = {
        "type": "Results",
        "channel_index": [result.channel, channels],
        "duration": _t(result.duration),
        "start": _t(result.start),
        "is_final": result.is_final,
        "speech_final": result.speech_final,
        "from_finalize": result.from_finalize,
        "channel": {"alternatives": [alternative]},
        "metadata": {
            "request_id": request_id,
            "model_info": model.describe(),
            "model_uuid": model.uuid,
        },
    }
    if result.search:
        channel = message["channel"]
        assert isinstance(channel, dict)
        channel["search"] = [found.wire() for found in result.search]
    if extra:
        metadata = message["metadata"]
        assert isinstance(metadata, dict)
        metadata["extra"] = dict(extra)
    return message


def _word_message(w: Word, language: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "word": w.word,
        "start": _t(w.start),
        "end": _t(w.end),
        "confidence": round(w.confidence, 6),
        "punctuated_word": w.punctuated_word or w.word,
    }
    if language is not None:
        out["language"] = language
    if w.speaker is not None:
        out["speaker"] = w.speaker
    return out


def metadata_message(
    *, request_id: str, sha256: str, created: str, duration_s: float, channels: int, model: ModelInfo
) -> dict[str, object]:
    return {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": request_id,
        "sha256": sha256,
        "created": created,
        "duration": _t(duration_s),
        "channels": channels,
        "models": [model.uuid],
        "model_info": {model.uuid: model.describe()},
    }


def utterance_end_message(channel: int, channels: int, last_word_end: float) -> dict[str, object]:
    return {"type": "UtteranceEnd", "channel": [channel, channels], "last_word_end": _t(last_word_end)}


def speech_started_message(channel: int, channels: int, timestamp: float) -> dict[str, object]:
    return {"type": "SpeechStarted", "channel": [channel, channels], "timestamp": _t(timestamp)}


def error_message(variant: str, description: str, message: str = "") -> dict[str, object]:
    return {"type": "Error", "variant": variant, "description": description, "message": message}


def dumps(message: Mapping[str, object] | Iterable[object]) -> str:
    return jsonwire.dumps_text(message)
