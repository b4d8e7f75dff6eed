"""What a call asks of its transcription, whichever route it came by.

Every route where a client can set options reads them here, in Deepgram's names and values,
so a call asks the same way everywhere and meets the same limits and the same errors: the
ingest socket's and dg-server's query (`from_query`), a telephony platform's custom parameters
(`from_parameters`: Twilio, Exotel), a JSON object of options (`from_fields`: the Redis bus
announcement, AudioHook's `customConfig`). The source that starts a call fixes its options
for the call's life; every provider stream the call opens (reconnects and the fallback's
too) is asked with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import ParamError
from .keyterms import MAX_KEYTERMS, check_keyterms, distinct_terms, without_boost

# The names a call's options take; a route that mixes them with its own parameters (the
# ingest query's format, a platform's custom parameters) knows which are options.
OPTION_NAMES: Final = frozenset({"keyterm", "keyterms", "keywords"})


@dataclass(frozen=True, slots=True)
class CallOptions:
    keyterms: tuple[str, ...] = ()  # words the call is expected to use

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> CallOptions:
        """A request's query, by Deepgram's names: every `keyterm` and `keywords` value (a
        multi-valued query's `items()` yields every pair), in order."""
        named = [
            (key, without_boost(value) if key == "keywords" else value)
            for key, value in query.items()
            if key in ("keyterm", "keywords")
        ]
        return cls(keyterms=distinct_terms(named, f"at most {MAX_KEYTERMS} keyterm/keywords values"))

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> CallOptions:
        """A platform's custom parameters (one text each): `keyterm` one term, `keyterms`
        comma-separated."""
        single = distinct_terms([("keyterm", params["keyterm"])], "") if "keyterm" in params else ()
        listed = check_keyterms(params.get("keyterms", "").split(","), "keyterms")
        return cls(keyterms=check_keyterms([*single, *listed], "keyterm and keyterms"))

    @classmethod
    def from_fields(cls, fields: Mapping[str, object], where: str) -> CallOptions:
        """A JSON object's fields, named `where` in errors (`customConfig`): `keyterms` a
        list of strings or one comma-separated string."""
        return cls(keyterms=_json_terms(fields.get("keyterms"), f"{where}.keyterms" if where else "keyterms"))


NO_OPTIONS: Final = CallOptions()  # a call that asks for nothing in particular


def _json_terms(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return check_keyterms(value.split(","), name)
    if isinstance(value, list) and all(isinstance(term, str) for term in value):
        return check_keyterms(value, name)
    raise ParamError(f"{name} must be a list of strings or a comma-separated string")
