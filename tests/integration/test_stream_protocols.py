"""Every route tried as a user tries it: `asr-worker stream FILE --protocol P` (the command, a
process) plays one recording of a person into a worker on the real local engine over each
route in turn, in that platform's own messages and format (mu-law 8 kHz for Twilio, AudioHook
and SIPREC's RTP, 16 kHz PCM for Exotel, 24 kHz PCM for OpenAI Realtime, the file's own for the
ingest socket, dg-server's Deepgram protocol, which runs on the worker's engine, and the media
forks that take it), and each route's finals must be the words that were said, within the
accuracy the engine has at that route's format. The first routes play at real time; the media
forks as fast as their sockets take the audio (the engine cuts and decodes the same utterances
whatever the pace, as tests/integration/test_forks_speech.py shows), to keep the suite short."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from asr_worker.audiohook.signature import ApiKeys as AudioHookKeys
from asr_worker.config import Settings, make_provider
from asr_worker.core.audio import Encoding
from asr_worker.dgserver import DeepgramServer
from asr_worker.tools import protocols
from asr_worker.tools.audio_files import write_wav
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.cli import CLI, assert_clean_stderr
from tests.support.human_speech import Recording, phrases, word_errors

pytestmark = pytest.mark.timeout(240)

HOOK_KEY, HOOK_SECRET = "try-hook-key", base64.b64encode(b"try it: a client secret, 32 byte").decode()
# Measured: every word over every route. A word of slack where the route carries 8 kHz mu-law,
# at which the engine's measured word error rate is higher (docs/local-engine.md#accuracy).
MAX_ERRORS = {"twilio": 1, "audiohook": 1, "siprec": 1}
REAL_TIME = ("ingest", "twilio", "exotel", "audiohook", "realtime", "deepgram", "siprec")
# AudioSocket names a call by a UUID.
CALL_ID = {"audiosocket": "0b6f3c1e-5a2d-4c8b-9e7f-1d2c3b4a5e6f"}


@pytest.fixture(scope="module")
def recording() -> Recording:
    return phrases()


@pytest.fixture
async def local_worker(http: aiohttp.ClientSession) -> AsyncIterator[Worker]:
    keys = AudioHookKeys.parse(f"{HOOK_KEY}:{HOOK_SECRET}")
    async with running_worker(
        make_provider(Settings()), audiohook_api_keys=keys, siprec_port=0, audiosocket_port=0
    ) as worker:
        async with asyncio.timeout(120):  # the first run on a machine assembles the model
            while True:
                async with http.get(f"{base_url(worker)}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield worker


@pytest.mark.parametrize("protocol", protocols.NAMES)
async def test_every_route_gets_the_words_a_person_said(
    protocol: str, recording: Recording, local_worker: Worker, tmp_path: Path
) -> None:
    wav = tmp_path / "phrases.wav"
    call = recording.call(16000, Encoding.LINEAR16)
    write_wav(wav, call.data, call.fmt)
    # dg-server's Deepgram protocol, served from the worker's own engine
    async with DeepgramServer(local_worker.provider).running() as dg:
        port = dg.port if protocol == "deepgram" else local_worker.port
        args = ["--api-key", HOOK_KEY, "--client-secret", HOOK_SECRET] if protocol == "audiohook" else []
        if protocol == "siprec":
            args = ["--sip-port", str(local_worker.siprec.sip_port)]
        if protocol == "audiosocket":
            args = ["--audiosocket-port", str(local_worker.audiosocket.port)]
        if protocol not in REAL_TIME:
            args += ["--speed", "0"]
        call_id = CALL_ID.get(protocol, "person-1")
        process = await asyncio.create_subprocess_exec(
            *CLI,
            *(
                "stream",
                str(wav),
                "--url",
                f"ws://127.0.0.1:{port}",
                "--protocol",
                protocol,
                "--id",
                call_id,
            ),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert_clean_stderr(err)
    lines = out.decode().splitlines()
    finals = [line.split(maxsplit=4)[4] for line in lines if line.startswith(f"[{call_id}] final ")]
    heard = " ".join(finals)
    errors, words = word_errors(recording.text, heard)
    print(f"{protocol}: {errors}/{words} words wrong: {heard}")
    assert errors <= MAX_ERRORS.get(protocol, 0), f"{protocol} heard {heard!r}"
    assert lines[0].startswith(f"[{call_id}] session_started") and lines[-1].startswith(
        f"[{call_id}] session_ended"
    ), f"{protocol}: {out.decode()}"
