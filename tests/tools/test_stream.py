"""`asr-worker stream`: every route played as a live call against a real worker over real
sockets (the mock provider: the words are its own, from the bytes each route carried), each
with the key and signature its platform sends, every event one line; what a refusal says.
SIPREC's session is SIP and RTP over UDP into the worker's recording server, AudioSocket's a
TCP connection to the worker's AudioSocket port."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from asr_worker.audiohook.signature import ApiKeys as AudioHookKeys
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tenancy import ApiKeys
from asr_worker.tools import protocols
from asr_worker.tools.audio_files import AudioFile, convert
from asr_worker.tools.protocols.base import Keys, SipOptions
from asr_worker.tools.protocols.ingest import call_url
from asr_worker.tools.protocols.twilio import signature_headers
from asr_worker.tools.stream import CallResult, stream_calls, summary
from asr_worker.transports.forks.vonage import SignatureSecrets
from asr_worker.transports.siprec.options import networks, tenant_networks
from asr_worker.transports.twilio import AuthTokens
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import PCM8K, silence, speechlike
from tests.support.dg_server import running_dg_server

HOOK_KEY = "hook-key-5e1c"
HOOK_SECRET = base64.b64encode(b"a client secret of 32 bytes.....").decode()
STREAM_KEY, WATCH_KEY = "acme-streams-7f2a", "acme-watches-3b9d"
TWILIO_TOKEN = "twilio-auth-token-c41e"
VONAGE_SECRET = "vonage-signature-secret-of-acme-5d0c9e"

AUDIO = AudioFile(Path("call.wav"), PCM8K, speechlike(0.8) + silence(0.4) + speechlike(0.6, seed=5))


@asynccontextmanager
async def worker_with_keys(provider: MockProvider | None = None) -> AsyncIterator[Worker]:
    """A worker that asks for keys: acme's (one to stream, one to watch), an AudioHook key with
    a client secret, a Twilio account's auth token and a Vonage account's signature secret for
    acme; its recording server takes SIPREC from loopback as acme's, and its AudioSocket port
    takes calls as acme's."""
    async with running_worker(
        provider or MockProvider(),
        api_keys=ApiKeys.parse(f"{STREAM_KEY}:acme:stream,{WATCH_KEY}:acme:watch"),
        audiohook_api_keys=AudioHookKeys.parse(f"{HOOK_KEY}:{HOOK_SECRET}"),
        twilio_auth_tokens=AuthTokens.parse(f"{TWILIO_TOKEN}:acme"),
        vonage_signature_secrets=SignatureSecrets.parse(f"{VONAGE_SECRET}:acme"),
        siprec_port=0,
        siprec_tenants=tenant_networks("127.0.0.1/32=acme"),
        audiosocket_port=0,
        audiosocket_tenant="acme",
    ) as worker:
        yield worker


def sip_of(worker: Worker) -> SipOptions:
    assert worker.siprec.sip_port is not None
    return SipOptions(worker.siprec.sip_port)


def audiosocket_port(worker: Worker) -> int:
    assert worker.audiosocket.port is not None
    return worker.audiosocket.port


KEYS = {
    "ingest": Keys(STREAM_KEY, WATCH_KEY),
    "twilio": Keys(None, WATCH_KEY, twilio_auth_token=TWILIO_TOKEN),  # admitted by its signature
    "exotel": Keys(STREAM_KEY, WATCH_KEY),
    "audiohook": Keys(HOOK_KEY, client_secret=base64.b64decode(HOOK_SECRET)),
    "realtime": Keys(STREAM_KEY),
    "deepgram": Keys("dg-key-90a1"),
    "siprec": Keys(None, WATCH_KEY),  # SIP takes no key: loopback is allowed, and acme's
    "freeswitch": Keys(STREAM_KEY, WATCH_KEY),
    "jambonz": Keys(STREAM_KEY, WATCH_KEY),
    "jambonz_stt": Keys(STREAM_KEY),
    "vonage": Keys(None, WATCH_KEY, vonage_signature_secret=VONAGE_SECRET),  # admitted by its signature
    "telnyx": Keys(STREAM_KEY, WATCH_KEY),
    "plivo": Keys(STREAM_KEY, WATCH_KEY),
    "signalwire": Keys(STREAM_KEY, WATCH_KEY),
    "asterisk": Keys(STREAM_KEY, WATCH_KEY),
    "audiosocket": Keys(None, WATCH_KEY),  # AudioSocket takes no key: loopback is allowed, and acme's
}
# AudioSocket names a call by a UUID.
CALL_ID = {"audiosocket": "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"}


