"""Deepgram's Flux turn-taking protocol (`/v2/listen`) as data: both ends of it are built here.

Flux is Deepgram's live API for voice agents: instead of `Results`, the server tells the client
where a speaker's turn starts and ends. Read from Deepgram's API reference (the listen.v2
AsyncAPI spec and the Flux guides: the state machine, end-of-turn parameters, Configure,
ForceEndTurn) and the official Python SDK's generated types (deepgram-sdk 7.x,
`deepgram.listen.v2`), whose client Pipecat's `DeepgramFluxSTTService` and LiveKit Agents'
Deepgram `STTv2` mirror.

- The handshake: `GET /v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000`
  plus the turn thresholds (`eot_threshold`, `eager_eot_threshold`, `eot_timeout_ms`),
  `keyterm` (repeated), `tag` (repeated), `mip_opt_out`; `FluxParams.from_query` takes what
  this server honours and refuses everything else with a reason (ParamError), never ignoring
  a parameter.
- Client messages: binary audio; JSON `Configure` (new thresholds or keyterms mid-stream),
  `ForceEndTurn`, `CloseStream` (`parse_client_message`).
- Server messages: `Connected` first, then `TurnInfo` (event `StartOfTurn`, `Update`,
  `EagerEndOfTurn`, `TurnResumed`, `EndOfTurn`, with the turn's transcript, words and
  `end_of_turn_confidence`), `ConfigureSuccess` / `ConfigureFailure`, `Warning`, and the
  fatal `Error`; every one numbered by `sequence_id` from 0 (the `*_message` builders), and
  read back by `parse_server_message` (a client's side, and the tests').

Pure: no I/O, no clock. Where turns start and end is decided elsewhere (`flux_turns.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from .. import jsonwire
from ..core.keyterms import MAX_KEYTERMS, check_keyterms, distinct_terms
from ..core.provider_events import Word
from ..errors import ParamError, ProtocolError, ProtocolViolation

LISTEN_V2_PATH: Final = "/v2/listen"

MODEL_EN: Final = "flux-general-en"
MODEL_MULTI: Final = "flux-general-multi"
RAW_ENCODINGS: Final = ("linear16", "mulaw", "alaw")
OTHER_ENCODINGS: Final = ("linear32", "opus", "ogg-opus")  # Flux's, not taken here

# The thresholds' ranges and defaults, as Deepgram documents them.
EOT_THRESHOLD_RANGE: Final = (0.5, 1.0)  # 1.0: no confidence ends a turn (ForceEndTurn, timeout do)
EAGER_EOT_THRESHOLD_RANGE: Final = (0.3, 0.9)
EOT_TIMEOUT_MS_RANGE: Final = (500, 60_000)
DEFAULT_EOT_THRESHOLD: Final = 0.7
DEFAULT_EOT_TIMEOUT_MS: Final = 5000
MAX_TAGS: Final = 100
MAX_TAG_CHARS: Final = 128

# TurnInfo events.
START_OF_TURN: Final = "StartOfTurn"
UPDATE: Final = "Update"
EAGER_END_OF_TURN: Final = "EagerEndOfTurn"
TURN_RESUMED: Final = "TurnResumed"
END_OF_TURN: Final = "EndOfTurn"
TURN_EVENTS: Final = frozenset({START_OF_TURN, UPDATE, EAGER_END_OF_TURN, TURN_RESUMED, END_OF_TURN})

# What ended a turn (`trigger`, on EndOfTurn only; an open set, as Deepgram says).
TRIGGER_MODEL: Final = "model"  # the confidence reached eot_threshold
TRIGGER_MANUAL: Final = "manual"  # a ForceEndTurn
TRIGGER_TIMEOUT: Final = "timeout"  # eot_timeout_ms of silence
TRIGGER_CLOSE: Final = "close_stream"  # this server's: the stream closed in the middle of a turn

# Codes of what this server sends besides turns (Deepgram's style, SCREAMING_SNAKE_CASE).
UNPARSABLE_CLIENT_MESSAGE: Final = "UNPARSABLE_CLIENT_MESSAGE"
INVALID_CONFIGURE: Final = "INVALID_CONFIGURE"  # a Configure's field is malformed or out of range
UNSUPPORTED_SETTING: Final = "UNSUPPORTED_SETTING"  # a setting this server does not honour
INTERNAL_SERVER_ERROR: Final = "INTERNAL_SERVER_ERROR"

KNOWN_PARAMETERS: Final = (
    "model",
    "encoding",
    "sample_rate",
    "eot_threshold",
    "eager_eot_threshold",
    "eot_timeout_ms",
    "keyterm",
    "tag",
    "mip_opt_out",
    "numerals",
    "profanity_filter",
    "redact",
    "language_hint",
)
_REPEATABLE: Final = frozenset({"keyterm", "tag", "language_hint", "redact"})


# --- the thresholds --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What ends a turn: the end-of-turn confidence for EndOfTurn (`eot_threshold`) and, when
    set, for EagerEndOfTurn (`eager_eot_threshold`), and the silence after which a turn ends
    whatever the confidence (`eot_timeout_ms`)."""

    eot_threshold: float = DEFAULT_EOT_THRESHOLD
    eager_eot_threshold: float | None = None  # None: no EagerEndOfTurn, no TurnResumed
    eot_timeout_ms: int = DEFAULT_EOT_TIMEOUT_MS

    def checked(self) -> Thresholds:
        """These thresholds, or ParamError naming the one out of its range; an eager threshold
        above `eot_threshold` is refused, as Deepgram refuses it."""
        _in_range("eot_threshold", self.eot_threshold, EOT_THRESHOLD_RANGE)
        _in_range("eot_timeout_ms", self.eot_timeout_ms, EOT_TIMEOUT_MS_RANGE)
        eager = self.eager_eot_threshold
        if eager is not None:
            _in_range("eager_eot_threshold", eager, EAGER_EOT_THRESHOLD_RANGE)
            if eager > self.eot_threshold:
                raise ParamError(
                    f"eager_eot_threshold ({eager:g}) must not be above "
                    f"eot_threshold ({self.eot_threshold:g})"
                )
        return self

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"eot_threshold": self.eot_threshold, "eot_timeout_ms": self.eot_timeout_ms}
        if self.eager_eot_threshold is not None:
            out["eager_eot_threshold"] = self.eager_eot_threshold
        return out


