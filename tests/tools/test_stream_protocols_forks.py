"""`asr-worker stream` on the media-fork routes, beyond the call every route plays
(tests/tools/test_stream.py): a two-channel file is the call's two legs where the platform
sends them apart; what the tool writes is shaped as each platform's documentation shows it
(tests/transports/fixtures); Vonage's signed upgrade is one Vonage's own SDK verifies;
AudioSocket's calls are named by UUIDs, and its refusals, jambonz's speech-vendor refusals and
a server that is not the worker each say what happened."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from vonage_jwt import verify_signature

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tools import protocols
from asr_worker.tools.audio_files import AudioFile, convert
from asr_worker.tools.protocols.base import CallSpec, Keys
from asr_worker.tools.protocols.exotel import ExotelMessages
from asr_worker.tools.protocols.jambonz import PROTOCOL as JAMBONZ
from asr_worker.tools.protocols.plivo import PlivoMessages
from asr_worker.tools.protocols.signalwire import SignalWireMessages
from asr_worker.tools.protocols.telnyx import TelnyxMessages
from asr_worker.tools.protocols.twilio import TwilioMessages
from asr_worker.tools.protocols.vonage import PROTOCOL as VONAGE
from asr_worker.tools.protocols.vonage import signed_token
from asr_worker.tools.stream import stream_calls
from asr_worker.transports.forks import jambonz_stt_messages
from asr_worker.transports.forks.audiosocket import networks
from tests.conftest import free_port, running_worker
from tests.support.audio import PCM8K, speechlike
from tests.support.telephony import fixture_text
from tests.tools.test_stream import AUDIO, KEYS, VONAGE_SECRET, audiosocket_port, worker_with_keys

STEREO16K = AudioFormat(Encoding.LINEAR16, 16000, 2)
PCM16K = AudioFormat(Encoding.LINEAR16, 16000, 1)
CALLER, CALLEE = speechlike(1.0, PCM16K), speechlike(1.0, PCM16K, seed=9)
BOTH_LEGS = AudioFile(
    Path("both.wav"),
    STEREO16K,
    b"".join(CALLER[i : i + 2] + CALLEE[i : i + 2] for i in range(0, len(CALLER), 2)),
)


@pytest.mark.parametrize("protocol", ["freeswitch", "jambonz", "telnyx", "plivo", "signalwire"])
async def test_a_two_channel_file_is_the_calls_two_legs_the_caller_on_channel_0(protocol: str) -> None:
    """FreeSWITCH's and jambonz's stereo mix, the inbound and outbound tracks of the others:
    the worker's call has the file's two channels, every byte in its place."""
    out = io.StringIO()
    mock = MockProvider()
    async with worker_with_keys(mock) as worker:
        (result,) = await stream_calls(
            BOTH_LEGS,
            f"ws://127.0.0.1:{worker.port}",
            protocol=protocol,
            interaction_id="legs-1",
            speed=0,
            keys=KEYS[protocol],
            out=out,
        )
    assert result.ended is not None and not result.errors
    assert "2 channels" in out.getvalue().splitlines()[0]
    played = convert(BOTH_LEGS, protocols.load(protocol).call_format(STEREO16K))
    (stream,) = mock.streams_for("legs-1")
    assert stream.request.fmt == played.fmt and stream.request.fmt.channels == 2
    assert bytes(stream.received) == played.data
    assert " ".join(result.finals).split() == expected_words(played.data, played.fmt)


# --- the messages, as each platform's documentation shows them ---------------------------------


def shape(value: object, path: str = "") -> set[str]:
    """Each field's path and the JSON type of its value (a list's items as `[]`)."""
    kind = type(value).__name__
    found = {f"{path}:{kind}"}
    if isinstance(value, dict):
        for name, item in value.items():
            found |= shape(item, f"{path}.{name}")
    elif isinstance(value, list):
        for item in value:
            found |= shape(item, f"{path}[]")
    return found


def documented(platform: str, name: str) -> dict[str, object]:
    message = json.loads(fixture_text(platform, name.removesuffix(".json")))
    inner = message.get("rawEvent")  # SignalWire's page shows each message in an envelope
    return inner if isinstance(inner, dict) else message


CALL = CallSpec("doc-call-1", "ws://127.0.0.1:9", PCM8K)
PARAMETERS = {"interaction_id": "doc-call-1"}
PAYLOAD = b"\xff" * 160
# Fields the tool writes that a page's example leaves out: the call's id, where the route
# reads it (a custom parameter, the verb's metadata merged into jambonz's first frame).
NAMING = {
    "telnyx": {".start.custom_parameters:dict", ".start.custom_parameters.interaction_id:str"},
    "signalwire": {".start.customParameters:dict", ".start.customParameters.interaction_id:str"},
    "jambonz": {".interaction_id:str"},
}


def written(platform: str) -> list[tuple[str, str]]:
    """What `stream` writes for each documented message: (fixture, text)."""
    fmt = AudioFormat(Encoding.LINEAR16, 24000, 1)
    if platform == "twilio":
        twilio = TwilioMessages(("inbound", "outbound"), {**PARAMETERS, "tenant_id": "acme"})
        connected, start = twilio.opening()
        media = twilio.media("inbound", 1, 0, PAYLOAD), twilio.media("outbound", 1, 0, PAYLOAD)
        return [
            ("connected.json", connected),
            ("start.json", start),
            ("media_inbound.json", media[0]),
            ("media_outbound.json", media[1]),
            ("stop.json", twilio.stop()),
        ]
    if platform == "exotel":
        exotel = ExotelMessages(8000, PARAMETERS)
        connected, start = exotel.opening()
        media_exotel = exotel.media("inbound", 1, 0, PAYLOAD)
        return [
            ("connected.json", connected),
            ("start.json", start),
            ("media.json", media_exotel),
            ("stop.json", exotel.stop()),
        ]
    if platform == "telnyx":
        telnyx = TelnyxMessages(PARAMETERS)
        connected, start = telnyx.opening()
        return [
            ("connected.json", connected),
            ("start.json", start),
            ("media.json", telnyx.media("inbound", 1, 0, PAYLOAD)),
            ("stop.json", telnyx.stop()),
        ]
    if platform == "signalwire":
        signalwire = SignalWireMessages(("inbound",), fmt, PARAMETERS)
        connected, start = signalwire.opening()
        return [
            ("connected.json", connected),
            ("start.json", start),
            ("media.json", signalwire.media("inbound", 1, 0, PAYLOAD)),
            ("stop.json", signalwire.stop() or ""),
        ]
    if platform == "plivo":
        plivo = PlivoMessages(("inbound",), PCM8K, "interactionId=doccall1")
        (start,) = plivo.opening()
        return [("start.json", start), ("media.json", plivo.media("inbound", 1, 0, PAYLOAD))]
    if platform == "jambonz":
        return [
            ("listen_metadata.json", JAMBONZ.first_frame(CALL)),
            ("stt_start.json", jambonz_stt_messages.start_message(8000, call_sid="c", hints=["Zorblax"])),
            ("stt_stop.json", jambonz_stt_messages.stop_message()),
        ]
    assert platform == "vonage"
    return [("connected.json", VONAGE.first_frame(CALL))]


@pytest.mark.parametrize(
    "platform", ["twilio", "exotel", "telnyx", "signalwire", "plivo", "jambonz", "vonage"]
)
def test_what_stream_writes_is_shaped_as_the_platforms_documentation_shows_it(platform: str) -> None:
    """Every field of every message the tool sends is one the platform's own example has, with
    a value of the same JSON type (numbers as strings where the platform writes them so)."""
    for name, text in written(platform):
        extra = shape(json.loads(text)) - shape(documented(platform, name)) - NAMING.get(platform, set())
        assert not extra, f"{platform} {name}: fields the documentation does not show: {sorted(extra)}"


# --- Vonage: the signed upgrade ----------------------------------------------------------------


def test_the_vonage_upgrade_is_signed_as_vonages_own_sdk_verifies_it() -> None:
    token = signed_token(VONAGE_SECRET, time.time())
    assert verify_signature(token, VONAGE_SECRET)
    assert not verify_signature(token, "another-accounts-signature-secret-0123")
    assert signed_token(VONAGE_SECRET, time.time()) != token  # each upgrade's own `jti`: none replays


# --- AudioSocket: UUIDs, and what a refusal says -----------------------------------------------


def test_audiosocket_calls_are_named_by_uuids_in_the_form_the_worker_reads_back() -> None:
    route = protocols.load("audiosocket")
    first, second = route.call_ids(None, 2)
    assert first != second and all(len(i) == 36 for i in (first, second))
    assert route.call_ids("6F1C2A9E3B4D4E5F8A7B9C0D1E2F3A4B", 1) == ["6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"]
    with pytest.raises(ValueError, match="names a call by a UUID; --id 'call-1' is not one"):
        route.call_ids("call-1", 1)
    with pytest.raises(ValueError, match="give --id only with one call"):
        route.call_ids("6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b", 2)


async def test_audiosocket_refusals_say_what_to_do() -> None:
    """An address outside ASR_AUDIOSOCKET_ALLOW (the worker closes the connection unread), and
    no AudioSocket port at all: each one clear line; nothing waits for events that never come."""
    err = io.StringIO()
    async with running_worker(
        MockProvider(), audiosocket_port=0, audiosocket_allow=networks("10.0.0.0/8")
    ) as worker:
        (refused,) = await stream_calls(
            AUDIO,
            f"ws://127.0.0.1:{worker.port}",
            protocol="audiosocket",
            speed=0,
            audiosocket_port=audiosocket_port(worker),
            err=err,
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        (unanswered,) = await stream_calls(
            AUDIO,
            f"ws://127.0.0.1:{worker.port}",
            protocol="audiosocket",
            speed=0,
            audiosocket_port=closed_port,
            err=err,
        )
    assert refused.ended is None and unanswered.ended is None
    said = err.getvalue().splitlines()
    assert said[0].endswith(
        "refused: the worker hung up the AudioSocket call: this machine's address must be in its "
        "ASR_AUDIOSOCKET_ALLOW, and it must have room for the call (its log says which)"
    )
    assert said[1].endswith(
        f"connection failed: nothing listens for AudioSocket at 127.0.0.1:{closed_port} "
        "(the worker's ASR_AUDIOSOCKET_PORT, --audiosocket-port here)"
    )


# --- jambonz's speech vendor API: its refusal, its own messages --------------------------------


async def test_a_call_the_worker_refuses_over_jambonz_stt_shows_jambonzs_error_and_why() -> None:
    out, err = io.StringIO(), io.StringIO()
    async with running_worker(MockProvider(), max_sessions=0) as worker:
        (result,) = await stream_calls(
            AUDIO, f"ws://127.0.0.1:{worker.port}", protocol="jambonz_stt", speed=0, out=out, err=err
        )
    assert result.ended is None
    (line,) = out.getvalue().splitlines()  # no session_started: the call never began
    assert " error " in line and "vendor_error" in line  # jambonz's own `error` message, shown
    assert "refused: the worker closed the socket 1013" in err.getvalue(), err.getvalue()


async def test_json_prints_jambonzs_transcriptions_as_the_worker_sent_them() -> None:
    out = io.StringIO()
    async with running_worker(MockProvider()) as worker:
        (result,) = await stream_calls(
            AUDIO, f"ws://127.0.0.1:{worker.port}", protocol="jambonz_stt", speed=0, as_json=True, out=out
        )
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies and {r["type"] for r in replies} == {"transcription"}
    assert [r["alternatives"][0]["transcript"] for r in replies if r["is_final"]] == result.finals
    assert result.ended is not None


# --- a server that is not the worker -----------------------------------------------------------


@pytest.fixture
async def plain_websocket_server() -> AsyncIterator[int]:
    """A WebSocket server that selects no subprotocol (what a fork's client refuses), and an
    event stream that sends nothing until the test is over."""
    over = asyncio.Event()

    async def fork_socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await over.wait()  # no event ever: the call's refusal must end the wait
        return response

    app = web.Application()
    app.router.add_get("/v1/calls/{id}/events", events)
    app.router.add_get("/{tail:.*}", fork_socket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        over.set()
        await runner.cleanup()


@pytest.mark.parametrize("protocol", ["freeswitch", "jambonz", "asterisk"])
async def test_a_fork_refuses_a_server_that_selects_none_of_its_subprotocols(
    protocol: str, plain_websocket_server: int
) -> None:
    err = io.StringIO()
    (result,) = await stream_calls(
        AUDIO,
        f"ws://127.0.0.1:{plain_websocket_server}",
        protocol=protocol,
        speed=0,
        keys=Keys(watch_key="w"),
        err=err,
    )
    assert result.ended is None
    assert "the server selected no subprotocol" in err.getvalue(), err.getvalue()
