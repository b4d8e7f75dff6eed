"""The example clients in examples/, run as a user runs them (a real process) against a real
server, so what the docs show cannot rot."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tools.audio_files import write_wav
from tests.conftest import free_port, running_worker
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.cli import assert_clean_stderr
from tests.support.client import connect
from tests.support.dg_server import running_dg_server
from tests.support.webhooks import SECRET, secret

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def run_example(name: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert_clean_stderr(err)
    return out.decode()


@pytest.fixture
def call_wav(tmp_path: Path) -> tuple[Path, bytes]:
    audio = speechlike(0.8) + silence(0.6) + speechlike(0.6, seed=5)
    path = tmp_path / "call.wav"
    write_wav(path, audio, PCM8K)
    return path, audio


async def test_the_ingest_client_example_plays_a_call_and_prints_its_events(
    call_wav: tuple[Path, bytes],
) -> None:
    path, audio = call_wav
    async with running_worker(MockProvider()) as worker:
        out = await run_example(
            "ingest_client.py", str(path), "--url", f"ws://127.0.0.1:{worker.port}", "--id", "ex-1"
        )
    lines = out.splitlines()
    assert "'type': 'session_started'" in lines[0] and "'type': 'session_ended'" in lines[-1]
    finals = [line for line in lines if "'is_final': True" in line]
    assert finals and all("'interaction_id': 'ex-1'" in line for line in lines)
    heard = [
        word
        for word in expected_words(audio, PCM8K)
        if any(f"'{word}" in f or f" {word}" in f for f in finals)
    ]
    assert heard == expected_words(audio, PCM8K)


async def test_the_deepgram_sdk_example_streams_through_dg_server(call_wav: tuple[Path, bytes]) -> None:
    path, audio = call_wav
    async with running_dg_server() as server:
        out = await run_example("deepgram_sdk_client.py", str(path), "--url", f"ws://127.0.0.1:{server.port}")
    lines = out.splitlines()
    finals = [line.removeprefix("Results final   ") for line in lines if line.startswith("Results final")]
    assert " ".join(finals).split() == expected_words(audio, PCM8K)
    assert any(line.startswith("Results interim") for line in lines)
    assert lines[-1] == "Metadata"


async def test_the_deepgram_flux_example_prints_each_turns_start_and_end(
    call_wav: tuple[Path, bytes],
) -> None:
    path, audio = call_wav
    async with running_dg_server() as server:
        out = await run_example(
            "deepgram_flux_client.py", str(path), "--url", f"ws://127.0.0.1:{server.port}", "--eager", "0.5"
        )
    lines = out.splitlines()
    assert lines[0] == "Connected"
    assert [line.split(":")[0].split(" (")[0] for line in lines[1:]] == [
        "StartOfTurn 0",
        "EagerEndOfTurn 0",
        "EndOfTurn 0",
        "StartOfTurn 1",
        "EagerEndOfTurn 1",
        "EndOfTurn 1",
    ]
    ends = [line.split(": ", 1)[1] for line in lines if line.startswith("EndOfTurn")]
    assert " ".join(ends).split() == expected_words(audio, PCM8K)
    assert all("(model, 0.7" in line for line in lines if line.startswith("EndOfTurn"))


async def test_the_openai_realtime_example_transcribes_through_the_worker(tmp_path: Path) -> None:
    pcm24k = AudioFormat(Encoding.LINEAR16, 24000, 1)
    audio = speechlike(0.8, pcm24k) + silence(0.6, pcm24k) + speechlike(0.6, pcm24k, seed=5)
    path = tmp_path / "call24k.wav"
    write_wav(path, audio, pcm24k)
    async with running_worker(MockProvider()) as worker:
        out = await run_example(
            "openai_realtime_client.py", str(path), "--url", f"ws://127.0.0.1:{worker.port}/v1"
        )
    lines = out.splitlines()
    completed = [
        line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
        for line in lines
        if line.startswith("completed")
    ]
    assert " ".join(completed).split() == expected_words(audio, pcm24k)
    assert any(line.startswith("delta") for line in lines) and not any(
        line.startswith("error") for line in lines
    )


async def test_the_webhook_receiver_example_verifies_and_prints_a_calls_document() -> None:
    """The receiver the docs show, with the standard library's HMAC only: a forged delivery is
    refused, the worker's signed document is taken and printed."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "webhook_receiver.py"),
        *("--port", str(port), "--secret", SECRET, "--count", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).startswith(b"listening")
        forged = {
            "webhook-id": "x",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA",
        }
        audio = speechlike(1.0)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/t", data=b"{}", headers=forged) as refused:
                assert refused.status == 401
            async with running_worker(
                MockProvider(), webhook_url=f"http://127.0.0.1:{port}/t", webhook_secret=secret()
            ) as worker:
                call = await connect(http, worker, "ex-hook")
                await call.send_frames(frames(audio))
                await call.end()
                await call.collect()
                out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert_clean_stderr(err)
    lines = out.decode().splitlines()
    assert lines[0] == "refused: the signature does not verify"
    assert lines[1].startswith("transcript.completed ex-hook ended: mixed: ")
    assert lines[1].replace("mixed: ", "").replace(" /", "").split()[3:] == expected_words(audio, PCM8K)