def _in_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ParamError(f"{name} must be from {lo:g} to {hi:g}, not {value:g}")


# --- the handshake's query ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FluxParams:
    """The query of a `/v2/listen` request, as this server honours it."""

    encoding: str = "linear16"
    sample_rate: int = 16000
    model: str = MODEL_EN
    thresholds: Thresholds = Thresholds()
    keyterms: tuple[str, ...] = ()
    mip_opt_out: bool = False  # nothing here is kept for model improvement either way
    tags: tuple[str, ...] = ()  # labels for usage reporting: on the connection's log line

    def query(self) -> list[tuple[str, str]]:
        """The query a client sends for these parameters (Deepgram's names, lowercase booleans)."""
        t = self.thresholds
        pairs = [
            ("model", self.model),
            ("encoding", self.encoding),
            ("sample_rate", str(self.sample_rate)),
            ("eot_threshold", f"{t.eot_threshold:g}"),
            ("eot_timeout_ms", str(t.eot_timeout_ms)),
        ]
        if t.eager_eot_threshold is not None:
            pairs.append(("eager_eot_threshold", f"{t.eager_eot_threshold:g}"))
        pairs += [("keyterm", term) for term in self.keyterms]
        pairs += [("tag", tag) for tag in self.tags]
        pairs.append(("mip_opt_out", "true" if self.mip_opt_out else "false"))
        return pairs

    @classmethod
    def from_query(cls, pairs: Iterable[tuple[str, str]]) -> FluxParams:
        """A request's query (every pair, repeated keys included). Raises ParamError with the
        reason for the first parameter this server cannot honour: an unknown one, a bad value,
        or a Flux feature it does not serve."""
        values: dict[str, list[str]] = {}
        for key, value in pairs:
            if key not in KNOWN_PARAMETERS:
                raise ParamError(
                    f"{key[:40]!r} is not a /v2/listen parameter this server knows "
                    f"(it takes {', '.join(KNOWN_PARAMETERS)})"
                )
            if key in values and key not in _REPEATABLE:
                raise ParamError(f"{key} is given more than once")
            values.setdefault(key, []).append(value)
        one = {key: found[0] for key, found in values.items() if key not in _REPEATABLE}
        _refuse_unserved(one, values)
        model = one.get("model", "").strip()
        if not model:
            raise ParamError(f"model is required: {MODEL_EN}")
        if model == MODEL_MULTI:
            raise ParamError(f"{MODEL_MULTI} is not served here: this server's Flux is {MODEL_EN}")
        if model != MODEL_EN:
            raise ParamError(f"model must be {MODEL_EN} on {LISTEN_V2_PATH}, not {model[:40]!r}")
        encoding = one.get("encoding", "").strip().lower()
        if encoding not in RAW_ENCODINGS:
            shown = repr(encoding[:20]) if encoding else "missing"
            raise ParamError(f"encoding must be one of {', '.join(RAW_ENCODINGS)} (raw audio), not {shown}")
        if "sample_rate" not in one:
            raise ParamError("sample_rate is required for raw audio")
        sample_rate = _whole("sample_rate", one["sample_rate"], 8000, 48000)
        eager = one.get("eager_eot_threshold")
        thresholds = Thresholds(
            eot_threshold=_number("eot_threshold", one.get("eot_threshold", str(DEFAULT_EOT_THRESHOLD))),
            eager_eot_threshold=None if eager is None else _number("eager_eot_threshold", eager),
            eot_timeout_ms=_whole(
                "eot_timeout_ms", one.get("eot_timeout_ms", str(DEFAULT_EOT_TIMEOUT_MS)), 0, 10**9
            ),
        ).checked()
        tags = tuple(t.strip() for t in values.get("tag", ()) if t.strip())
        if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_CHARS for t in tags):
            raise ParamError(f"tag: at most {MAX_TAGS} tags of at most {MAX_TAG_CHARS} characters")
        return cls(
            encoding=encoding,
            sample_rate=sample_rate,
            model=model,
            thresholds=thresholds,
            keyterms=distinct_terms(
                (("keyterm", term) for term in values.get("keyterm", ())),
                f"at most {MAX_KEYTERMS} keyterm values",
            ),
            mip_opt_out=parse_flag("mip_opt_out", one.get("mip_opt_out", "false")),
            tags=tags,
        )


