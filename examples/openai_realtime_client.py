"""Stream a WAV file with the official `openai` Python SDK's realtime client to a server that
speaks OpenAI's Realtime API in transcription mode, the worker's `/v1/realtime` here, and print
the transcription as it comes: each delta, then each item's `completed` transcript.

    ./scripts/serve.sh &                                   # the worker on 127.0.0.1:3001
    .venv/bin/python examples/openai_realtime_client.py call.wav

The SDK is an optional dependency: `pip install 'asr-worker[examples]'` (in a checkout,
scripts/install.sh examples; the test dependencies have it too).
The test suite runs this file against a worker (tests/test_examples.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import wave
from typing import Final

import numpy as np
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequestParam

CHUNK_S = 0.1  # audio per append
RATE: Final = 24000  # `audio/pcm` is 24 kHz 16-bit mono


def pcm24k(path: str) -> bytes:
    """The WAV's first channel as 24 kHz 16-bit PCM (linear interpolation: fine for speech)."""
    with wave.open(path) as wav:  # 16-bit PCM
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")[::channels]
    if rate != RATE:
        at = np.arange(round(len(samples) * RATE / rate)) * rate / RATE
        samples = np.interp(at, np.arange(len(samples)), samples).astype("<i2")
    return samples.tobytes()


async def main(path: str, base_url: str, api_key: str) -> None:
    audio = pcm24k(path)
    client = AsyncOpenAI(api_key=api_key, websocket_base_url=base_url)
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        session: RealtimeTranscriptionSessionCreateRequestParam = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": {"type": "server_vad"},
                }
            },
        }
        await conn.session.update(session=session)

        async def play() -> None:
            step = round(RATE * CHUNK_S) * 2
            for i in range(0, len(audio), step):
                await conn.input_audio_buffer.append(audio=base64.b64encode(audio[i : i + step]).decode())
                await asyncio.sleep(CHUNK_S)  # at real time, as a live call
            await conn.input_audio_buffer.commit()  # the end: the last item now

        pending: set[str] = set()
        async with asyncio.TaskGroup() as tg:
            player = tg.create_task(play())
            async for event in conn:
                if event.type == "input_audio_buffer.committed":
                    pending.add(event.item_id)
                elif event.type == "conversation.item.input_audio_transcription.delta":
                    print(f"delta     {event.item_id} {event.delta!r}")
                elif event.type == "conversation.item.input_audio_transcription.completed":
                    print(f"completed {event.item_id} {event.transcript}")
                    pending.discard(event.item_id)
                    if player.done() and not pending:
                        break  # every item, the end's commit's too, is complete
                elif event.type == "error":
                    print(f"error     {event.error.code}: {event.error.message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="a 16-bit PCM WAV file")
    parser.add_argument(
        "--url", default="ws://127.0.0.1:3001/v1", help="the API base [ws://127.0.0.1:3001/v1]"
    )
    parser.add_argument("--api-key", default="any", help="ASR_WORKER_TOKEN, if the worker has one")
    args = parser.parse_args()
    asyncio.run(main(args.wav, args.url, args.api_key))
