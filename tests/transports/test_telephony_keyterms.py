"""A call's keyterms named in a telephony stream's custom parameters (`keyterm`, and the
comma-separated `keyterms`) reach the provider: a real worker, real Twilio- and Exotel-shaped
sockets, and the mock provider, whose streams keep the request they were opened with."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.telephony import (
    exotel_media,
    exotel_start,
    exotel_stop,
    twilio_media,
    twilio_start,
    twilio_stop,
    wait_until,
    ws_url,
)

TRACK = AudioFormat(Encoding.MULAW, 8000, 1)
PCM = AudioFormat(Encoding.LINEAR16, 8000, 1)
# TwiML gives one value per name: the list is comma-separated, spaces around a term dropped,
# a repeated term (whitespace runs are one space) kept once; `keyterm` comes first.
PARAMS = {"keyterms": "Acme Cloud, Zorblax ,order  ZX-1234,,Acme  Cloud", "keyterm": "Quux"}
EXPECTED = ("Quux", "Acme Cloud", "Zorblax", "order ZX-1234")


async def twilio_call(
    ws: aiohttp.ClientWebSocketResponse, call: str, params: dict[str, str], seconds: float = 0.4
) -> None:
    await ws.send_str(twilio_start(interaction_id=call, tracks=("inbound",), params=params))
    for i, chunk in enumerate(frames(speechlike(seconds, TRACK, seed=7), TRACK)):
        await ws.send_str(twilio_media("inbound", i + 1, 20 * i, chunk))


async def closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), f"worker sent {msg.data!r}"
    return msg


async def test_twilio_custom_parameters_name_the_calls_keyterms(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await twilio_call(ws, "tw-terms", PARAMS)
    await ws.send_str(twilio_stop())
    await closed(ws)
    assert ws.close_code == 1000
    [stream] = mock_provider.streams_for("tw-terms")
    assert stream.request.options.keyterms == EXPECTED


async def test_a_call_without_keyterm_parameters_asks_for_none(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await twilio_call(ws, "tw-plain", {"keyterms": " , "})
    await ws.send_str(twilio_stop())
    await closed(ws)
    assert mock_provider.streams_for("tw-plain")[0].request.options.keyterms == ()


async def test_a_twilio_socket_resuming_a_call_leaves_its_keyterms_and_reconnects_ask_for_them(
    http: aiohttp.ClientSession,
) -> None:
    """The first socket drops; the second, with other terms, continues the call on the same
    provider stream, and the call's terms stay the first socket's."""
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=5) as worker:
        first = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await twilio_call(first, "tw-resumed", {"keyterms": "Zorblax"})
        await first.close()
        runner = worker.manager.get(CallKey("default", "tw-resumed"))
        assert runner is not None
        await wait_until(lambda: runner.core.source_count == 0)
        second = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await twilio_call(second, "tw-resumed", {"keyterms": "Other,More"})
        await second.send_str(twilio_stop())
        await closed(second)
    assert [s.request.options.keyterms for s in provider.streams_for("tw-resumed")] == [("Zorblax",)]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"keyterms": "ok," + "x" * 101}, "keyterms[1] must be at most 100 characters"),
        ({"keyterm": "y" * 101}, "keyterm must be at most 100 characters"),
        ({"keyterms": ",".join(f"t{n}" for n in range(101))}, "keyterms: at most 100 terms"),
        (
            {"keyterms": ",".join(f"t{n}" for n in range(100)), "keyterm": "one more"},
            "keyterm and keyterms: at most 100 terms",
        ),
    ],
)
async def test_bad_keyterm_parameters_close_the_twilio_socket_with_the_reason_and_one_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    params: dict[str, str],
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.telephony")
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(twilio_start(interaction_id="tw-bad", params=params))
    msg = await closed(ws)
    assert ws.close_code == 1008 and msg.extra == reason
    assert worker.manager.sessions == []
    refusals = [r for r in caplog.records if r.getMessage() == "telephony stream refused"]
    assert len(refusals) == 1 and refusals[0].__dict__["code"] == "bad_request"
    assert refusals[0].__dict__["reason"] == reason


async def test_exotel_custom_parameters_and_the_applets_url_name_the_calls_keyterms(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    """Exotel's `start.custom_parameters` as Twilio's; on the URL too, where the start's win."""
    for call, path, params in [
        ("exo-terms", "/v1/exotel", PARAMS),
        ("exo-url", "/v1/exotel?keyterms=Zorblax,Acme%20Cloud&keyterm=Quux", {}),
        ("exo-both", "/v1/exotel?keyterms=Lost", {"keyterms": "Kept"}),
    ]:
        ws = await http.ws_connect(ws_url(worker, path))
        await ws.send_str(exotel_start(interaction_id=call, params=params))
        for i, chunk in enumerate(frames(speechlike(0.4, PCM, seed=5), PCM, ms=100)):
            await ws.send_str(exotel_media(i + 1, 100 * i, chunk))
        await ws.send_str(exotel_stop())
        await closed(ws)
        assert ws.close_code == 1000
    assert mock_provider.streams_for("exo-terms")[0].request.options.keyterms == EXPECTED
    assert mock_provider.streams_for("exo-url")[0].request.options.keyterms == (
        "Quux",
        "Zorblax",
        "Acme Cloud",
    )
    assert mock_provider.streams_for("exo-both")[0].request.options.keyterms == ("Kept",)


async def test_a_bad_exotel_keyterm_closes_the_socket_with_the_reason(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/exotel"))
    await ws.send_str(exotel_start(interaction_id="exo-bad", params={"keyterms": "z" * 101}))
    msg = await closed(ws)
    assert ws.close_code == 1008 and msg.extra == "keyterms[0] must be at most 100 characters"
    assert worker.manager.sessions == []