def _refuse_unserved(one: Mapping[str, str], values: Mapping[str, list[str]]) -> None:
    """Flux parameters this server does not honour: refused with the reason, unless they ask
    for what it does anyway (numbers as words, nothing filtered)."""
    for name in ("numerals", "profanity_filter"):
        if name in one and parse_flag(name, one[name]):
            raise ParamError(f"{name}=true is not honoured by this server; leave it out or false")
    if "redact" in values:
        raise ParamError("redact is not honoured by this server on /v2/listen")
    if "language_hint" in values:
        raise ParamError(f"language_hint needs {MODEL_MULTI}, which this server does not serve")


def parse_flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ParamError(f"{name} must be true or false, not {text[:20]!r}")


def _number(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ParamError(f"{name} must be a number, not {text[:20]!r}") from None
    if not math.isfinite(value):
        raise ParamError(f"{name} must be a number, not {text[:20]!r}")
    return value


def _whole(name: str, text: str, lo: int, hi: int) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 10):
        raise ParamError(f"{name} must be a whole number, not {text[:20]!r}")
    value = int(digits)
    if not lo <= value <= hi:
        raise ParamError(f"{name} must be from {lo} to {hi}, not {value}")
    return value


# --- client messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CloseStream:
    """No more audio: the last turns, then the server closes 1000."""


