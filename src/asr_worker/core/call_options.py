"""What a call asks of its transcription, whichever route it came by.

Every route where a client can set options reads them here, in Deepgram's names and values,
so a call asks the same way everywhere and meets the same limits and the same errors: the
ingest socket's and dg-server's query (`from_query`), a telephony platform's custom parameters
(`from_parameters`: Twilio, Exotel), a JSON object of options (`from_fields`: the Redis bus
announcement, AudioHook's `customConfig`). The source that starts a call fixes its options
for the call's life; every provider stream the call opens (reconnects and the fallback's
too) is asked with them.

The options: `keyterm` (words the call is expected to use, `core/keyterms.py`); `language`
(Deepgram's codes, `en`, `es-419`, or `multi` to detect); `callback` (Deepgram's: an http or
https URL that receives the call's transcript document when it ends, signed) and
`callback_finals` (true: it also receives each final as it happens); `redact` (what the worker
must redact from the call's transcripts, `core/redact.py`): Deepgram's `pci`, `ssn`,
`numbers`, `true` (Deepgram's default set, the same as `numbers`) and `aggressive_numbers`,
repeated or comma-separated. Only a URL's form is checked here; where a webhook may go (the
private-address policy) is checked when it is sent. A `redact` value the worker cannot honour
(`pii`, `phi`, an entity name: they need an entity model) is refused, never silently ignored: a
call that asked for redaction must not think it has it.

How its transcripts are written and when its utterances end, by Deepgram's names: `endpointing`
(the milliseconds of silence that end an utterance with a `speech_final` result, or `false`),
`utterance_end_ms` (the gap after the last word that makes an `utterance_end`), and the
formatting options (`FormatOptions`: `punctuate`, `smart_format`, `numerals`,
`profanity_filter`, `filler_words`, `dictation`, `measurements`, `search` and `replace`, which
`core/formatting.py` applies where a provider does not). An option a call does not name is
None: its provider does as it always does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import urlsplit

from ..errors import ParamError
from .keyterms import MAX_KEYTERMS, check_keyterms, distinct_terms, without_boost

# The names a call's options take; a route that mixes them with its own parameters (the
# ingest query's format, a platform's custom parameters) knows which are options.
FORMAT_FLAGS: Final = (
    "punctuate",
    "smart_format",
    "numerals",
    "profanity_filter",
    "filler_words",
    "dictation",
    "measurements",
)
OPTION_NAMES: Final = frozenset(
    {
        "keyterm",
        "keyterms",
        "keywords",
        "language",
        "callback",
        "callback_finals",
        "redact",
        "endpointing",
        "utterance_end_ms",
        "search",
        "replace",
        *FORMAT_FLAGS,
    }
)

MULTI: Final = "multi"  # `language=multi`: the provider detects the language (and its changes)
MAX_CALLBACK_CHARS: Final = 2048
# A language code as Deepgram takes them: `en`, `en-US`, `es-419`, `zh-Hans`, `multi`.
_LANGUAGE: Final = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off", ""})
# Deepgram's `redact` values the worker redacts itself (core/redact.py says what each means).
REDACT_VALUES: Final = ("pci", "ssn", "numbers", "true", "aggressive_numbers")
_REDACT_KNOWN: Final = frozenset(REDACT_VALUES)
_MAX_REDACT_VALUES: Final = 16  # repeated values: more than every known one twice is junk
ENDPOINTING_OFF: Final = -1  # `endpointing=false`: no speech_final, whatever the silence
MAX_ENDPOINTING_MS: Final = 60_000
UTTERANCE_END_MS: Final = (1000, 5000)  # Deepgram's range for `utterance_end_ms`
MAX_SEARCH_TERMS: Final = 50  # Deepgram's limit
MAX_REPLACEMENTS: Final = 200
MAX_TERM_CHARS: Final = 100  # of a search term, or either side of a replacement


@dataclass(frozen=True, slots=True)
class FormatOptions:
    """How a call's transcripts are written, by Deepgram's names. A flag the call does not
    name is None: the provider writes as it always does (dg-server fills them with Deepgram's
    defaults, `with_defaults`). `search`: terms whose hits each result reports; `replace`:
    (find, replacement) pairs, a replacement of "" removing what is found."""

    punctuate: bool | None = None
    smart_format: bool | None = None
    numerals: bool | None = None
    profanity_filter: bool | None = None
    filler_words: bool | None = None
    dictation: bool | None = None
    measurements: bool | None = None
    search: tuple[str, ...] = ()
    replace: tuple[tuple[str, str], ...] = ()

    def flag(self, name: str) -> bool | None:
        """One of FORMAT_FLAGS by its name."""
        if name == "punctuate":
            return self.punctuate
        if name == "smart_format":
            return self.smart_format
        if name == "numerals":
            return self.numerals
        if name == "profanity_filter":
            return self.profanity_filter
        if name == "filler_words":
            return self.filler_words
        if name == "dictation":
            return self.dictation
        if name == "measurements":
            return self.measurements
        raise KeyError(name)

    def with_flags(self, flags: Mapping[str, bool | None]) -> FormatOptions:
        """These options with the flags named in `flags` set (Configure's `features`)."""
        values = {name: flags[name] if name in flags else self.flag(name) for name in FORMAT_FLAGS}
        return FormatOptions(
            punctuate=values["punctuate"],
            smart_format=values["smart_format"],
            numerals=values["numerals"],
            profanity_filter=values["profanity_filter"],
            filler_words=values["filler_words"],
            dictation=values["dictation"],
            measurements=values["measurements"],
            search=self.search,
            replace=self.replace,
        )

    def with_defaults(self, default: bool) -> FormatOptions:
        """Every flag the call did not name set to `default` (Deepgram's are all false)."""
        unset = {name: default for name in FORMAT_FLAGS if self.flag(name) is None}
        return self.with_flags(unset) if unset else self


NO_FORMAT: Final = FormatOptions()


@dataclass(frozen=True, slots=True)
class CallOptions:
    keyterms: tuple[str, ...] = ()  # words the call is expected to use
    language: str | None = None  # a language code, or `multi`; None: the provider's configured one
    callback: str | None = None  # an http(s) URL the call's transcript document is POSTed to
    callback_finals: bool = False  # the callback also gets each final as it happens
    redact: frozenset[str] = frozenset()  # what its transcripts are redacted of (REDACT_VALUES)
    # Silence that ends an utterance (speech_final), in ms; ENDPOINTING_OFF: never; None: the
    # provider's own.
    endpointing_ms: int | None = None
    utterance_end_ms: int | None = (
        None  # gap after the last word that ends an utterance; None: the provider's
    )
    format: FormatOptions = NO_FORMAT  # how its transcripts are written

    def with_redact(self, more: frozenset[str]) -> CallOptions:
        """These options, also redacting `more` (the process default, ASR_REDACT, adds to a
        call's own values)."""
        if more <= self.redact:
            return self
        return replace(self, redact=self.redact | more)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> CallOptions:
        """A request's query, by Deepgram's names: every `keyterm` and `keywords` value (a
        multi-valued query's `items()` yields every pair), in order."""
        named = [
            (key, without_boost(value) if key == "keywords" else value)
            for key, value in query.items()
            if key in ("keyterm", "keywords")
        ]
        return cls(
            keyterms=distinct_terms(named, f"at most {MAX_KEYTERMS} keyterm/keywords values"),
            language=check_language(query.get("language"), "language"),
            callback=check_callback(query.get("callback"), "callback"),
            callback_finals=_flag(query.get("callback_finals"), "callback_finals"),
            redact=parse_redact([value for key, value in query.items() if key == "redact"], "redact"),
            endpointing_ms=check_endpointing(query.get("endpointing"), "endpointing"),
            utterance_end_ms=check_utterance_end(query.get("utterance_end_ms"), "utterance_end_ms"),
            format=parse_format(lambda name: [v for k, v in query.items() if k == name], ""),
        )

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> CallOptions:
        """A platform's custom parameters (one text each): `keyterm` one term, `keyterms`
        comma-separated."""
        single = distinct_terms([("keyterm", params["keyterm"])], "") if "keyterm" in params else ()
        listed = check_keyterms(params.get("keyterms", "").split(","), "keyterms")
        return cls(
            keyterms=check_keyterms([*single, *listed], "keyterm and keyterms"),
            language=check_language(params.get("language"), "language"),
            callback=check_callback(params.get("callback"), "callback"),
            callback_finals=_flag(params.get("callback_finals"), "callback_finals"),
            redact=parse_redact([params.get("redact", "")], "redact"),
            endpointing_ms=check_endpointing(params.get("endpointing"), "endpointing"),
            utterance_end_ms=check_utterance_end(params.get("utterance_end_ms"), "utterance_end_ms"),
            format=parse_format(lambda name: _listed(params.get(name), name), ""),
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, object], where: str) -> CallOptions:
        """A JSON object's fields, named `where` in errors (`customConfig`): `keyterms` a
        list of strings or one comma-separated string; `language` and `callback` strings;
        `callback_finals` a boolean (or its text); `redact` as keyterms; `endpointing` a
        number of ms or false; `utterance_end_ms` a number; the formatting flags booleans;
        `search` and `replace` as keyterms (`replace` also an object of find: replacement)."""

        def named(name: str) -> str:
            return f"{where}.{name}" if where else name

        return cls(
            keyterms=_json_terms(fields.get("keyterms"), named("keyterms")),
            language=check_language(_json_text(fields.get("language"), named("language")), named("language")),
            callback=check_callback(_json_text(fields.get("callback"), named("callback")), named("callback")),
            callback_finals=_json_flag(fields.get("callback_finals"), named("callback_finals")),
            redact=_json_redact(fields.get("redact"), named("redact")),
            endpointing_ms=check_endpointing(
                _json_scalar(fields.get("endpointing"), named("endpointing")), named("endpointing")
            ),
            utterance_end_ms=check_utterance_end(
                _json_scalar(fields.get("utterance_end_ms"), named("utterance_end_ms")),
                named("utterance_end_ms"),
            ),
            format=parse_format(lambda name: _json_values(fields.get(name), named(name)), where),
        )


