"""Play a WAV file into a running worker as a live call, over the ingest WebSocket, at real
time, and print every event the worker sends back.

    .venv/bin/python examples/ingest_client.py call.wav            # a 16-bit PCM WAV
    .venv/bin/python examples/ingest_client.py call.wav --url ws://127.0.0.1:3001 --id call-1

With ASR_WORKER_TOKEN set on the worker, set it here too (it goes in the Authorization header).
It needs aiohttp, which the worker installs. The test suite runs this file (tests/test_examples.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import wave

import aiohttp

FRAME_S = 0.02  # 20 ms of audio per message, as a phone system sends it


async def play(ws: aiohttp.ClientWebSocketResponse, path: str) -> None:
    with wave.open(path) as wav:
        frames_per_message = round(wav.getframerate() * FRAME_S)
        while chunk := wav.readframes(frames_per_message):
            await ws.send_bytes(chunk)
            await asyncio.sleep(FRAME_S)
    await ws.send_str(json.dumps({"type": "end"}))  # the call is over: last finals, then the close


async def main(path: str, base_url: str, interaction_id: str) -> None:
    with wave.open(path) as wav:  # the worker is told the audio's format in the URL
        rate, channels = wav.getframerate(), wav.getnchannels()
    url = f"{base_url}/v1/audio/{interaction_id}?encoding=linear16&sample_rate={rate}&channels={channels}"
    token = os.environ.get("ASR_WORKER_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.ws_connect(url) as ws,
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(play(ws, path))
        async for message in ws:  # ends when the worker closes the socket after session_ended
            print(json.loads(message.data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="a 16-bit PCM WAV file")
    parser.add_argument("--url", default="ws://127.0.0.1:3001", help="the worker [ws://127.0.0.1:3001]")
    parser.add_argument("--id", default="call-1", help="the call's interaction_id [call-1]")
    args = parser.parse_args()
    asyncio.run(main(args.wav, args.url, args.id))
