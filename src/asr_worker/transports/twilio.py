"""`GET /v1/twilio`: Twilio Media Streams.

Point a `<Stream url="wss://HOST/v1/twilio">` at it, with `track="both_tracks"` for both sides
of the call and `<Parameter name="interaction_id" value="..."/>` to choose the call's id
(else the CallSid). Inbound audio is channel 0 (customer), outbound channel 1 (agent): both
tracks become ONE two-channel mu-law session, interleaved by `interleave.TrackInterleaver`,
so the call keeps one provider connection (Deepgram `multichannel=true`).

Twilio signs the stream's upgrade with `X-Twilio-Signature` (HMAC-SHA1 of the stream's URL,
keyed by the account's auth token), and cannot send a key of its own. With
`ASR_TWILIO_AUTH_TOKENS` set, a valid signature admits the stream, as the tenant its token
names; a key with `stream` scope admits it too (any form the worker reads).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from ..core.ids import DEFAULT_TENANT
from ..errors import AccessDenied
from ..http.auth import Guard, Route, key_guard
from ..settings import Section, Setting
from ..tenancy import Keyring, Principal, Scope, fingerprint
from . import twilio_messages
from .host import CallHost, bind
from .telephony import Platform, media_stream

PLATFORM = Platform(
    name="twilio",
    parse=twilio_messages.parse,
    max_message_chars=twilio_messages.MAX_MESSAGE_CHARS,
    channel_of_track={"inbound": 0, "outbound": 1},
)

SIGNATURE_HEADER: Final = "X-Twilio-Signature"


class AuthTokens:
    """`ASR_TWILIO_AUTH_TOKENS`: Twilio accounts' auth tokens, each with the tenant its streams
    belong to. Never printed."""

    __slots__ = ("_tokens",)

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = tokens

    @classmethod
    def parse(cls, text: str) -> AuthTokens | None:
        """Comma-separated `AUTH_TOKEN` or `AUTH_TOKEN:TENANT`; None when empty."""
        tokens: dict[str, str] = {}
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            token, _, tenant = entry.partition(":")
            if not token.strip() or any(c.isspace() for c in token.strip()):
                raise ValueError("must be comma-separated AUTH_TOKEN or AUTH_TOKEN:TENANT entries")
            tokens[token.strip()] = tenant.strip() or DEFAULT_TENANT
        return cls(tokens) if tokens else None

    def tenant_signing(self, url: str, signature: str) -> str | None:
        """The tenant whose auth token signed `url` with `signature`; every token is tried, in
        constant time each."""
        found: str | None = None
        given = signature.encode("utf-8", "surrogatepass")
        for token, tenant in self._tokens.items():
            if hmac.compare_digest(expected_signature(token, url).encode(), given) and found is None:
                found = tenant
        return found

    def revealed(self) -> tuple[str, ...]:
        return tuple(self._tokens)

    def __repr__(self) -> str:
        return f"AuthTokens(<{len(self._tokens)} hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuthTokens) and other._tokens == self._tokens

    def __hash__(self) -> int:
        return hash(frozenset(self._tokens.items()))


def expected_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's request signature: base64 of HMAC-SHA1 over the URL followed by every POST
    parameter's name and value, sorted by name (a stream's upgrade is a GET: none)."""
    data = url + "".join(f"{name}{value}" for name, value in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class TwilioOptions:
    auth_tokens: AuthTokens | None = None


SETTINGS: Final = Section(
    "twilio",
    "Twilio Media Streams",
    TwilioOptions,
    (
        Setting(
            "auth_tokens",
            "ASR_TWILIO_AUTH_TOKENS",
            "Twilio accounts' auth tokens (comma-separated AUTH_TOKEN or AUTH_TOKEN:TENANT): a stream "
            "whose upgrade carries a valid X-Twilio-Signature is admitted as that tenant's; never logged",
            AuthTokens.parse,
            secret=True,
        ),
    ),
)


def twilio_guard(keyring: Keyring, options: TwilioOptions) -> Guard:
    """A stream's upgrade signed by a configured account, or a key with `stream` scope."""
    by_key = key_guard(keyring, Scope.STREAM)
    tokens = options.auth_tokens

    def guard(request: web.Request) -> Principal:
        signature = request.headers.get(SIGNATURE_HEADER)
        if tokens is not None and signature is not None:
            # Twilio signs the URL it was given: wss://, the host it dialled, the path and query.
            url = f"wss://{request.host}{request.path_qs}"
            tenant = tokens.tenant_signing(url, signature)
            if tenant is not None:
                return Principal(tenant, frozenset({Scope.STREAM}), fingerprint(f"twilio:{tenant}"))
            if keyring.open:
                raise AccessDenied("unauthorized", f"the {SIGNATURE_HEADER} is not valid for this URL")
        return by_key(request)

    return guard


def routes(host: CallHost, options: TwilioOptions) -> list[Route]:
    guard = twilio_guard(host.keyring, options)
    return [Route("GET", "/v1/twilio", bind(host, twilio_socket), guard, long_lived=True)]


async def twilio_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await media_stream(host, request, PLATFORM)