NO_OPTIONS: Final = CallOptions()  # a call that asks for nothing in particular


def _json_terms(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return check_keyterms(value.split(","), name)
    if isinstance(value, list) and all(isinstance(term, str) for term in value):
        return check_keyterms(value, name)
    raise ParamError(f"{name} must be a list of strings or a comma-separated string")


def check_language(value: str | None, name: str) -> str | None:
    """A language code as Deepgram names them (`en`, `en-US`, `es-419`), or `multi`; None for
    none (blank too). ParamError naming `name` for anything else."""
    if value is None or not value.strip():
        return None
    code = value.strip()
    if code.lower() == MULTI:
        return MULTI
    if len(code) > 35 or not _LANGUAGE.fullmatch(code):
        raise ParamError(f"{name} must be a language code such as en, en-US or es-419, or multi")
    return code


def check_callback(value: str | None, name: str) -> str | None:
    """An http or https URL with a host (Deepgram's `callback`); None for none (blank too).
    ParamError naming `name` for anything else; the message never repeats the URL, which
    may hold a token."""
    if value is None or not value.strip():
        return None
    url = value.strip()
    try:
        parts = urlsplit(url)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and parts.port != 0
            and len(url) <= MAX_CALLBACK_CHARS
            and url.isprintable()
            and not any(c.isspace() for c in url)
        )
    except ValueError:  # a bad port or IPv6 address
        valid = False
    if not valid:
        raise ParamError(
            f"{name} must be an http:// or https:// URL of at most {MAX_CALLBACK_CHARS} characters"
        )
    return url


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ParamError(f"{name} must be true or false")