@pytest.mark.parametrize("protocol", protocols.NAMES)
async def test_every_route_takes_the_whole_call_with_its_platforms_keys_and_prints_its_events(
    protocol: str,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    mock = MockProvider()
    call = CALL_ID.get(protocol, "try-1")
    async with worker_with_keys(mock) as worker, running_dg_server(api_key="dg-key-90a1") as dg:
        port = dg.port if protocol == "deepgram" else worker.port
        (result,) = await stream_calls(
            AUDIO,
            f"ws://127.0.0.1:{port}",
            protocol=protocol,
            interaction_id=call,
            speed=0,
            keys=KEYS[protocol],
            sip=sip_of(worker),
            audiosocket_port=audiosocket_port(worker),
            out=out,
            err=err,
        )
    played = convert(AUDIO, protocols.load(protocol).call_format(AUDIO.fmt))
    if protocol == "siprec":  # its two streams are placed by the worker's clock: the words are
        (stream,) = mock.streams_for(call)  # the call's, whose audio the next test checks
        played = AudioFile(played.path, stream.request.fmt, bytes(stream.received))
    assert err.getvalue() == "" and not result.errors, f"{protocol}: {err.getvalue()} {result.errors}"
    assert " ".join(result.finals).split() == expected_words(played.data, played.fmt), protocol
    if protocol != "deepgram":  # (dg-server runs a provider of its own)
        (stream,) = mock.streams_for(call)
        assert stream.request.fmt == played.fmt  # the format the platform carries, its legs as channels
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"[{call}] session_started") and lines[-1].startswith(
        f"[{call}] session_ended"
    )
    assert all(line.startswith(f"[{call}] ") for line in lines)
    assert result.ended is not None


async def test_a_stereo_file_is_both_sides_of_the_call_on_twilio_and_audiohook() -> None:
    """Its channels are Twilio's two tracks and AudioHook's `external` and `internal`, which the
    worker puts together again as one two-channel call, byte for byte."""
    stereo = AudioFormat(Encoding.LINEAR16, 8000, 2)
    left, right = speechlike(1.0), speechlike(1.0, seed=9)
    frames = b"".join(left[i : i + 2] + right[i : i + 2] for i in range(0, len(left), 2))
    audio = AudioFile(Path("both.wav"), stereo, frames)
    for protocol in ("twilio", "audiohook"):
        out = io.StringIO()
        async with worker_with_keys() as worker:
            (result,) = await stream_calls(
                audio,
                f"ws://127.0.0.1:{worker.port}",
                protocol=protocol,
                speed=0,
                keys=KEYS[protocol],
                out=out,
            )
        assert result.ended is not None and not result.errors
        assert "2 channels" in out.getvalue().splitlines()[0]
        played = convert(audio, protocols.load(protocol).call_format(stereo))
        assert played.fmt == AudioFormat(Encoding.MULAW, 8000, 2)
        assert " ".join(result.finals).split() == expected_words(played.data, played.fmt)


def carries(channel: bytes, audio: bytes) -> bool:
    """The channel is the stream's audio, whole and in order, and silence around it (the worker
    places a stream's start by its clock)."""
    at = channel.find(audio)
    return at >= 0 and set(channel[:at] + channel[at + len(audio) :]) <= {0xFF}


