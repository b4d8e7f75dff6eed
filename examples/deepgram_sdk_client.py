"""Stream a WAV file with the official Deepgram Python SDK (deepgram-sdk 7.x) to a server that
speaks Deepgram's live protocol, `asr-worker dg-server` here, and print what comes back.

    .venv/bin/asr-worker dg-server &                       # ws://127.0.0.1:3002, the local engine
    .venv/bin/python examples/deepgram_sdk_client.py call.wav

The SDK is an optional dependency: `pip install 'asr-worker[examples]'` (in a checkout,
scripts/install.sh examples; the test dependencies have it too).
The test suite runs this file against dg-server (tests/test_examples.py).
"""

from __future__ import annotations

import argparse
import asyncio
import wave

from deepgram import AsyncDeepgramClient
from deepgram.core.events import EventType
from deepgram.environment import DeepgramClientEnvironment

CHUNK_S = 0.1  # audio per message: Deepgram recommends 20 to 250 ms


def show(message: object) -> None:
    kind = type(message).__name__.removeprefix("ListenV1")
    channel = getattr(message, "channel", None)
    if kind == "Results" and channel is not None:
        mark = "final  " if getattr(message, "is_final", False) else "interim"
        print(f"{kind} {mark} {channel.alternatives[0].transcript}")
    else:
        print(kind)


async def main(path: str, url: str, api_key: str) -> None:
    with wave.open(path) as wav:  # 16-bit PCM
        rate, channels = wav.getframerate(), wav.getnchannels()
        audio = wav.readframes(wav.getnframes())
    http = url.replace("ws", "http", 1)
    client = AsyncDeepgramClient(
        api_key=api_key,
        environment=DeepgramClientEnvironment(base=http, production=url, agent=url, agent_rest=http),
    )
    async with client.listen.v1.connect(
        model="nova-3", encoding="linear16", sample_rate=rate, channels=channels, interim_results="true"
    ) as connection:
        connection.on(EventType.MESSAGE, show)
        async with asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            step = round(rate * CHUNK_S) * channels * 2
            for i in range(0, len(audio), step):
                await connection.send_media(audio[i : i + step])
                await asyncio.sleep(CHUNK_S)  # at real time, as a live call
            await connection.send_close_stream()  # the last results, Metadata, then a close 1000
            await listening


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="a 16-bit PCM WAV file")
    parser.add_argument("--url", default="ws://127.0.0.1:3002", help="the server [ws://127.0.0.1:3002]")
    parser.add_argument("--api-key", default="any", help="its key (dg-server takes any without --api-key)")
    args = parser.parse_args()
    asyncio.run(main(args.wav, args.url, args.api_key))
