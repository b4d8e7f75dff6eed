"""Sending one webhook: a signed POST, retried until it is taken or given up.

The reusable part of the worker's webhooks (the worker's deliveries use it, and so may any
command that sends a call's document, such as dg-server's `callback`):

* **Signed** as Standard Webhooks (standardwebhooks.com) has it, the scheme of Stripe's and
  Twilio's signatures made common: `webhook-id` (the idempotency key, the same on every try),
  `webhook-timestamp` (Unix seconds of this try) and `webhook-signature`
  (`v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the secret
  `ASR_WEBHOOK_SECRET`, `whsec_` + base64 bytes). Its libraries verify it in every language.
* **Retried** on a timeout, a failed connection, 408, 425, 429 and 5xx, up to
  `ASR_WEBHOOK_MAX_ATTEMPTS` tries, waiting `ASR_WEBHOOK_BACKOFF_S` doubled each time (at most
  `MAX_BACKOFF_S`, or what a 429's or 503's Retry-After says, within that) with full jitter,
  so that many deliveries failing together do not come back together. Any other answer (a
  4xx, a redirect it may not follow) is final: the delivery is dropped at once.
* **Only http and https, only where allowed**: a redirect is followed only to the same scheme,
  host and port (307 and 308, which keep the POST, at most `MAX_REDIRECTS`); with
  `ASR_WEBHOOK_PRIVATE_TARGETS=deny` a call's `callback` may not reach a loopback, private,
  link-local or otherwise non-public address: the host is resolved before connecting, every
  address it resolves to is checked, and the connection goes only to the addresses checked
  (so a name that resolves differently the second time gets nowhere). The operator's own
  `ASR_WEBHOOK_URL` is trusted.

Nothing here logs a target's path, query or credentials (a URL may carry a token), nor the
secret: a log line names a target by its scheme, host and port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Final, Self
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from prometheus_client import CollectorRegistry, Counter

from .. import __version__
from ..credentials import Secret
from ..settings import Section, Setting, boolean, choice, int_range, seconds

log = logging.getLogger("asr_worker.webhooks")

MAX_REDIRECTS: Final = 3
MAX_BACKOFF_S: Final = 60.0
SECRET_PREFIX: Final = "whsec_"
USER_AGENT: Final = f"asr-worker/{__version__}"


def webhook_secret(text: str) -> Secret | None:
    """ASR_WEBHOOK_SECRET: `whsec_` and the base64 of 24 to 64 random bytes (Standard
    Webhooks' form; `whsec_` may be left out)."""
    value = text.strip()
    if not value:
        return None
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be whsec_ followed by base64 (24 to 64 random bytes)") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must be whsec_ followed by base64 of 24 to 64 random bytes")
    return Secret(value)


def target_url(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value


@dataclass(frozen=True)
class WebhookOptions:
    url: str | None = field(default=None, repr=False)  # may hold a token
    secret: Secret | None = None
    finals: bool = False
    private_targets: str = "allow"
    timeout_s: float = 10.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    max_queued: int = 1000


SETTINGS: Final = Section(
    "webhooks",
    "webhooks",
    WebhookOptions,
    (
        Setting(
            "url",
            "ASR_WEBHOOK_URL",
            "POST every call's transcript document here when the call ends (signed; a call's own "
            "`callback` gets it too)",
            target_url,
        ),
        Setting(
            "secret",
            "ASR_WEBHOOK_SECRET",
            "the key webhooks are signed with (Standard Webhooks: whsec_ and base64); without it none "
            "is sent",
            webhook_secret,
            secret=True,
        ),
        Setting(
            "finals", "ASR_WEBHOOK_FINALS", "ASR_WEBHOOK_URL also gets each final as it happens", boolean
        ),
        Setting(
            "private_targets",
            "ASR_WEBHOOK_PRIVATE_TARGETS",
            "deny: a call's callback may not reach loopback, private or link-local addresses (set it "
            "where tenants name callbacks)",
            choice("allow", "deny"),
        ),
        Setting(
            "timeout_s",
            "ASR_WEBHOOK_TIMEOUT_S",
            "give one webhook try this long to answer",
            seconds(0.1, 120.0),
        ),
        Setting(
            "max_attempts",
            "ASR_WEBHOOK_MAX_ATTEMPTS",
            "try a webhook this many times (timeouts, 408, 429, 5xx) before dropping it",
            int_range(1, 20),
        ),
        Setting(
            "backoff_s",
            "ASR_WEBHOOK_BACKOFF_S",
            "wait about this long before a webhook's second try, doubled for each after it (jittered)",
            seconds(0.0, 60.0),
        ),
        Setting(
            "max_queued",
            "ASR_WEBHOOK_MAX_QUEUED",
            "hold at most this many webhooks waiting to be sent (more are dropped, counted)",
            int_range(1, 1_000_000),
        ),
    ),
)


# --- signing --------------------------------------------------------------------------------


def signing_key(secret: Secret) -> bytes:
    return base64.b64decode(secret.reveal().removeprefix(SECRET_PREFIX))


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `webhook-signature` value."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, webhook_id: str, body: bytes, now_s: float) -> dict[str, str]:
    timestamp = int(now_s)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, webhook_id, timestamp, body),
    }


# --- where a webhook may go ---------------------------------------------------------------------


class TargetRefused(OSError):
    """A target the policy does not allow (the resolver raises it as the OSError aiohttp
    expects of a lookup that failed)."""


