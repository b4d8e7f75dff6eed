"""JSON on the wire: every event the worker sends and every message Deepgram sends it.

Events are typed values inside the worker (`core/events.py`); `dumps_event` is the one place
they become JSON, for every edge: the ingest sockets, SSE and the live page, the Redis bus,
`asr-worker transcribe --json`.

orjson, because at 500 calls the worker parses about 1,250 Deepgram results a second and
writes as many events: the standard library took 6.5 us to parse a result and 11 us to write
its event; orjson takes about a fifth of that (`bench/`, README). Its output is compact,
UTF-8, and says `null` for a NaN where the standard library would write invalid JSON.

A value orjson refuses (a string with a lone surrogate, an integer beyond 64 bits) is written
by the standard library instead, with non-ASCII escaped, so writing an event never fails on
its content.
"""

from __future__ import annotations

import json

import orjson

from .core.events import Event

__all__ = ["JSONDecodeError", "dumps", "dumps_event", "dumps_event_text", "dumps_text", "loads"]

JSONDecodeError = orjson.JSONDecodeError  # a ValueError, as json's is


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def dumps_text(value: object) -> str:
    """`dumps` as a str, for the APIs that take one (aiohttp's send_str, log lines)."""
    return dumps(value).decode()


def dumps_event(event: Event) -> bytes:
    """An event as the JSON its watchers receive: its fields in its documented order."""
    return dumps(event.wire())


def dumps_event_text(event: Event) -> str:
    """`dumps_event` as a str."""
    return dumps(event.wire()).decode()


def loads(data: str | bytes) -> object:
    """Parse JSON; raises JSONDecodeError (a ValueError) on invalid JSON, NaN and Infinity
    included, and on nesting deeper than 1,024."""
    return orjson.loads(data)