@dataclass(frozen=True, slots=True)
class ForceEndTurn:
    """End the turn under way now, on the client's own signal (push-to-talk released...)."""


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Not in Flux's spec (Flux wants audio all along); taken as v1's: the stream is alive."""


@dataclass(frozen=True, slots=True)
class Configure:
    """New settings mid-stream; a field left out keeps its value. `keyterms` replaces the list
    (Deepgram's rule: send the whole list). `language_hints`, `numerals` and
    `profanity_filter` are read so that a Configure asking for them is answered, not dropped."""

    eot_threshold: float | None = None
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int | None = None
    keyterms: tuple[str, ...] | None = None
    language_hints: tuple[str, ...] | None = None
    numerals: bool | None = None
    profanity_filter: bool | None = None

    def thresholds(self, current: Thresholds) -> Thresholds:
        """The thresholds after this Configure, checked (ParamError)."""
        changed = replace(
            current,
            eot_threshold=current.eot_threshold if self.eot_threshold is None else self.eot_threshold,
            eager_eot_threshold=current.eager_eot_threshold
            if self.eager_eot_threshold is None
            else self.eager_eot_threshold,
            eot_timeout_ms=current.eot_timeout_ms if self.eot_timeout_ms is None else self.eot_timeout_ms,
        )
        return changed.checked()

    def unsupported(self) -> str | None:
        """Why this server cannot apply this Configure as asked, or None."""
        if self.language_hints:
            return f"language_hints need {MODEL_MULTI}, which this server does not serve"
        if self.numerals:
            return "numerals=true is not honoured by this server"
        if self.profanity_filter:
            return "profanity_filter=true is not honoured by this server"
        return None


ClientMessage = CloseStream | ForceEndTurn | KeepAlive | Configure

_CONFIGURE_FIELDS: Final = frozenset(
    {"type", "thresholds", "keyterms", "language_hints", "numerals", "profanity_filter"}
)
_THRESHOLD_FIELDS: Final = frozenset({"eot_threshold", "eager_eot_threshold", "eot_timeout_ms"})


def parse_client_message(text: str) -> ClientMessage:
    """A client's text message. Raises ProtocolError: code UNPARSABLE_CLIENT_MESSAGE for what
    is not a JSON object with a known `type`, INVALID_CONFIGURE for a Configure whose fields
    are malformed (the server answers that one with ConfigureFailure)."""
    try:
        data = jsonwire.loads(text)
    except ValueError:
        raise ProtocolError(UNPARSABLE_CLIENT_MESSAGE, "a text message must be a JSON object") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(kind, str):
        raise ProtocolError(UNPARSABLE_CLIENT_MESSAGE, "a text message must be a JSON object with a type")
    if kind == "CloseStream":
        return CloseStream()
    if kind == "ForceEndTurn":
        return ForceEndTurn()
    if kind == "KeepAlive":
        return KeepAlive()
    if kind == "Configure":
        return _configure(data)
    raise ProtocolError(
        UNPARSABLE_CLIENT_MESSAGE,
        f"unknown message type {kind[:40]!r}: Flux takes Configure, ForceEndTurn and CloseStream",
    )


def _configure(data: dict[str, object]) -> Configure:
    unknown = sorted(set(data) - _CONFIGURE_FIELDS)
    if unknown:
        raise ProtocolError(INVALID_CONFIGURE, f"Configure has no field {unknown[0][:40]!r}")
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ProtocolError(INVALID_CONFIGURE, "thresholds must be an object")
    unknown = sorted(set(thresholds) - _THRESHOLD_FIELDS)
    if unknown:
        raise ProtocolError(INVALID_CONFIGURE, f"thresholds has no field {unknown[0][:40]!r}")
    try:
        return Configure(
            eot_threshold=_json_number(thresholds.get("eot_threshold"), "thresholds.eot_threshold"),
            eager_eot_threshold=_json_number(
                thresholds.get("eager_eot_threshold"), "thresholds.eager_eot_threshold"
            ),
            eot_timeout_ms=_json_whole(thresholds.get("eot_timeout_ms"), "thresholds.eot_timeout_ms"),
            keyterms=_json_terms(data.get("keyterms"), "keyterms"),
            language_hints=_json_terms(data.get("language_hints"), "language_hints"),
            numerals=_json_flag(data.get("numerals"), "numerals"),
            profanity_filter=_json_flag(data.get("profanity_filter"), "profanity_filter"),
        )
    except ParamError as exc:
        raise ProtocolError(INVALID_CONFIGURE, exc.message) from None


def _json_number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamError(f"{name} must be a number")
    return float(value)


def _json_whole(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(f"{name} must be a whole number")
    return value


def _json_terms(value: object, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return check_keyterms([value], name)
    if isinstance(value, list) and all(isinstance(term, str) for term in value):
        return check_keyterms(value, name)
    raise ParamError(f"{name} must be a string or a list of strings")


def _json_flag(value: object, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ParamError(f"{name} must be true or false")


# --- server messages: building -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnInfo:
    """One `TurnInfo` message's content: times in seconds of the stream's audio."""

    event: str
    turn_index: int
    window_start: float
    window_end: float
    words: tuple[Word, ...]
    confidence: float  # end_of_turn_confidence
    trigger: str | None = None  # on EndOfTurn only

    @property
    def transcript(self) -> str:
        return " ".join(w.punctuated_word or w.word for w in self.words)


def _t(seconds: float) -> float:
    return round(seconds, 6)


def connected_message(request_id: str, sequence_id: int) -> dict[str, object]:
    return {"type": "Connected", "request_id": request_id, "sequence_id": sequence_id}


def turn_info_message(info: TurnInfo, *, request_id: str, sequence_id: int) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "TurnInfo",
        "request_id": request_id,
        "sequence_id": sequence_id,
        "event": info.event,
        "turn_index": info.turn_index,
        "audio_window_start": _t(info.window_start),
        "audio_window_end": _t(info.window_end),
        "transcript": info.transcript,
        "words": [
            {
                "word": w.punctuated_word or w.word,
                "confidence": round(w.confidence, 6),
                "start": _t(w.start),
                "end": _t(w.end),
            }
            for w in info.words
        ],
        "end_of_turn_confidence": round(info.confidence, 4),
    }
    if info.trigger is not None:
        message["trigger"] = info.trigger
    return message


def configure_success_message(
    *, request_id: str, sequence_id: int, thresholds: Thresholds, keyterms: tuple[str, ...]
) -> dict[str, object]:
    return {
        "type": "ConfigureSuccess",
        "request_id": request_id,
        "sequence_id": sequence_id,
        "thresholds": thresholds.describe(),
        "keyterms": list(keyterms),
    }


def configure_failure_message(
    *, request_id: str, sequence_id: int, code: str, description: str
) -> dict[str, object]:
    return {
        "type": "ConfigureFailure",
        "request_id": request_id,
        "sequence_id": sequence_id,
        "code": code,
        "description": description,
    }


def warning_message(*, request_id: str, sequence_id: int, code: str, description: str) -> dict[str, object]:
    return {
        "type": "Warning",
        "request_id": request_id,
        "sequence_id": sequence_id,
        "code": code,
        "description": description,
    }


def error_message(*, sequence_id: int, code: str, description: str) -> dict[str, object]:
    """The fatal `Error`: the server closes the stream after it."""
    return {"type": "Error", "sequence_id": sequence_id, "code": code, "description": description}


def dumps(message: Mapping[str, object]) -> str:
    return jsonwire.dumps_text(message)


# --- server messages: parsing (a client's side) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    request_id: str
    sequence_id: int


@dataclass(frozen=True, slots=True)
class TurnMessage:
    sequence_id: int
    info: TurnInfo


@dataclass(frozen=True, slots=True)
class ConfigureSuccess:
    sequence_id: int
    thresholds: Thresholds
    keyterms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """`ConfigureFailure`, `Warning` or the fatal `Error` (`kind`), with its code."""

    kind: str
    sequence_id: int
    code: str
    description: str


ServerMessage = Connected | TurnMessage | ConfigureSuccess | Notice


def parse_server_message(text: str | bytes) -> ServerMessage:
    """One message from a Flux server. Raises ProtocolViolation for one that is not valid
    protocol (binary, not JSON, an unknown type or event, a field missing or of a wrong type)."""
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
        sequence_id = _int(data["sequence_id"])
        if kind == "Connected":
            return Connected(_str(data["request_id"]), sequence_id)
        if kind == "TurnInfo":
            return TurnMessage(sequence_id, _turn_info(data))
        if kind == "ConfigureSuccess":
            raw = data["thresholds"]
            if not isinstance(raw, dict):
                raise TypeError("thresholds must be an object")
            eager = raw.get("eager_eot_threshold")
            thresholds = Thresholds(
                _float(raw.get("eot_threshold", DEFAULT_EOT_THRESHOLD)),
                None if eager is None else _float(eager),
                _int(raw.get("eot_timeout_ms", DEFAULT_EOT_TIMEOUT_MS)),
            )
            terms = data["keyterms"]
            if not isinstance(terms, list):
                raise TypeError("keyterms must be a list")
            return ConfigureSuccess(sequence_id, thresholds, tuple(_str(t) for t in terms))
        if kind in ("ConfigureFailure", "Warning", "Error"):
            return Notice(kind, sequence_id, _str(data.get("code", "")), _str(data.get("description", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(
            "bad_fields", f"{kind} message: {type(exc).__name__} {str(exc)[:120]}"
        ) from None
    raise ProtocolViolation("unknown_type", f"type {str(kind)[:40]!r}")


def _turn_info(data: dict[str, object]) -> TurnInfo:
    event = data["event"]
    _str(data["transcript"])  # required; the words carry it
    if event not in TURN_EVENTS:
        raise ValueError(f"event {str(event)[:40]!r}")
    raw_words = data["words"]
    if not isinstance(raw_words, list):
        raise TypeError("words must be a list")
    words = []
    for raw in raw_words:
        if not isinstance(raw, dict):
            raise TypeError("a word must be an object")
        start, end = raw.get("start"), raw.get("end")
        words.append(
            Word(
                _str(raw["word"]),
                0.0 if start is None else _float(start),
                0.0 if end is None else _float(end),
                _float(raw["confidence"]),
                _str(raw["word"]),
            )
        )
    trigger = data.get("trigger")
    return TurnInfo(
        event=_str(event),
        turn_index=_int(data["turn_index"]),
        window_start=_float(data["audio_window_start"]),
        window_end=_float(data["audio_window_end"]),
        words=tuple(words),
        confidence=_float(data["end_of_turn_confidence"]),
        trigger=None if trigger is None else _str(trigger),
    )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, not {type(value).__name__}")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"expected a number, not {type(value).__name__}")
    return float(value)