async def test_siprec_sends_each_side_of_the_call_as_its_stream_byte_for_byte() -> None:
    """A mono file is the customer's stream and silence the agent's; a two-channel file's
    channels are the customer's and the agent's: the worker's call has them as channels 0 and
    1, every byte, in order, once."""
    stereo = AudioFormat(Encoding.LINEAR16, 8000, 2)
    left, right = speechlike(0.6), speechlike(0.6, seed=9)
    both = AudioFile(
        Path("both.wav"), stereo, b"".join(left[i : i + 2] + right[i : i + 2] for i in range(0, len(left), 2))
    )
    for audio in (AUDIO, both):
        mock = MockProvider()
        async with worker_with_keys(mock) as worker:
            (result,) = await stream_calls(
                audio,
                f"ws://127.0.0.1:{worker.port}",
                protocol="siprec",
                interaction_id="sip-1",
                speed=0,
                keys=KEYS["siprec"],
                sip=sip_of(worker),
            )
        assert result.ended is not None and result.ended["reason"] == "end" and not result.errors
        (stream,) = mock.streams_for("sip-1")
        assert stream.request.fmt == AudioFormat(Encoding.MULAW, 8000, 2)
        received = bytes(stream.received)
        played = convert(audio, AudioFormat(Encoding.MULAW, 8000, audio.fmt.channels))
        legs = (
            [played.data, b"\xff" * len(played.data)]
            if audio.fmt.channels == 1
            else [
                played.data[0::2],
                played.data[1::2],
            ]
        )
        assert carries(received[0::2], legs[0]) and carries(received[1::2], legs[1])


