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
`callback_finals` (true: it also receives each final as it happens). Only a URL's form is
checked here; where a webhook may go (the private-address policy) is checked when it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ..errors import ParamError
from .keyterms import MAX_KEYTERMS, check_keyterms, distinct_terms, without_boost

# The names a call's options take; a route that mixes them with its own parameters (the
# ingest query's format, a platform's custom parameters) knows which are options.
OPTION_NAMES: Final = frozenset(
    {"keyterm", "keyterms", "keywords", "language", "callback", "callback_finals"}
)

MULTI: Final = "multi"  # `language=multi`: the provider detects the language (and its changes)
MAX_CALLBACK_CHARS: Final = 2048
# A language code as Deepgram takes them: `en`, `en-US`, `es-419`, `zh-Hans`, `multi`.
_LANGUAGE: Final = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class CallOptions:
    keyterms: tuple[str, ...] = ()  # words the call is expected to use
    language: str | None = None  # a language code, or `multi`; None: the provider's configured one
    callback: str | None = None  # an http(s) URL the call's transcript document is POSTed to
    callback_finals: bool = False  # the callback also gets each final as it happens

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
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, object], where: str) -> CallOptions:
        """A JSON object's fields, named `where` in errors (`customConfig`): `keyterms` a
        list of strings or one comma-separated string; `language` and `callback` strings;
        `callback_finals` a boolean (or its text)."""

        def named(name: str) -> str:
            return f"{where}.{name}" if where else name

        return cls(
            keyterms=_json_terms(fields.get("keyterms"), named("keyterms")),
            language=check_language(_json_text(fields.get("language"), named("language")), named("language")),
            callback=check_callback(_json_text(fields.get("callback"), named("callback")), named("callback")),
            callback_finals=_json_flag(fields.get("callback_finals"), named("callback_finals")),
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
