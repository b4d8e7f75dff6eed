"""`asr-worker serve` and `asr-worker dg-server` as an operator runs them, with every log line
at DEBUG on stderr: a bad Deepgram key refused by a real dg-server process that requires
another, a wrong Redis password, a worker token, and an unreachable DEEPGRAM_URL. No secret
appears on either process's stderr, nor in anything they answer; and the log formatter's
redaction marker does not appear either (the code never emitted a secret for it to hide)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.support.audio import frames, speechlike
from tests.support.client import CallClient
from tests.support.exposure import REDACTED, Exposure
from tests.support.redis_server import RedisServer

CLI = [sys.executable, "-m", "asr_worker"]
KEY = "dg-proc-4e7a1c9b2f6d3085"
SERVER_KEY = "dg-proc-server-8b3f0e6a1d5c"
TOKEN = "wt-proc-2d9f6a0b3e8c7154"
WRONG_TOKEN = "wt-proc-guess-6c1b8e2a"
REDIS_PASSWORD = "rp-proc-9a5e2c7f0b4d"
WRONG_REDIS_PASSWORD = "rp-proc-wrong-3f8d1b6e"
SECRETS = (KEY, SERVER_KEY, TOKEN, WRONG_TOKEN, REDIS_PASSWORD, WRONG_REDIS_PASSWORD)


@asynccontextmanager
async def process(
    http: aiohttp.ClientSession, command: str, port: int, log: Path, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`asr-worker COMMAND` with its stderr in a file (a chatty process never blocks on a
    full pipe), once it answers /health; SIGTERM at the end, and it must exit."""
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            command,
            env={**os.environ, "ASR_LOG_LEVEL": "debug", **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            async with asyncio.timeout(30):
                while True:  # poll until it answers; each try is bounded by the refusal
                    if proc.returncode is not None:
                        raise AssertionError(f"asr-worker {command} exited (its log: {log})")
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/health") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
            yield proc
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def call_and_look(http: aiohttp.ClientSession, port: int, exposure: Exposure) -> CallClient:
    """A call with the token, then everything an operator or a client can read."""
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    call = CallClient(await http.ws_connect(f"{ws_base}/v1/audio/proc-call?token={TOKEN}"))
    try:
        await call.send_frames(frames(speechlike(0.6)), pace_s=0.002)
        await call.end()
    except ConnectionError:
        pass  # the worker closed the failed call's socket
    await call.collect(timeout_s=30)
    exposure.add("events", call.events)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path, headers in [
        ("/health", {}),
        ("/metrics", {}),
        ("/v1/sessions", bearer),
        ("/v1/calls/proc-call/events", bearer),
        (f"/v1/sessions?token={WRONG_TOKEN}", {}),
    ]:
        async with http.get(base + path, headers=headers) as response:
            exposure.add(path, f"{response.status} {dict(response.headers)} {await response.text()}")
    return call


async def test_a_refused_key_a_wrong_redis_password_and_a_token_never_reach_stderr(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)
    redis.start()
    dg_port, worker_port = free_port(), free_port()
    dg_log, worker_log = tmp_path / "dg-server.log", tmp_path / "worker.log"
    exposure = Exposure()
    try:
        dg_env = {"DG_SERVER_PORT": str(dg_port), "DG_SERVER_API_KEY": SERVER_KEY, "ASR_PROVIDER": "mock"}
        async with process(http, "dg-server", dg_port, dg_log, dg_env):
            worker_env = {
                "PORT": str(worker_port),
                "ASR_PROVIDER": "deepgram",
                "DEEPGRAM_API_KEY": KEY,
                "DEEPGRAM_URL": f"ws://127.0.0.1:{dg_port}/v1/listen",
                "ASR_WORKER_TOKEN": TOKEN,
                "PUBSUB_ADAPTER": "redis_streams",
                "REDIS_URL": redis.url.replace(REDIS_PASSWORD, WRONG_REDIS_PASSWORD),
                "ASR_FINALIZE_TIMEOUT_S": "1",
            }
            async with process(http, "serve", worker_port, worker_log, worker_env):
                call = await call_and_look(http, worker_port, exposure)
    finally:
        redis.kill()
    worker_stderr, dg_stderr = worker_log.read_text(), dg_log.read_text()
    assert [e["code"] for e in call.of("error")] == ["unauthorized"]
    assert "deepgram refused the connection" in worker_stderr
    assert "password" in exposure.texts["/health"]  # the bus says why it is down, not with what
    assert "handshake refused" in dg_stderr
    exposure.add("worker stderr", worker_stderr)
    exposure.add("dg-server stderr", dg_stderr)
    exposure.assert_hidden(*SECRETS)
    assert REDACTED not in worker_stderr + dg_stderr, "the formatter had to hide a secret: its source leaks"


async def test_an_unreachable_deepgram_url_never_brings_the_key_to_stderr(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "worker.log"
    exposure = Exposure()
    env = {
        "PORT": str(port),
        "ASR_PROVIDER": "deepgram",
        "DEEPGRAM_API_KEY": KEY,
        "DEEPGRAM_URL": f"ws://127.0.0.1:{free_port()}/v1/listen",
        "ASR_WORKER_TOKEN": TOKEN,
        "ASR_FINALIZE_TIMEOUT_S": "1",
    }
    async with process(http, "serve", port, log, env):
        call = await call_and_look(http, port, exposure)
    stderr = log.read_text()
    assert call.of("session_ended") and "never connected" in exposure.texts["/health"]  # it kept trying
    exposure.add("worker stderr", stderr)
    exposure.assert_hidden(KEY, TOKEN, WRONG_TOKEN)
    assert REDACTED not in stderr
