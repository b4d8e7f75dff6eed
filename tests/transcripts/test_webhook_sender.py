"""One webhook, sent by the reusable sender against a real HTTP server: Standard Webhooks'
signature (its own library agrees), what is tried again and what is final, redirects, the
jittered backoff and Retry-After, and a sender without a secret sending nothing."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from asr_worker.config import load_settings
from asr_worker.errors import ConfigError
from asr_worker.transcripts.webhooks import (
    Outcome,
    WebhookMetrics,
    WebhookOptions,
    WebhookSender,
    public_address,
    signature,
    signing_key,
    webhook_secret,
)
from tests.conftest import free_port
from tests.support.webhooks import SECRET, secret, webhook_target

BODY = b'{"type":"transcript.final","data":{"text":"hola"}}'


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def sender(
    sleeps: Sleeps | None = None, *, signed: bool = True, max_attempts: int = 6, backoff_s: float = 1.0
) -> tuple[WebhookSender, CollectorRegistry]:
    registry = CollectorRegistry()
    chosen = WebhookOptions(
        secret=secret() if signed else None, max_attempts=max_attempts, backoff_s=backoff_s
    )
    return WebhookSender(
        chosen, WebhookMetrics(registry), rng=random.Random(7), sleep=sleeps or Sleeps()
    ), registry


def test_the_signature_is_standard_webhooks() -> None:
    key = signing_key(secret())
    at = 1_764_300_000
    ours = signature(key, "fin_1", at, BODY)
    assert ours == Webhook(SECRET).sign("fin_1", datetime.fromtimestamp(at, UTC), BODY.decode())


@pytest.mark.parametrize("bad", ["whsec_not base64!", "whsec_" + "QUJD" * 2, "c2hvcnQ="])
def test_a_secret_must_be_whsec_and_24_to_64_bytes(bad: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        webhook_secret(bad)
    assert webhook_secret(SECRET.removeprefix("whsec_")) is not None and webhook_secret(" ") is None


async def test_a_4xx_is_final_and_a_429_waits_as_long_as_it_says() -> None:
    sleeps = Sleeps()
    send, registry = sender(sleeps, max_attempts=4)
    async with webhook_target([404]) as gone, webhook_target([429]) as busy, send:
        assert await send.send(gone.url(), "k1", BODY, trusted=False, what="t") is Outcome.DROPPED
        assert len(gone.received) == 1
        assert await send.send(busy.url(), "k2", BODY, trusted=False, what="t") is Outcome.DELIVERED
    assert registry.get_sample_value("asr_webhook_dropped_total", {"reason": "refused"}) == 1
    assert sleeps.waits == [0.0] or sleeps.waits[0] <= 1.0  # no Retry-After: jitter within 1 s
    Webhook(SECRET).verify(busy.received[1].body, busy.received[1].headers)


async def test_backoff_doubles_with_full_jitter_and_retry_after_is_the_least() -> None:
    sleeps = Sleeps()
    send, registry = sender(sleeps, max_attempts=5, backoff_s=2.0)
    async with webhook_target([503, 503, 503, 503, 503]) as down, send:
        assert await send.send(down.url(), "k", BODY, trusted=True, what="t") is Outcome.DROPPED
    assert len(sleeps.waits) == 4 and all(0 <= w <= 2.0 * 2**n for n, w in enumerate(sleeps.waits))
    assert registry.get_sample_value("asr_webhook_retried_total") == 4
    assert registry.get_sample_value("asr_webhook_dropped_total", {"reason": "attempts"}) == 1

    async def retry_after(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "30"})

    slept = Sleeps()
    send, _ = sender(slept, max_attempts=2)
    async with posting(retry_after) as here, send:
        await send.send(f"{here}/later", "k", BODY, trusted=True, what="t")
    assert slept.waits == [30.0]


async def test_redirects_are_followed_only_to_the_same_origin_and_keep_the_post() -> None:
    hops: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        hops.append(request.path)
        assert await request.read() == BODY
        if "to" in request.query:
            return web.Response(
                status=int(request.query["status"]), headers={"Location": request.query["to"]}
            )
        return web.Response(status=204)

    send, registry = sender()
    async with webhook_target() as target, posting(moved) as here, send:
        same = f"{here}/old?status=308&to=/new"
        assert await send.send(same, "k", BODY, trusted=False, what="t") is Outcome.DELIVERED
        elsewhere = f"{here}/old?status=307&to={quote(target.url())}"
        assert await send.send(elsewhere, "k", BODY, trusted=False, what="t") is Outcome.DROPPED
        found = f"{here}/old?status=302&to=/new"
        assert await send.send(found, "k", BODY, trusted=False, what="t") is Outcome.DROPPED
    assert hops == ["/old", "/new", "/old", "/old"]
    assert target.received == []  # never followed to another host
    assert registry.get_sample_value("asr_webhook_dropped_total", {"reason": "refused"}) == 2


@contextlib.asynccontextmanager
async def posting(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A server answering POSTs on any path with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_post("/{name}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_without_a_secret_nothing_is_sent() -> None:
    send, registry = sender(signed=False)
    async with webhook_target() as target, send:
        assert await send.send(target.url(), "k", BODY, trusted=True, what="t") is Outcome.DROPPED
    assert target.received == []
    assert registry.get_sample_value("asr_webhook_dropped_total", {"reason": "unsigned"}) == 1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert public_address(address) is public


def test_a_webhook_url_without_a_secret_does_not_start() -> None:
    with pytest.raises(ConfigError, match=r"^ASR_WEBHOOK_URL needs ASR_WEBHOOK_SECRET"):
        load_settings({"ASR_WEBHOOK_URL": "https://crm.example/hooks"})
    assert load_settings({"ASR_WEBHOOK_URL": "https://crm.example/hooks", "ASR_WEBHOOK_SECRET": SECRET})
