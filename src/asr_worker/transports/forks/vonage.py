"""`GET /v1/vonage`: Vonage Voice API WebSockets (an NCCO `connect` to a `websocket` endpoint).

    {"action": "connect", "endpoint": [{"type": "websocket",
     "uri": "wss://HOST/v1/vonage?interaction_id=CALL_UUID",
     "content-type": "audio/l16;rate=16000", "authorization": {"type": "vonage"}}]}

With `"authorization": {"type": "vonage"}` Vonage puts the JWT it signs webhooks with in the
upgrade's `Authorization: Bearer` header: HS256, keyed by the account's signature secret. With
`ASR_VONAGE_SIGNATURE_SECRETS=SECRET:TENANT` (comma-separated, one per account) a socket whose
JWT one of them signed is admitted as that tenant's, if the token is fresh (`iat` within
`TOKEN_MAX_AGE_S`) and its `jti` is new to this worker; a worker key with `stream` scope admits a
socket too (`"authorization": {"type": "custom", "value": "Bearer KEY"}`, or `?token=KEY`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import jwt
from aiohttp import web

from ...core.ids import DEFAULT_TENANT
from ...errors import AccessDenied
from ...http.auth import Guard, Route, key_guard
from ...settings import Section, Setting
from ...tenancy import Keyring, Principal, Scope, fingerprint
from ..host import CallHost, bind
from . import vonage_messages
from .l16_socket import ForkPlatform, fork_socket

PLATFORM = ForkPlatform(
    name="vonage", start=vonage_messages.parse_start, control=vonage_messages.parse_control
)

# A signed upgrade older than this (by its `iat`) is refused: Vonage signs it as it dials.
TOKEN_MAX_AGE_S: Final = 300.0
# Allowance for the clocks of Vonage and this worker to differ.
CLOCK_SKEW_S: Final = 30.0
# HS256 keys shorter than this are refused at start (RFC 7518 wants a key as long as the hash;
# PyJWT warns at every use of a shorter one).
MIN_SECRET_BYTES: Final = 32
# Token ids seen lately, to refuse a replayed upgrade (bounded; older ones have expired anyway).
MAX_REMEMBERED_TOKENS: Final = 100_000


class SignatureSecrets:
    """`ASR_VONAGE_SIGNATURE_SECRETS`: Vonage accounts' signature secrets, each with the tenant
    its calls belong to. Never printed."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: dict[str, str]) -> None:
        self._secrets = secrets

    @classmethod
    def parse(cls, text: str) -> SignatureSecrets | None:
        """Comma-separated `SECRET` or `SECRET:TENANT`; None when empty."""
        secrets: dict[str, str] = {}
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            secret, _, tenant = entry.partition(":")
            if not secret.strip() or any(c.isspace() for c in secret.strip()):
                raise ValueError("must be comma-separated SECRET or SECRET:TENANT entries")
            if len(secret.strip().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"must hold secrets of at least {MIN_SECRET_BYTES} characters (HS256 keys)")
            secrets[secret.strip()] = tenant.strip() or DEFAULT_TENANT
        return cls(secrets) if secrets else None

    def verify(self, token: str, now_s: float) -> tuple[str, str] | None:
        """(tenant, token id) when one of the secrets signed `token` (HS256) and it is fresh;
        every secret is tried."""
        found: tuple[str, str] | None = None
        for secret, tenant in self._secrets.items():
            try:
                claims = jwt.decode(
                    token,
                    secret,
                    algorithms=["HS256"],
                    options={"require": ["iat"], "verify_iat": False},
                    leeway=CLOCK_SKEW_S,
                )
            except jwt.PyJWTError:
                continue
            issued = claims.get("iat")
            if not isinstance(issued, int | float) or not -CLOCK_SKEW_S <= now_s - issued <= TOKEN_MAX_AGE_S:
                continue
            if found is None:
                found = (tenant, str(claims.get("jti") or token[-43:]))
        return found

    def revealed(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def __repr__(self) -> str:
        return f"SignatureSecrets(<{len(self._secrets)} hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignatureSecrets) and other._secrets == self._secrets

    def __hash__(self) -> int:
        return hash(frozenset(self._secrets.items()))


@dataclass(frozen=True)
class VonageOptions:
    signature_secrets: SignatureSecrets | None = None


SETTINGS: Final = Section(
    "vonage",
    "Vonage Voice API WebSockets",
    VonageOptions,
    (
        Setting(
            "signature_secrets",
            "ASR_VONAGE_SIGNATURE_SECRETS",
            "Vonage accounts' signature secrets (comma-separated SECRET or SECRET:TENANT): a /v1/vonage "
            "socket whose upgrade carries a JWT one of them signed (the NCCO's authorization type vonage) "
            "is admitted as that tenant's; never logged",
            SignatureSecrets.parse,
            secret=True,
        ),
    ),
)


class _SeenTokens:
    """Token ids already admitted, oldest first, with when they stop mattering."""

    def __init__(self) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()

    def first_sighting(self, token_id: str, now_s: float) -> bool:
        while self._until and (
            next(iter(self._until.values())) < now_s or len(self._until) > MAX_REMEMBERED_TOKENS
        ):
            self._until.popitem(last=False)
        if token_id in self._until:
            return False
        self._until[token_id] = now_s + TOKEN_MAX_AGE_S + CLOCK_SKEW_S
        return True


def vonage_guard(keyring: Keyring, options: VonageOptions) -> Guard:
    """A socket whose upgrade a configured Vonage account signed, or a key with `stream` scope."""
    by_key = key_guard(keyring, Scope.STREAM)
    secrets = options.signature_secrets
    seen = _SeenTokens()

    def guard(request: web.Request) -> Principal:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if secrets is not None and scheme.lower() == "bearer" and token.count(".") == 2:
            now_s = time.time()
            verified = secrets.verify(token.strip(), now_s)
            if verified is not None:
                tenant, token_id = verified
                if not seen.first_sighting(token_id, now_s):
                    raise AccessDenied("unauthorized", "this signed upgrade was already used")
                return Principal(tenant, frozenset({Scope.STREAM}), fingerprint(f"vonage:{tenant}"))
            if keyring.open:
                raise AccessDenied("unauthorized", "the Vonage signature is not valid or not fresh")
        return by_key(request)

    return guard


def routes(host: CallHost, options: VonageOptions) -> list[Route]:
    guard = vonage_guard(host.keyring, options)
    return [Route("GET", "/v1/vonage", bind(host, vonage_socket), guard, long_lived=True)]


async def vonage_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await fork_socket(host, request, PLATFORM)