def _json_text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ParamError(f"{name} must be a string")


def _json_flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or isinstance(value, str):
        return _flag(value, name)
    raise ParamError(f"{name} must be true or false")


def parse_redact(values: list[str], name: str) -> frozenset[str]:
    """`redact` values as Deepgram takes them: each value may itself be comma-separated,
    case and spaces do not matter, `false` and empty ones ask for nothing. ParamError names
    `name` and the value the worker cannot honour."""
    if len(values) > _MAX_REDACT_VALUES:
        raise ParamError(f"at most {_MAX_REDACT_VALUES} {name} values")
    found: set[str] = set()
    for value in values:
        for part in value.split(","):
            item = part.strip().lower()
            if not item or item == "false":
                continue
            if item not in _REDACT_KNOWN:
                raise ParamError(
                    f"{name} {part.strip()[:30]!r} is not redacted here; one of {', '.join(REDACT_VALUES)} "
                    "(names, addresses and health data need an entity model, docs/redaction.md)"
                )
            found.add(item)
    return frozenset(found)


def _json_redact(value: object, name: str) -> frozenset[str]:
    if value is None or value is False:
        return frozenset()
    if value is True:
        return frozenset({"true"})
    if isinstance(value, str):
        return parse_redact([value], name)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return parse_redact(value, name)
    raise ParamError(f"{name} must be a list of strings or a comma-separated string")


