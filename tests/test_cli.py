"""The `asr-worker` command as a user runs it: a real process, real signals, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from asr_worker.tools.audio_files import write_wav
from tests.conftest import free_port
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.cli import CLI, assert_clean_stderr, run_cli
from tests.support.client import CallClient


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PORT": "abc"}, "PORT must be a whole number from 0 to 65535, not 'abc'"),
        ({"ASR_PROVIDER": "whisperx"}, "ASR_PROVIDER must be one of deepgram, local, mock, openai"),
        ({"PUBSUB_ADAPTER": "kafka"}, "PUBSUB_ADAPTER must be one of in_memory, redis_streams"),
        ({"ASR_MAX_BUFFER_MS": "0"}, "ASR_MAX_BUFFER_MS must be a whole number from 1"),
        ({"ASR_KEEPALIVE_S": "12"}, "ASR_KEEPALIVE_S must be a number of seconds from 0.1 to 9"),
        ({"DEEPGRAM_URL": "http://x"}, "DEEPGRAM_URL must be a ws:// or wss:// URL"),
        ({"ASR_PROVIDER": "deepgram"}, "DEEPGRAM_API_KEY is required"),
        ({"ASR_FALLBACK_PROVIDER": "deepgram"}, "DEEPGRAM_API_KEY is required when ASR_FALLBACK_PROVIDER"),
        ({"ASR_FALLBACK_PROVIDER": "whisperx"}, "ASR_FALLBACK_PROVIDER must be one of deepgram, local, mock"),
        ({"ASR_FALLBACK_PROVIDER": "local"}, "ASR_FALLBACK_PROVIDER local is ASR_PROVIDER itself"),
        ({"ASR_FAILOVER_AFTER_S": "0"}, "ASR_FAILOVER_AFTER_S must be a number of seconds from 0.5"),
        ({"ASR_MOCK": "volume=11"}, "ASR_MOCK unknown mock option 'volume'"),
        ({"ASR_LOCAL_MODEL": "/no/such/model"}, "ASR_LOCAL_MODEL must be empty (the packaged Whisper base)"),
        ({"ASR_LOCAL_COMPUTE_TYPE": "int4"}, "ASR_LOCAL_COMPUTE_TYPE must be one of default, auto, int8"),
        ({"ASR_LOCAL_NUM_WORKERS": "-1"}, "ASR_LOCAL_NUM_WORKERS must be a whole number from 0 to 256"),
    ],
)
def test_invalid_configuration_fails_with_one_line_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    result = run_cli("serve", env={"DEEPGRAM_API_KEY": "", **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]


def test_flags_override_the_environment_and_secrets_are_not_echoed() -> None:
    result = run_cli("serve", "--port", "70000", env={"PORT": "3001"})
    assert result.returncode == 2 and "--port must be a whole number" in result.stderr
    result = run_cli("serve", "--worker-token", "s3cret-token", "--port", "x")
    assert "s3cret-token" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("command", "variable"),
    [(["serve"], "PORT"), (["dg-server"], "DG_SERVER_PORT")],
    ids=["serve", "dg-server"],
)
def test_a_port_in_use_is_one_line_that_says_what_to_change(command: list[str], variable: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(*command, env={variable: str(port), "ASR_PROVIDER": "mock"})
    assert result.returncode == 2, result.stderr
    problems = result.stderr.splitlines()
    assert len(problems) == 1, result.stderr  # that line alone: no log lines before or after it
    assert f"cannot listen on 127.0.0.1:{port}" in problems[0] and "address already in use" in problems[0]
    assert f"choose another with {variable} or --port" in problems[0]


@pytest.mark.parametrize("command", [["serve"], ["dg-server"], ["transcribe", "call.wav"]])
def test_a_model_that_does_not_load_stops_the_command_with_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (model / name).write_text("not a model")
    write_wav(tmp_path / "call.wav", speechlike(0.2), PCM8K)
    args = [str(tmp_path / a) if a.endswith(".wav") else a for a in command]
    env = {"ASR_LOCAL_MODEL": str(model), "ASR_PROVIDER": "local", "PORT": "0", "DG_SERVER_PORT": "0"}
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot start: the local speech model could not be loaded" in last


def test_help_documents_flags_and_variables() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for text in ("--max-buffer-ms", "ASR_MAX_BUFFER_MS", "--provider", "ASR_PROVIDER", "DEEPGRAM_API_KEY"):
        assert text in result.stdout


@asynccontextmanager
async def served(
    http: aiohttp.ClientSession, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        env={**os.environ, "PORT": str(port), "ASR_PROVIDER": "mock", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(20):
            while True:  # poll until it answers; each try is bounded by the connection refusal
                try:
                    async with http.get(f"{url}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_finalizes_every_session_then_exits_zero(http: aiohttp.ClientSession) -> None:
    async with served(http) as (process, url):
        ws_url = url.replace("http", "ws")
        calls = [CallClient(await http.ws_connect(f"{ws_url}/v1/audio/drain-{i}")) for i in range(3)]
        for call in calls:
            await call.send_frames(frames(speechlike(1.0)))
            await call.next_event("transcript")
        process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(call.collect() for call in calls))
        code = await asyncio.wait_for(process.wait(), 20)
        stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert code == 0, stderr
    assert_clean_stderr(stderr)
    for call in calls:
        ended = call.of("session_ended")[0]
        assert ended["reason"] == "shutdown" and ended["audio_s"] == 1.0
        assert call.final_words(), "the last words were finalized, not dropped"
        assert call.close_code == 1000
    assert '"msg":"draining"' in stderr and '"msg":"stopped"' in stderr


async def test_while_draining_the_worker_is_not_ready_and_refuses_new_calls(
    http: aiohttp.ClientSession,
) -> None:
    async with served(http, ASR_MOCK="hang_close=1", ASR_FINALIZE_TIMEOUT_S="3") as (process, url):
        ws_url = url.replace("http", "ws")
        call = CallClient(await http.ws_connect(f"{ws_url}/v1/audio/slow"))
        await call.send_frames(frames(speechlike(0.4)))
        await call.next_event("transcript")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            while True:
                async with http.get(f"{url}/ready") as response:
                    if response.status == 503:
                        assert (await response.json())["reason"] == "draining"
                        break
                await asyncio.sleep(0.02)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{ws_url}/v1/audio/late")
        assert refused.value.status == 503
        await call.collect()
        assert [e["code"] for e in call.of("error")] == ["finalize_timeout"]
        assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_stream_command_plays_a_file_and_prints_the_events(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    wav = tmp_path / "call.wav"
    write_wav(wav, speechlike(0.8) + silence(0.4) + speechlike(0.6, seed=5), PCM8K)
    async with served(http) as (_, url):
        ws_url = url.replace("http", "ws")
        result = await asyncio.create_subprocess_exec(
            *CLI,
            "stream",
            str(wav),
            "--url",
            f"{ws_url}/v1/audio/smoke",
            "--calls",
            "2",
            "--speed",
            "4",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(result.communicate(), 30)
    text = out.decode()
    assert result.returncode == 0, err.decode()
    assert_clean_stderr(err)
    assert "[smoke-1] final" in text and "[smoke-2] final" in text
    assert text.count("session_ended") == 2
    assert "calls 2, ended 2" in err.decode()


async def test_stream_command_says_what_to_do_when_refused(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    wav = tmp_path / "call.wav"
    write_wav(wav, speechlike(0.2), PCM8K)
    async with served(http, ASR_WORKER_TOKEN="s3cret-t0ken") as (_, url):
        ws_url = url.replace("http", "ws")
        for target, says in (
            (
                f"{ws_url}/v1/audio/no-token",
                "HTTP 401 Unauthorized: the route needs a key with stream scope (--api-key",
            ),
            (
                f"{ws_url}/v1/audo/typo?token=s3cret-t0ken",
                "HTTP 404 Not Found: no such endpoint",
            ),
        ):
            result = await asyncio.create_subprocess_exec(
                *CLI,
                "stream",
                str(wav),
                "--url",
                target,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(result.communicate(), 30)
            assert result.returncode == 1 and says in err.decode(), err.decode()
            assert "s3cret-t0ken" not in err.decode()
            assert_clean_stderr(err)


def test_stream_command_explains_a_bad_file(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    result = run_cli("stream", str(bogus), "--url", "ws://127.0.0.1:9/v1/audio/x")
    assert result.returncode == 2 and "not a WAV file" in result.stderr
