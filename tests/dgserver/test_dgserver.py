"""dg-server speaks Deepgram's live protocol: to a raw WebSocket client byte by byte, and to the
official `deepgram-sdk` live client against the real `asr-worker dg-server` process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.deepgram import protocol
from asr_worker.dgserver import Faults
from asr_worker.errors import ProtocolViolation
from asr_worker.providers.mock import expected_words
from asr_worker.tools.audio_files import read_audio, write_wav
from tests.conftest import free_port
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.cli import assert_clean_stderr, logging_command
from tests.support.dg_server import running_dg_server
from tests.support.speech import SENTENCES, Speech, word_error_rate

QUERY = "?" + "&".join(
    (
        "encoding=linear16",
        "sample_rate=8000",
        "channels=1",
        "interim_results=true",
        "vad_events=true",
        "utterance_end_ms=1000",
    )
)
RESULTS_KEYS = {
    "type",
    "channel_index",
    "duration",
    "start",
    "is_final",
    "speech_final",
    "from_finalize",
    "channel",
    "metadata",
}


def _obj(value: object) -> dict[str, object]:
    assert isinstance(value, dict)
    return value


def _list(value: object) -> list[object]:
    assert isinstance(value, list)
    return value


def _num(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _best(results: dict[str, object]) -> dict[str, object]:
    return _obj(_list(_obj(results["channel"])["alternatives"])[0])


async def _receive_all(ws: ClientConnection) -> list[dict[str, object]]:
    """Every message until the server closes; each must be a JSON text frame."""
    out = []
    async with asyncio.timeout(10):
        async for message in ws:
            assert isinstance(message, str), "a Deepgram server sends only JSON text frames"
            out.append(json.loads(message))
    return out


async def test_a_stream_gets_full_results_then_metadata_then_close_1000() -> None:
    audio = speechlike(1.2) + silence(1.5) + speechlike(0.6, seed=2)
    async with (
        running_dg_server() as server,
        connect(server.url + QUERY, additional_headers={"Authorization": "Token k"}) as ws,
    ):
        assert ws.response is not None and ws.response.headers["dg-request-id"]
        for chunk in frames(audio, ms=100):
            await ws.send(chunk)
        await ws.send(protocol.KEEPALIVE)
        await ws.send(protocol.FINALIZE)
        await ws.send(protocol.CLOSE_STREAM)
        messages = await _receive_all(ws)
        assert ws.close_code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "Metadata" and kinds.count("Metadata") == 1
    assert {"Results", "SpeechStarted", "UtteranceEnd"} <= set(kinds)
    results = [m for m in messages if m["type"] == "Results"]
    for m in results:
        assert set(m) >= RESULTS_KEYS
        assert set(_best(m)) >= {"transcript", "confidence", "words"}
        assert set(_obj(m["metadata"])) >= {"request_id", "model_info", "model_uuid"}
    finals = [m for m in results if m["is_final"]]
    for a, b in itertools.pairwise(finals):  # finals tile the stream's timeline
        assert _num(b["start"]) == pytest.approx(_num(a["start"]) + _num(a["duration"]), abs=1e-5)
    assert any(m["from_finalize"] for m in finals)
    words = [_obj(w)["word"] for m in finals for w in _list(_best(m)["words"])]
    assert words == expected_words(audio, PCM8K)
    metadata = messages[-1]
    assert metadata["duration"] == pytest.approx(3.3) and metadata["channels"] == 1
    assert metadata["request_id"] == _obj(results[0]["metadata"])["request_id"]
    assert set(metadata) >= {"transaction_key", "sha256", "created", "models", "model_info"}
    conn = server.connections[0]
    assert conn.control_types() == ["KeepAlive", "Finalize", "CloseStream"]


async def test_an_idle_stream_is_closed_1011_with_deepgrams_net0001_reason() -> None:
    async with running_dg_server(idle_timeout_s=0.4) as server, connect(server.url + QUERY) as kept:
        for _ in range(8):  # KeepAlive alone keeps it open, and gets no reply
            await kept.send(protocol.KEEPALIVE)
            await asyncio.sleep(0.1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(kept.recv(), 0.2)
        async with connect(server.url + QUERY) as idle:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(idle.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1011 and closed.value.rcvd.reason == protocol.NET0001_REASON


async def test_refusals_carry_dg_error_a_request_id_and_a_json_body() -> None:
    async with running_dg_server(api_key="the-key") as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.url + QUERY, additional_headers={"Authorization": "Token nope"})
        response = refused.value.response
        assert response.status_code == 401 and response.headers["dg-error"] == "Invalid credentials."
        body = json.loads(bytes(response.body or b""))
        assert body == {
            "err_code": "INVALID_AUTH",
            "err_msg": "Invalid credentials.",
            "request_id": response.headers["dg-request-id"],
        }
        assert "WWW-Authenticate" in response.headers
        with pytest.raises(InvalidStatus) as bad:
            await connect(
                server.url + "?encoding=flac", additional_headers={"Authorization": "Token the-key"}
            )
        assert bad.value.response.status_code == 400 and "encoding" in bad.value.response.headers["dg-error"]
        # Browsers cannot set headers: the key as a subprotocol, and the server selects `token`.
        offered = [Subprotocol("token"), Subprotocol("the-key")]
        async with connect(server.url + QUERY, subprotocols=offered) as ws:
            assert ws.subprotocol == "token"
        async with connect(server.url + QUERY, additional_headers={"Authorization": "bearer the-key"}):
            pass


async def test_handshake_faults_count_down_and_carry_retry_after() -> None:
    async with running_dg_server(faults=Faults(reject_status=429, reject_count=1, retry_after_s=3)) as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.url + QUERY)
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "3"
        async with connect(server.url + QUERY):
            pass
        assert [h.status for h in server.handshakes] == [429, 101]


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (Faults(drop_after_ms=300), 1006),
        (Faults(close_1011_after_ms=300), 1011),
        (Faults(close_1008_after_ms=300), 1008),
    ],
)
async def test_connection_faults_hit_the_first_connection_only(faults: Faults, code: int) -> None:
    async with running_dg_server(faults=faults) as server:
        for attempt in range(2):
            async with connect(server.url + QUERY) as ws:
                with contextlib.suppress(ConnectionClosed):
                    for chunk in frames(speechlike(0.6), ms=100):
                        await ws.send(chunk)
                    await ws.send(protocol.CLOSE_STREAM)
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(5):
                        async for _ in ws:
                            pass
                received = ws.close_code if ws.protocol.close_rcvd is not None else 1006
                assert received == (code if attempt == 0 else 1000)


async def test_garbage_fault_sends_every_kind_of_bad_message() -> None:
    kinds = set()
    async with (
        running_dg_server(faults=Faults(garbage_every=1)) as server,
        connect(server.url + QUERY) as ws,
    ):
        for chunk in frames(speechlike(1.2), ms=100):
            await ws.send(chunk)
        await ws.send(protocol.CLOSE_STREAM)
        async with asyncio.timeout(5):
            async for message in ws:
                try:
                    protocol.parse_server_message(message, 1)
                except ProtocolViolation as exc:
                    kinds.add(exc.kind)
    assert kinds == {"not_json", "unknown_type", "bad_fields", "not_object", "binary"}


# --- the official SDK against the real `asr-worker dg-server` process -------------------------


@asynccontextmanager
async def dg_server_process(*args: str, provider: str = "mock") -> AsyncIterator[int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asr_worker",
        "dg-server",
        "--port",
        str(port),
        *args,
        env={**os.environ, "ASR_PROVIDER": provider},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            while True:  # poll until it answers; each try is bounded by the connection refusal
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield port
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        stderr = await process.stderr.read() if process.stderr else b""
        assert process.returncode == 0, stderr.decode()
        assert_clean_stderr(stderr)


async def sdk_stream(port: int, fmt: AudioFormat, data: bytes, pace_s: float = 0.0) -> list[object]:
    """Stream audio through dg-server with the official SDK, as its documentation shows; every
    message it received, in order."""
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment

    client = AsyncDeepgramClient(
        api_key="sdk-key",
        environment=DeepgramClientEnvironment(
            base=f"http://127.0.0.1:{port}",
            production=f"ws://127.0.0.1:{port}",
            agent=f"ws://127.0.0.1:{port}",
            agent_rest=f"http://127.0.0.1:{port}",
        ),
    )
    received: list[object] = []
    async with client.listen.v1.connect(
        model="nova-3",
        encoding=str(fmt.encoding),
        sample_rate=fmt.sample_rate,
        interim_results="true",
        utterance_end_ms=1000,
        vad_events="true",
    ) as connection:
        connection.on(EventType.MESSAGE, received.append)
        async with asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            for chunk in frames(data, fmt, ms=100):
                await connection.send_media(chunk)
                if pace_s:
                    await asyncio.sleep(pace_s)
            await connection.send_finalize()
            await connection.send_close_stream()
            await asyncio.wait_for(listening, 30)
    return received


# deepgram-sdk 7.x uses websockets' legacy client, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_official_deepgram_sdk_streams_a_file_through_dg_server(tmp_path: Path) -> None:
    wav = tmp_path / "call.wav"
    write_wav(wav, speechlike(1.4) + silence(1.2) + speechlike(0.8, seed=3), PCM8K)
    audio = read_audio(wav)
    async with dg_server_process("--api-key", "sdk-key") as port:
        received = await sdk_stream(port, audio.fmt, audio.data)
    names = [type(m).__name__ for m in received]
    assert "ListenV1Results" in names and names[-1] == "ListenV1Metadata"
    assert {"ListenV1SpeechStarted", "ListenV1UtteranceEnd"} <= set(names)
    finals = [m for m in received if type(m).__name__ == "ListenV1Results" and getattr(m, "is_final", False)]
    words = [w.word for m in finals for w in m.channel.alternatives[0].words]  # type: ignore[attr-defined]
    assert words == expected_words(audio.data, PCM8K)
    assert received[-1].duration == pytest.approx(audio.duration_s)  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.timeout(180)
async def test_the_official_deepgram_sdk_transcribes_speech_offline_through_dg_server_on_the_local_engine(
    natural_speech: Speech,
) -> None:
    """Issue 4's proof: any Deepgram client works offline against `asr-worker dg-server`. The
    SDK asks for no `endpointing`, so utterances end at Deepgram's default (10 ms, the engine's
    least, 100): a voice like a person's, since espeak-ng's gaps between words are that long."""
    call = natural_speech.call(SENTENCES[:2], rate=8000, encoding=Encoding.MULAW)
    async with dg_server_process("--api-key", "sdk-key", provider="local") as port:
        received = await sdk_stream(port, call.fmt, call.data, pace_s=0.05)
    names = [type(m).__name__ for m in received]
    assert names[-1] == "ListenV1Metadata" and "ListenV1SpeechStarted" in names
    results = [m for m in received if type(m).__name__ == "ListenV1Results"]
    assert any(not getattr(m, "is_final", True) for m in results), "interims too"
    finals = [m for m in results if getattr(m, "is_final", False)]
    text = " ".join(m.channel.alternatives[0].transcript for m in finals)  # type: ignore[attr-defined]
    assert word_error_rate(call.text, text) <= 0.10, text
    words = [w for m in finals for w in m.channel.alternatives[0].words]  # type: ignore[attr-defined]
    assert all(0 <= w.start <= w.end <= len(call.data) / 8000 + 0.1 for w in words)


async def test_dg_server_refuses_a_bad_flag_with_one_line() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asr_worker",
        "dg-server",
        "--faults",
        "drop_after_ms=soon",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1
    assert "--faults fault drop_after_ms must be a whole number" in lines[0]


async def test_an_engine_that_never_finishes_is_closed_1011_after_close_stream() -> None:
    async with (
        running_dg_server(idle_timeout_s=0.5, hang_close=True) as server,
        connect(server.url + QUERY) as ws,
    ):
        await ws.send(speechlike(0.2))
        await ws.send(protocol.CLOSE_STREAM)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                async for _ in ws:
                    pass
        assert ws.close_code == 1011 and ws.close_reason == protocol.NET0000_REASON


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["dg-server"], {"ASR_PROVIDER": "deepgram"}, "makes no sense for dg-server"),
        (["serve"], {"DEEPGRAM_PARAMS": "sample_rate=16000"}, "DEEPGRAM_PARAMS may not set sample_rate"),
        (["serve"], {"DEEPGRAM_PARAMS": "==&"}, "DEEPGRAM_PARAMS must be query parameters"),
    ],
)
async def test_bad_deepgram_settings_fail_at_start_with_one_line(
    args: list[str], env: dict[str, str], says: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asr_worker",
        *args,
        env={**os.environ, "DEEPGRAM_API_KEY": "k", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1 and says in lines[0], lines


async def test_an_engine_failure_closes_the_stream_1011_with_its_reason() -> None:
    async with running_dg_server(drop_after_ms=300) as server, connect(server.url + QUERY) as ws:
        with contextlib.suppress(ConnectionClosed):
            for chunk in frames(speechlike(1.0), ms=100):
                await ws.send(chunk)
            async with asyncio.timeout(5):
                async for _ in ws:
                    pass
        assert ws.close_code == 1011 and "mock stream dropped" in (ws.close_reason or "")


async def test_a_stalled_connection_reads_on_answers_pings_and_sends_nothing() -> None:
    audio = speechlike(1.0)
    async with (
        running_dg_server(faults=Faults(stall_after_ms=300)) as server,
        connect(server.url + QUERY) as ws,
    ):
        for chunk in frames(audio, ms=100):
            await ws.send(chunk)
        await ws.send(protocol.CLOSE_STREAM)
        await asyncio.wait_for(await ws.ping(), 2)  # the connection looks alive
        received: list[str | bytes] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                received.extend([message async for message in ws])
        record = server.connections[0]
        assert record.bytes_received == len(audio) and record.close_code is None
    assert server.injected == {"stall": 1}
    kinds = {json.loads(m).get("type") for m in received}
    assert "Metadata" not in kinds and len(received) <= 3  # at most what the first 0.3 s gave


def test_random_faults_hit_their_share_of_connections_and_repeat_with_the_seed() -> None:
    text = "fault_percent=30,drop_after_ms=1000,stall_after_ms=2000,seed=7"
    faults = Faults.parse(text)
    draws = [faults.draw() for _ in range(2000)]
    hits = [d for d in draws if d is not None]
    assert 0.25 < len(hits) / len(draws) < 0.35
    assert {d.kind for d in hits} == {"drop", "stall"}
    assert all(0 <= d.after_ms <= {"drop": 1000, "stall": 2000}[d.kind] for d in hits)
    again = Faults.parse(text)
    assert [again.draw() for _ in range(2000)] == draws
    rejecting = Faults(reject_status=429, reject_percent=10, seed=3)
    statuses = [rejecting.take_rejection() for _ in range(2000)]
    assert set(statuses) == {0, 429} and 0.07 < statuses.count(429) / len(statuses) < 0.13


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
async def test_dg_server_open_to_the_network_without_a_key_says_so(
    tmp_path: Path, host: str, warned: bool
) -> None:
    log_path = tmp_path / "dg.log"
    args = ("dg-server", "--host", host, "--port", str(free_port()))
    env = {"ASR_PROVIDER": "mock"}
    async with logging_command(
        *args, env=env, log_path=log_path, until_logged="dg-server listening"
    ) as process:
        pass
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    warnings = [line for line in lines if line["level"] == "warning" and "open to anyone" in str(line["msg"])]
    assert len(warnings) == (1 if warned else 0)
    assert process.returncode == 0
    assert_clean_stderr(log_path.read_text())


@pytest.mark.parametrize("finalize_first", [False, True])
async def test_close_stream_alone_returns_the_last_words_as_a_final_not_marked_from_finalize(
    finalize_first: bool,
) -> None:
    """As Deepgram's: CloseStream processes what is left and sends its final results; only a
    Finalize's answer carries `from_finalize: true`."""
    audio = speechlike(0.8) + silence(0.6) + speechlike(0.6, seed=5)
    async with running_dg_server() as server, connect(server.url + QUERY) as ws:
        for chunk in frames(audio, PCM8K, ms=100):
            await ws.send(chunk)
        if finalize_first:
            await ws.send(protocol.FINALIZE)
        await ws.send(protocol.CLOSE_STREAM)
        messages = [json.loads(m) async for m in ws]
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    words = [w["word"] for m in finals for w in m["channel"]["alternatives"][0]["words"]]
    assert words == expected_words(audio, PCM8K), "the words after the last final are not lost"
    assert finals[-1]["from_finalize"] is finalize_first
    assert messages[-1]["type"] == "Metadata"
