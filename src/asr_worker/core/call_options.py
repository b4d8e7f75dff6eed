"""What a call asks of its transcription, whichever route it came by.

Every route where a client can set options reads them here, in Deepgram's names and values,
so a call asks the same way everywhere and meets the same limits and the same errors: the
ingest socket's and dg-server's query (`from_query`), a telephony platform's custom parameters
(`from_parameters`: Twilio, Exotel), a JSON object of options (`from_fields`: the Redis bus
announcement, AudioHook's `customConfig`). The source that starts a call fixes its options
for the call's life; every provider stream the call opens (reconnects and the fallback's
too) is asked with them.

Two options: `keyterms` (the words the call is expected to use, `core.keyterms`) and `redact`
(what the worker must redact from the call's transcripts, `core.redact`), by Deepgram's names
and values: `pci`, `ssn`, `numbers`, `true` (Deepgram's default set, the same as `numbers`) and
`aggressive_numbers`, repeated or comma-separated. A value the worker cannot honour (`pii`,
`phi`, an entity name: they need an entity model) is refused, never silently ignored: a call
that asked for redaction must not think it has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import ParamError
from .keyterms import MAX_KEYTERMS, check_keyterms, distinct_terms, without_boost

# The names a call's options take; a route that mixes them with its own parameters (the
# ingest query's format, a platform's custom parameters) knows which are options.
OPTION_NAMES: Final = frozenset({"keyterm", "keyterms", "keywords", "redact"})

# Deepgram's `redact` values the worker redacts itself (core/redact.py says what each means).
REDACT_VALUES: Final = ("pci", "ssn", "numbers", "true", "aggressive_numbers")
_REDACT_KNOWN: Final = frozenset(REDACT_VALUES)
_MAX_REDACT_VALUES: Final = 16  # repeated values: more than every known one twice is junk


@dataclass(frozen=True, slots=True)
class CallOptions:
    keyterms: tuple[str, ...] = ()  # words the call is expected to use
    redact: frozenset[str] = frozenset()  # what its transcripts are redacted of (REDACT_VALUES)

    def with_redact(self, more: frozenset[str]) -> CallOptions:
        """These options, also redacting `more` (the process default, ASR_REDACT, adds to a
        call's own values)."""
        if more <= self.redact:
            return self
        return CallOptions(keyterms=self.keyterms, redact=self.redact | more)

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
            redact=parse_redact([value for key, value in query.items() if key == "redact"], "redact"),
        )

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> CallOptions:
        """A platform's custom parameters (one text each): `keyterm` one term, `keyterms`
        comma-separated."""
        single = distinct_terms([("keyterm", params["keyterm"])], "") if "keyterm" in params else ()
        listed = check_keyterms(params.get("keyterms", "").split(","), "keyterms")
        return cls(
            keyterms=check_keyterms([*single, *listed], "keyterm and keyterms"),
            redact=parse_redact([params.get("redact", "")], "redact"),
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, object], where: str) -> CallOptions:
        """A JSON object's fields, named `where` in errors (`customConfig`): `keyterms` a
        list of strings or one comma-separated string; `redact` the same."""
        return cls(
            keyterms=_json_terms(fields.get("keyterms"), f"{where}.keyterms" if where else "keyterms"),
            redact=_json_redact(fields.get("redact"), f"{where}.redact" if where else "redact"),
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