def public_address(address: str) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local
    (cloud metadata), shared, reserved, unspecified and multicast ones."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses the host if any address it has is not public:
    the connection then goes only to the addresses checked here."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not found or not all(public_address(result["host"]) for result in found):
            raise TargetRefused(f"{host} resolves to an address webhooks may not reach")
        return found

    async def close(self) -> None:
        await self._inner.close()


def shown(url: str) -> str:
    """A target as a log line may name it: scheme, host and port, nothing that may be secret."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"
    except ValueError:
        return "(unparsable URL)"


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


# --- sending ----------------------------------------------------------------------------------


class Outcome(StrEnum):
    DELIVERED = "delivered"
    DROPPED = "dropped"


class WebhookMetrics:
    """Delivered, retried and dropped (by why) webhooks, in a registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "asr_webhook_delivered", "Webhooks the target took (2xx).", registry=registry
        )
        self.retried = Counter(
            "asr_webhook_retried", "Webhook tries that failed and were tried again.", registry=registry
        )
        self.dropped = Counter(
            "asr_webhook_dropped",
            "Webhooks given up: attempts (ASR_WEBHOOK_MAX_ATTEMPTS tries failed), refused (the target "
            "answered a 4xx or a redirect elsewhere), policy (ASR_WEBHOOK_PRIVATE_TARGETS), unsigned "
            "(no ASR_WEBHOOK_SECRET), queue_full, gone (the document expired first).",
            ["reason"],
            registry=registry,
        )


class _Final(Exception):
    """A try's answer that no further try can change."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class WebhookSender:
    """POSTs signed webhooks with retries; `async with` it to hold its connections."""

    def __init__(
        self,
        options: WebhookOptions,
        metrics: WebhookMetrics,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self._key = None if options.secret is None else signing_key(options.secret)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._guarded: aiohttp.ClientSession | None = None
        self._trusted: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        self._trusted = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64))
        self._guarded = self._trusted
        if self.options.private_targets == "deny":
            connector = aiohttp.TCPConnector(limit=64, resolver=PublicOnlyResolver())
            self._guarded = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for session in {self._guarded, self._trusted}:
            if session is not None:
                await session.close()

    async def send(self, target: str, webhook_id: str, body: bytes, *, trusted: bool, what: str) -> Outcome:
        """Deliver `body` to `target` (trusted: the operator's own URL, not held to the address
        policy), trying again as the module says; `what` names it in log lines."""
        if self._key is None:
            return self.drop("unsigned", target, what, "ASR_WEBHOOK_SECRET is not set: webhooks are off")
        attempts = self.options.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                status, retry_after_s = await self._try(target, webhook_id, body, trusted)
            except _Final as final:
                return self.drop(final.reason, target, what, str(final))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                failed, retry_after_s = _describe(exc), None
            else:
                if 200 <= status < 300:
                    self.metrics.delivered.inc()
                    log.info(
                        "webhook delivered",
                        extra={"what": what, "target": shown(target), "attempt": attempt, "id": webhook_id},
                    )
                    return Outcome.DELIVERED
                if status not in (408, 425, 429) and status < 500:
                    return self.drop("refused", target, what, f"the target answered HTTP {status}")
                failed = f"HTTP {status}"
            if attempt == attempts:
                return self.drop("attempts", target, what, f"{attempts} tries failed, the last: {failed}")
            self.metrics.retried.inc()
            await self._sleep(self._backoff_s(attempt, retry_after_s))
        raise AssertionError("unreachable")

    def drop(self, reason: str, target: str, what: str, why: str) -> Outcome:
        self.metrics.dropped.labels(reason).inc()
        log.warning(
            "webhook dropped", extra={"what": what, "target": shown(target), "reason": reason, "why": why}
        )
        return Outcome.DROPPED

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter over the doubled wait (AWS's advice for many clients failing at once);
        a Retry-After the target gave is the least wait, within MAX_BACKOFF_S."""
        ceiling = min(MAX_BACKOFF_S, self.options.backoff_s * 2 ** (attempt - 1))
        wait = self._rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, MAX_BACKOFF_S))
        return wait

    async def _try(
        self, target: str, webhook_id: str, body: bytes, trusted: bool
    ) -> tuple[int, float | None]:
        """One try: (status, Retry-After seconds), following same-origin 307/308 redirects."""
        session = self._trusted if trusted else self._guarded
        assert session is not None and self._key is not None, "use the sender in `async with`"
        url = target
        for _ in range(MAX_REDIRECTS + 1):
            if not trusted and self.options.private_targets == "deny":
                _check_literal(url)
            headers = signed_headers(self._key, webhook_id, body, self._wall_clock())
            try:
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                    status, location = response.status, response.headers.get("Location")
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, TargetRefused):
                    raise _Final("policy", str(exc.os_error)) from None
                raise
            if status not in (301, 302, 303, 307, 308):
                return status, retry_after
            following = urljoin(url, location or "")
            if status not in (307, 308) or not location or not _same_origin(following, url):
                raise _Final("refused", f"the target redirected (HTTP {status}) where webhooks do not follow")
            url = following
        raise _Final("refused", f"more than {MAX_REDIRECTS} redirects")


def _check_literal(url: str) -> None:
    """An address written in the URL is not resolved: check it here."""
    host = urlsplit(url).hostname or ""
    try:
        public = public_address(host)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not public:
        raise _Final("policy", f"{host} is an address webhooks may not reach")


def _retry_after_s(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _describe(exc: BaseException) -> str:
    """What failed, without the exception's text: some of aiohttp's quote the whole URL."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else type(cause).__name__
    return f"{type(exc).__name__} ({detail})"[:200]
