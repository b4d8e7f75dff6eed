"""LiveKit Agents' Deepgram speech-to-text, as an agent runs it, pointed at a Deepgram server:
`flux` runs `deepgram.STTv2` (`/v2/listen`), `v1` runs `deepgram.STT` (`/v1/listen`), each with
its default options, streaming a raw 16-bit mono audio file at real time as `rtc.AudioFrame`s.
Prints the speech events the agent gets, one JSON object a line, each with the seconds since
the audio began.

Runs in .venv-clients (scripts/install-clients.sh), not in the worker's virtualenv:
    .venv-clients/bin/python tests/clients/livekit_client.py flux ws://127.0.0.1:3002 call.raw 16000
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from livekit import rtc
from livekit.agents import stt
from livekit.plugins import deepgram

CHUNK_S = 0.02  # what a LiveKit room track delivers: 20 ms frames


def say(started: float, kind: str, **fields: object) -> None:
    print(json.dumps({"t": round(time.monotonic() - started, 3), "kind": kind, **fields}), flush=True)


async def main(mode: str, url: str, audio: bytes, rate: int) -> None:
    async with aiohttp.ClientSession() as session:
        if mode == "flux":
            engine: stt.STT = deepgram.STTv2(
                api_key="livekit-key", base_url=f"{url}/v2/listen", http_session=session, sample_rate=rate
            )
        else:
            engine = deepgram.STT(
                api_key="livekit-key", base_url=f"{url}/v1/listen", http_session=session, sample_rate=rate
            )
        stream = engine.stream()
        started = time.monotonic()

        async def feed() -> None:
            step = int(rate * CHUNK_S)
            for n, i in enumerate(range(0, len(audio), step * 2)):
                chunk = audio[i : i + step * 2]
                stream.push_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2))
                await asyncio.sleep(max(0.0, started + (n + 1) * CHUNK_S - time.monotonic()))
            say(started, "audio_end")
            await asyncio.sleep(1.0)  # the last results
            stream.end_input()

        async def read() -> None:
            async for event in stream:
                text = event.alternatives[0].text if event.alternatives else ""
                say(started, event.type.value, text=text)

        await asyncio.gather(feed(), read())
        await stream.aclose()
    say(started, "done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]).read_bytes(), int(sys.argv[4])))