async def test_siprec_refusals_say_what_to_do() -> None:
    """The worker's 403 to an address outside ASR_SIPREC_ALLOW, and no recording server on the
    port (the ICMP error), each one clear line; nothing hangs."""
    err = io.StringIO()
    async with running_worker(MockProvider(), siprec_port=0, siprec_allow=networks("10.0.0.0/8")) as worker:
        (refused,) = await stream_calls(
            AUDIO, f"ws://127.0.0.1:{worker.port}", protocol="siprec", speed=0, sip=sip_of(worker), err=err
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        (unanswered,) = await stream_calls(
            AUDIO,
            f"ws://127.0.0.1:{worker.port}",
            protocol="siprec",
            speed=0,
            sip=SipOptions(closed_port),
            err=err,
        )
    assert refused.ended is None and unanswered.ended is None
    said = err.getvalue().splitlines()
    assert said[0].endswith(
        "refused: the recording server answered 403 Forbidden: this machine's address 127.0.0.1 must be "
        "in the worker's ASR_SIPREC_ALLOW"
    )
    assert said[1].endswith(
        f"connection failed: nothing answers SIP at 127.0.0.1:{closed_port} "
        "(the worker's ASR_SIPREC_PORT, --sip-port here)"
    )


@pytest.mark.parametrize(
    ("protocol", "keys", "says"),
    [
        (
            "ingest",
            Keys("wrong-key"),
            "HTTP 401 Unauthorized: the route needs a key with stream scope (--api-key",
        ),
        ("twilio", Keys(WATCH_KEY, WATCH_KEY), "HTTP 403 Forbidden: the route needs a key with stream scope"),
        (
            "exotel",
            Keys(STREAM_KEY),
            "HTTP 401 Unauthorized: reading the call's events over SSE needs a key with watch scope",
        ),
        (
            "audiohook",
            Keys(HOOK_KEY),
            "HTTP 401 Unauthorized: the route needs one of the worker's ASR_AUDIOHOOK",
        ),
        ("realtime", Keys(), "HTTP 401 Unauthorized: the route needs a key with stream scope"),
    ],
)
async def test_a_refused_key_says_what_the_route_needs_and_never_shows_the_key(
    protocol: str, keys: Keys, says: str
) -> None:
    out, err = io.StringIO(), io.StringIO()
    async with worker_with_keys() as worker:
        (result,) = await stream_calls(
            AUDIO, f"ws://127.0.0.1:{worker.port}", protocol=protocol, speed=0, keys=keys, out=out, err=err
        )
    assert result.ended is None and len(result.errors) == 1
    assert says in err.getvalue(), err.getvalue()
    for key in (STREAM_KEY, WATCH_KEY, HOOK_KEY, "wrong-key"):
        assert key not in err.getvalue() + out.getvalue()


async def test_a_call_the_worker_refuses_says_why_instead_of_waiting_for_its_events() -> None:
    """Over Twilio the worker answers nothing but a close: `stream` reads the close's reason
    rather than wait on SSE for a call that never began."""
    err = io.StringIO()
    async with running_worker(MockProvider(), max_sessions=0) as worker:
        (result,) = await stream_calls(
            AUDIO, f"ws://127.0.0.1:{worker.port}", protocol="twilio", speed=0, err=err
        )
    assert result.ended is None
    assert "refused: the worker closed the socket 1013" in err.getvalue(), err.getvalue()


async def test_json_prints_each_message_as_the_route_sent_it() -> None:
    out = io.StringIO()
    async with running_worker(MockProvider(), audiohook_api_keys=AudioHookKeys.parse(HOOK_KEY)) as worker:
        for protocol, keys in (("ingest", Keys()), ("audiohook", Keys(HOOK_KEY))):
            await stream_calls(
                AUDIO,
                f"ws://127.0.0.1:{worker.port}",
                protocol=protocol,
                speed=0,
                keys=keys,
                as_json=True,
                out=out,
            )
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {"session_started", "transcript", "session_ended"} <= {m.get("type") for m in messages}
    assert {"event", "closed"} <= {
        m.get("type") for m in messages if m.get("version") == "2"
    }  # AudioHook's own


def test_the_twilio_signature_is_the_one_twilios_own_library_validates() -> None:
    url = "ws://asr.example.com:3001/v1/twilio?token=k-1"
    (signature,) = signature_headers(url, TWILIO_TOKEN).values()
    validator = RequestValidator(TWILIO_TOKEN)
    assert validator.validate("wss://asr.example.com:3001/v1/twilio?token=k-1", {}, signature)


def test_the_summary_counts_finals_with_text_and_says_when_there_is_no_latency() -> None:
    quiet = CallResult("c-1")
    quiet.count({"type": "transcript", "is_final": True, "text": ""})
    assert summary([quiet]).endswith(
        "finals with text 0, errors 0, transcript latency p50 n/a (the route's messages carry none)"
    )
    assert summary([CallResult("c-0")]).endswith("transcript latency p50 n/a (no transcripts)")
    spoke = CallResult("c-2")
    for text, ms in (("hello", 100), ("", 300), ("bye", 200)):
        spoke.count({"type": "transcript", "is_final": True, "text": text, "latency_ms": ms})
    assert summary([spoke]).endswith("finals with text 2, errors 0, transcript latency p50 200 ms")


def test_an_ingest_url_that_contradicts_the_files_format_is_refused_not_obeyed() -> None:
    fmt = AudioFormat(Encoding.LINEAR16, 22050, 1)
    with pytest.raises(ValueError, match=r"--url says sample_rate=16000 but the file is sample_rate=22050"):
        call_url("ws://h:1/v1/audio/c?sample_rate=16000", "c", fmt)
    url = call_url("ws://h:1/v1/audio/c?sample_rate=22050&tenant_id=t", "c", fmt)
    assert url == "ws://h:1/v1/audio/c?sample_rate=22050&tenant_id=t&encoding=linear16&channels=1"


async def test_an_unknown_protocol_or_a_url_that_is_no_websocket_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="--protocol must be one of ingest, twilio, exotel"):
        await stream_calls(AUDIO, "ws://127.0.0.1:9", protocol="sip")
    with pytest.raises(ValueError, match="--url must be a ws:// or wss:// URL"):
        await stream_calls(AUDIO, "http://127.0.0.1:9", protocol="twilio")
