"""Credentials: values that are never printed, and the bearer token a request presents.

Accepted forms: `Authorization: Bearer TOKEN`; the WebSocket subprotocol
`openai-insecure-api-key.TOKEN` (OpenAI's Realtime clients in browsers); HTTP Basic with TOKEN as the password
(telephony platforms such as Exotel dial `wss://KEY:TOKEN@host/...`); and `?token=TOKEN` on
GET requests, because browsers cannot set headers on WebSockets or EventSource. Comparison is
constant-time; the token is never logged or echoed.

Both serving paths check tokens with these functions: aiohttp's middleware (`http.auth`) and
the raw ingest socket (`transports.ingest_raw`), which aiohttp never sees.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

log = logging.getLogger("asr_worker.auth")

UNAUTHORIZED_HEADERS: Final = (("WWW-Authenticate", 'Bearer realm="asr-worker"'),)


@runtime_checkable
class Secrets(Protocol):
    """Something that holds secret text (a key, a list of keys and their signing secrets)."""

    def revealed(self) -> tuple[str, ...]:
        """Every secret text it holds, for the log formatter to hide wherever it appears."""
        ...


class Secret:
    """A value that must never be printed: its repr and str hide it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def revealed(self) -> tuple[str, ...]:
        return (self._value,)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# OpenAI's browser clients offer the key as a WebSocket subprotocol (they cannot set headers).
OPENAI_KEY_SUBPROTOCOL: Final = "openai-insecure-api-key."
# Deepgram's browser clients offer `token, KEY`; a server selects `token`.
TOKEN_SUBPROTOCOL: Final = "token"


def presented_credentials(
    method: str, header: str, query: Mapping[str, str], subprotocols: str = ""
) -> list[str]:
    """Every credential in a request's Authorization header, (on GET) its query, and its
    offered WebSocket subprotocols: `openai-insecure-api-key.TOKEN` (OpenAI's browser clients)
    and `token, KEY` (Deepgram's)."""
    tokens: list[str] = []
    offered = [item.strip() for item in subprotocols.split(",") if item.strip()]
    for item in offered:
        if item.startswith(OPENAI_KEY_SUBPROTOCOL) and len(item) > len(OPENAI_KEY_SUBPROTOCOL):
            tokens.append(item[len(OPENAI_KEY_SUBPROTOCOL) :])
    if len(offered) == 2 and offered[0].lower() == TOKEN_SUBPROTOCOL:
        tokens.append(offered[1])
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value:  # `Token KEY`: how Deepgram's clients send a key
        tokens.append(value.strip())
    elif scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):  # not base64, not ASCII text, or not UTF-8 inside
            decoded = ""
        _, sep, password = decoded.partition(":")
        if sep:
            tokens.append(password)
    if method == "GET" and "token" in query:
        tokens.append(query["token"])
    return tokens


def token_matches(expected: Secret, presented: Sequence[str]) -> bool:
    # Header and query text may hold lone surrogates (undecodable bytes): surrogatepass
    # encodes anything, and such a candidate simply does not match.
    want = expected.reveal().encode("utf-8", "surrogatepass")
    # compare against every presented form, without stopping early, in constant time each
    results = [
        hmac.compare_digest(want, candidate.encode("utf-8", "surrogatepass")) for candidate in presented
    ]
    return any(results)
