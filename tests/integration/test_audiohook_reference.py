"""Genesys's own AudioHook test client (`client/` of purecloudlabs/audiohook-reference-
implementation, Node/TypeScript) streams a stereo WAV of speech into `/v1/audiohook` of a real
worker on the embedded `local` engine: a signed upgrade, `open`/`opened`, its pings, a pause and
a resume the worker asks for, `close`/`closed`; the client must exit 0 without a warning, the
transcripts of both channels must be right, and every transcript entity it received must
type-check, with the TypeScript compiler, as the reference's own `EventEntityTranscript`.

The client is published on neither npm nor PyPI, so it comes from a checkout named by
AUDIOHOOK_REFERENCE_DIR (copied, then `npm install` from the npm registry; its lock file names a
private registry); without it the test is skipped. `scripts/audiohook-reference.sh` runs it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from asr_worker.audiohook.signature import ApiKeys
from asr_worker.config import Settings, make_provider
from asr_worker.core.audio import Encoding
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.speech import SENTENCES, Speech, interleave, word_error_rate

pytestmark = pytest.mark.timeout(400)

REFERENCE = os.environ.get("AUDIOHOOK_REFERENCE_DIR", "")
API_KEY = "reference-client-key"
SECRET = b"the reference client's secret!!"
CALL_ID = "genesys-reference-call"
MAX_WER = 0.2
_LOG_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\.\d{3}\] ")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\[\d*G|\x1b\[0K|\r")


@pytest.fixture(scope="module")
def client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the reference checkout with the client's dependencies installed."""
    if not REFERENCE:
        pytest.skip(
            "AUDIOHOOK_REFERENCE_DIR is not set: the reference client is not published on npm or PyPI"
        )
    for tool in ("npm", "npx", "script"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    root = tmp_path_factory.mktemp("audiohook-reference") / "ref"
    shutil.copytree(
        REFERENCE, root, ignore=shutil.ignore_patterns("node_modules", ".git", "cdk.out"), symlinks=True
    )
    client = root / "client"
    (client / "package-lock.json").unlink(missing_ok=True)  # it names Genesys's private registry
    subprocess.run(
        ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund"],
        cwd=client,
        check=True,
        timeout=300,
        capture_output=True,
    )
    (root / "node_modules").symlink_to(client / "node_modules")  # for ../app/audiohook's imports
    return client


@pytest.fixture
async def local_worker(http: aiohttp.ClientSession) -> AsyncIterator[Worker]:
    keys = ApiKeys.parse(f"{API_KEY}:{base64.b64encode(SECRET).decode()}")
    async with running_worker(make_provider(Settings()), audiohook_api_keys=keys) as worker:
        async with asyncio.timeout(120):  # the model loads
            while True:
                async with http.get(f"{base_url(worker)}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield worker


def stereo_wav(speech: Speech, path: Path) -> tuple[str, str]:
    """The customer (external, left) speaks, then the agent (internal, right) answers."""
    customer = speech.call([SENTENCES[0]], rate=8000, lead_s=0.5, tail_s=4.5)
    agent = speech.call([SENTENCES[1]], rate=8000, lead_s=4.0, tail_s=1.0)
    assert customer.fmt.encoding is Encoding.LINEAR16
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(interleave(customer, agent))
    return customer.text, agent.text


class ClientLog:
    """The client's pino-pretty output, read as it comes: whole entries (a timestamped line and
    its continuation lines)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.entries: list[str] = []
        self._current: list[str] = []

    async def until(self, needle: str, timeout_s: float = 60.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not any(needle in e for e in self.entries):
                if not await self._line():
                    raise AssertionError(f"client exited before {needle!r}:\n" + "\n".join(self.entries))

    async def rest(self) -> None:
        while await self._line():
            pass
        self._flush()

    async def _line(self) -> bool:
        raw = await self.stream.readline()
        if not raw:
            self._flush()
            return False
        line = _ANSI.sub("", raw.decode(errors="replace")).rstrip("\n")
        if _LOG_LINE.match(line):
            self._flush()
        self._current.append(line)
        return True

    def _flush(self) -> None:
        if self._current:
            self.entries.append("\n".join(self._current))
            self._current = []

    def events(self) -> list[dict[str, object]]:
        out = []
        for entry in self.entries:
            _, found, body = entry.partition("Event message: ")
            if found:  # the JSON, maybe followed by the terminal's noise
                out.append(json.JSONDecoder().raw_decode(body.lstrip())[0])
        return out


async def test_the_reference_client_streams_a_call_into_the_worker(
    client_dir: Path, local_worker: Worker, http: aiohttp.ClientSession, speech: Speech, tmp_path: Path
) -> None:
    wav = tmp_path / "call.wav"
    customer_text, agent_text = stereo_wav(speech, wav)
    uri = f"ws://127.0.0.1:{local_worker.port}/v1/audiohook"
    command = (
        f"npx ts-node src/index.ts --uri {uri} --wavfile {wav} --api-key {API_KEY} "
        f"--client-secret {base64.b64encode(SECRET).decode()} --supported-languages "
        f"--custom-config '{json.dumps({'interaction_id': CALL_ID})}'"
    )
    # It reads keys from a terminal (`setRawMode`): `script` gives it one.
    process = await asyncio.create_subprocess_exec(
        *("script", "-qec", command, "/dev/null"),
        cwd=client_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    log = ClientLog(process.stdout)
    try:
        await log.until("Session open!", timeout_s=120)  # ts-node compiles first
        await log.until("onPongMessage")
        await log.until("Event message")
        control = f"{base_url(local_worker)}/v1/audiohook/{CALL_ID}"
        assert (await http.post(f"{control}/pause")).status == 200
        await log.until("Pausing media source")
        assert (await http.post(f"{control}/resume")).status == 200
        await log.until("Resuming media source")
        await log.until("onClosedMessage - Session closed", timeout_s=60)
        await log.rest()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    text = "\n".join(log.entries)
    assert not re.search(r"\] (WARN|ERROR|FATAL):", text), text
    assert "All sessions disconnected, exiting" in text
    opened = next(e for e in log.entries if "Session open!" in e)
    assert '"channels":["external","internal"]' in opened and '"supportedLanguages":["en-US"]' in opened

    entities = [entity for event in log.events() for entity in event["entities"]]  # type: ignore[attr-defined]
    finals = {0: "", 1: ""}
    for entity in entities:
        data = entity["data"]
        if data["isFinal"]:
            finals[data["channelId"]] += " " + data["alternatives"][0]["interpretations"][0]["transcript"]
    print(f"external (channel 0): {finals[0].strip()!r}\ninternal (channel 1): {finals[1].strip()!r}")
    assert word_error_rate(customer_text, finals[0]) <= MAX_WER, finals
    assert word_error_rate(agent_text, finals[1]) <= MAX_WER, finals

    # Every entity as the reference's own type says, checked by the TypeScript compiler.
    check = client_dir / "src" / "received-entities.ts"
    check.write_text(
        "import { EventEntityTranscript } from '../../app/audiohook/src/protocol/entities-transcript';\n"
        f"export const received: EventEntityTranscript[] = {json.dumps(entities, indent=1)};\n"
    )
    tsc = await asyncio.create_subprocess_exec(
        *("npx", "tsc", "--noEmit", "--strict", "--skipLibCheck", str(check)),
        cwd=client_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(tsc.communicate(), 120)
    assert tsc.returncode == 0, output.decode(errors="replace")