def check_endpointing(value: str | None, name: str) -> int | None:
    """Deepgram's `endpointing`: milliseconds of silence, `false` (ENDPOINTING_OFF), or `true`
    and nothing (None: the provider's own)."""
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    if text == "false":
        return ENDPOINTING_OFF
    if text == "true":
        return None
    return _whole(text, name, 0, MAX_ENDPOINTING_MS, "a number of milliseconds, or false")


def check_utterance_end(value: str | None, name: str) -> int | None:
    """Deepgram's `utterance_end_ms`, in its range; None for none."""
    if value is None or not value.strip():
        return None
    lo, hi = UTTERANCE_END_MS
    return _whole(value.strip(), name, lo, hi, "a number of milliseconds")


def _whole(text: str, name: str, lo: int, hi: int, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ParamError(f"{name} must be {what}, not {text[:20]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ParamError(f"{name} must be from {lo} to {hi}, not {value}")
    return value


def parse_format(values_of: Callable[[str], list[str]], where: str) -> FormatOptions:
    """The formatting options from `values_of(name)`, every value given for a name (a repeated
    query parameter; a list split from one text). ParamError names the option (after `where.`)."""

    def named(name: str) -> str:
        return f"{where}.{name}" if where else name

    flags: dict[str, bool | None] = {}
    for name in FORMAT_FLAGS:
        values = values_of(name)
        flags[name] = _flag(values[-1], named(name)) if values and values[-1].strip() else None
    terms = [term.strip() for term in values_of("search") if term.strip()]
    if len(terms) > MAX_SEARCH_TERMS:
        raise ParamError(f"at most {MAX_SEARCH_TERMS} {named('search')} terms")
    for term in terms:
        if len(term) > MAX_TERM_CHARS:
            raise ParamError(f"a {named('search')} term is at most {MAX_TERM_CHARS} characters")
    pairs = [_replacement(value, named("replace")) for value in values_of("replace") if value.strip()]
    if len(pairs) > MAX_REPLACEMENTS:
        raise ParamError(f"at most {MAX_REPLACEMENTS} {named('replace')} values")
    options = FormatOptions(search=tuple(dict.fromkeys(terms)), replace=tuple(pairs))
    return options.with_flags(flags) if any(v is not None for v in flags.values()) else options


def _replacement(value: str, name: str) -> tuple[str, str]:
    """`find:replacement` (Deepgram's form); an empty replacement removes what is found."""
    find, sep, replacement = value.partition(":")
    find, replacement = find.strip(), replacement.strip()
    if not sep or not find:
        raise ParamError(f"{name} must be find:replacement, such as acme:Acme")
    if len(find) > MAX_TERM_CHARS or len(replacement) > MAX_TERM_CHARS:
        raise ParamError(f"each side of a {name} value is at most {MAX_TERM_CHARS} characters")
    return find, replacement


def _listed(value: str | None, name: str) -> list[str]:
    """A platform parameter's text as values: `search` and `replace` comma-separated."""
    if value is None:
        return []
    if name in ("search", "replace"):
        return value.split(",")
    return [value]


def _json_scalar(value: object, name: str) -> str | None:
    """A JSON number, boolean or string option as the text a query would carry."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise ParamError(f"{name} must be a number or true or false")


def _json_values(value: object, name: str) -> list[str]:
    """A JSON option as query values: a boolean, a string (comma-separated for a list), a list
    of strings, or (for `replace`) an object of find: replacement."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str):
        return value.split(",") if name.endswith(("search", "replace")) else [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [str(item) for item in value]
    if (
        isinstance(value, dict)
        and name.endswith("replace")
        and all(isinstance(v, str) for v in value.values())
    ):
        return [f"{find}:{replacement}" for find, replacement in value.items()]
    raise ParamError(f"{name} must be true or false, a string, or a list of strings")
