"""The live page in a real browser (Debian's chromium, driven by Playwright): a call's interim
text appears as provisional, its final settles, the call leaves when it ends. Screenshots of
a laptop and a narrow viewport go to test-artifacts/."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from asr_worker.core.events import Dtmf, SessionStarted, Transcript
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.client import connect

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian's chromium is not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def card(page: Page, interaction_id: str) -> str:
    return f'article.call[data-interaction-id="{interaction_id}"]'


async def test_a_call_appears_with_interim_then_final_text_and_leaves_when_it_ends(
    browser: Browser, http: aiohttp.ClientSession
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with running_worker(MockProvider()) as worker:
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(10_000)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        await page.goto(f"{base_url(worker)}/?token=t0k3n")
        await expect(page.locator("#link")).to_have_attribute("data-state", "live")
        await expect(page.locator('[data-field="provider"]')).to_have_text("mock")
        await expect(page.locator("#empty")).to_be_visible()

        await _call_on_the_page(page, http, worker)

        assert console_errors == []
        api = [u for u in requests if "/health" in u or "/v1/" in u]
        assert api and all("token=t0k3n" in u for u in api)  # the page carries ?token= through
        await page.close()


async def test_without_the_token_the_page_says_it_is_needed(browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with running_worker(MockProvider(), worker_token=Secret("t0k3n")) as worker:
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(10_000)
        for query, says in (("", "needs its token"), ("?token=wrong", "is not this worker's")):
            await page.goto(f"{base_url(worker)}/{query}")
            await expect(page.locator("#link")).to_have_attribute("data-state", "denied")
            await expect(page.locator("#link")).to_have_text("token needed")
            await expect(page.locator("#empty")).to_contain_text(says)
            await expect(page.locator('[data-field="provider"]')).to_have_text("mock")  # /health is open
        await page.screenshot(path=str(ARTIFACTS / "live-page-token-needed.png"))
        await page.goto(f"{base_url(worker)}/?token=t0k3n")
        await expect(page.locator("#link")).to_have_attribute("data-state", "live")
        await page.close()


async def _call_on_the_page(page: Page, http: aiohttp.ClientSession, worker: Worker) -> None:
    a, b, c = speechlike(0.6, seed=1), speechlike(0.4, seed=2), speechlike(0.4, seed=3)
    words = expected_words(a + b + c, PCM8K)
    call = await connect(http, worker, "page-call", "encoding=linear16&sample_rate=8000&tenant_id=acme")
    this = page.locator(card(page, "page-call"))
    await call.send_frames(frames(a))
    interim = this.locator(".line.interim")
    await expect(interim.locator(".text")).to_have_text(" ".join(words[:3]))
    await expect(interim.locator(".who")).to_have_text("Customer")
    assert await interim.locator(".text").evaluate("e => getComputedStyle(e).fontStyle") == "italic"
    assert await this.locator(".line.final").count() == 0

    # text from a call is shown as text, never as markup
    await call.ws.send_str(json.dumps({"type": "<img src=x onerror=document.title='pwned'>"}))
    await expect(this.locator(".call-error")).to_contain_text("<img src=x onerror=")
    assert await page.locator(".call img").count() == 0
    await expect(page.locator("#link")).to_have_attribute("data-state", "live")  # an error event is no outage

    await call.send_frames(frames(b))
    final = this.locator(".line.final")
    await expect(final.locator(".text")).to_have_text(" ".join(words[:5]))
    assert await final.locator(".text").evaluate("e => getComputedStyle(e).fontStyle") == "normal"
    await expect(final.locator(".at")).to_have_text("0:00.0")
    await call.send_frames(frames(c))
    await expect(interim.locator(".text")).to_have_text(" ".join(words[5:7]))
    _agent_side(worker)
    await expect(page.locator(card(page, "agent-view") + " .line.final .who")).to_have_text(
        ["Customer", "Agent"]
    )
    key = page.locator(card(page, "agent-view") + " .line.key")  # a key the customer pressed
    await expect(key.locator(".text")).to_have_text("pressed 5")
    await expect(key.locator(".who")).to_have_text("Customer")
    await expect(key.locator(".at")).to_have_text("0:03.6")
    # The agent's final for words said before the key press arrives after it: it goes above.
    worker.publish(
        Transcript(
            "agent-view",
            None,
            6,
            1,
            True,
            True,
            False,
            "can you confirm that",
            0.9,
            3.2,
            4.9,
            (),
            "mock",
            0,
            0,
        )
    )
    settled = page.locator(
        card(page, "agent-view") + " .line.final .at, " + card(page, "agent-view") + " .line.key .at"
    )
    await expect(settled).to_have_text(["0:00.4", "0:02.1", "0:03.2", "0:03.6"])
    await expect(page.locator('[data-field="calls"]')).to_have_text("1 / 1000")
    await expect(this.locator(".call-meta")).to_contain_text("tenant acme")

    await _screenshot(page, "live-page-laptop.png")
    await _narrow(page)
    await call.end()
    await call.collect()
    await expect(this).to_have_attribute("data-state", "ended (end)")
    await expect(this.locator(".line.final")).to_have_count(2)
    await expect(this).to_have_count(0)  # it leaves after lingering a few seconds
    assert await page.title() != "pwned"


def _agent_side(worker: Worker) -> None:
    """The mock provider hears channel 0 only; the agent's label is shown from events published
    through the real hub and SSE stream, as a two-channel provider would produce them."""
    call, at_ms = "agent-view", 1764300000000
    worker.publish(SessionStarted(call, None, 1, "mock", "mulaw", 8000, 2, at_ms))
    for seq, channel, text, start in (
        (2, 0, "hello I need help with my bill", 0.4),
        (3, 1, "sure, let me look", 2.1),
    ):
        worker.publish(
            Transcript(
                call,
                None,
                seq,
                channel,
                True,
                True,
                False,
                text,
                0.9,
                start,
                start + 1.5,
                (),
                "mock",
                0,
                at_ms,
            )
        )
    worker.publish(Dtmf(call, None, 4, "5", 0, 3.6, at_ms))
    worker.publish(
        Transcript(
            call, None, 5, 1, False, False, False, "can you confirm", 0.9, 4.0, 4.9, (), "mock", 0, at_ms
        )
    )


async def _screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


async def _narrow(page: Page) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator(card(page, "page-call"))).to_be_visible()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0  # nothing wider than a phone screen
    await _screenshot(page, "live-page-narrow.png")
