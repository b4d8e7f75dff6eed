"""Stream a WAV file with the official Deepgram Python SDK's Flux client (deepgram-sdk 7.x,
`listen.v2`) to a server that speaks Deepgram's turn-taking API, `asr-worker dg-server` here,
and print where each of the speaker's turns starts and ends.

    .venv/bin/asr-worker dg-server &                       # ws://127.0.0.1:3002, the local engine
    .venv/bin/python examples/deepgram_flux_client.py call.wav

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

CHUNK_S = 0.08  # audio per message: Deepgram recommends 80 ms for Flux
TAIL_S = 1.0  # silence after the file, as a microphone left open: time for the last turn to end


def show(message: object) -> None:
    kind = type(message).__name__.removeprefix("ListenV2")
    event = getattr(message, "event", "")
    if kind != "TurnInfo":
        print(kind)
    elif event != "Update":  # about every 0.25 s of audio: left out here
        turn, transcript = getattr(message, "turn_index", 0), getattr(message, "transcript", "")
        confidence = getattr(message, "end_of_turn_confidence", 0.0)
        trigger = getattr(message, "trigger", None)
        how = f" ({trigger}, {confidence:.2f})" if trigger else ""
        print(f"{event} {turn}{how}: {transcript}")


async def main(path: str, url: str, api_key: str, eager: float | None) -> None:
    with wave.open(path) as wav:  # 16-bit PCM, one channel
        rate = wav.getframerate()
        audio = wav.readframes(wav.getnframes()) + bytes(round(rate * TAIL_S) * 2)
    http = url.replace("ws", "http", 1)
    client = AsyncDeepgramClient(
        api_key=api_key,
        environment=DeepgramClientEnvironment(base=http, production=url, agent=url, agent_rest=http),
    )
    async with client.listen.v2.connect(
        model="flux-general-en",
        encoding="linear16",
        sample_rate=rate,
        eot_threshold="0.7",  # Deepgram's default: the confidence at which a turn ends
        eager_eot_threshold=None if eager is None else str(eager),  # set: EagerEndOfTurn, TurnResumed
    ) as connection:
        connection.on(EventType.MESSAGE, show)
        async with asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            step = round(rate * CHUNK_S) * 2
            for i in range(0, len(audio), step):
                await connection.send_media(audio[i : i + step])
                await asyncio.sleep(CHUNK_S)  # at real time, as a live conversation
            await connection.send_close_stream()  # the last turn's end, then a close 1000
            await listening


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="a 16-bit PCM WAV file, one channel")
    parser.add_argument("--url", default="ws://127.0.0.1:3002", help="the server [ws://127.0.0.1:3002]")
    parser.add_argument("--api-key", default="any", help="its key (dg-server takes any without --api-key)")
    parser.add_argument("--eager", type=float, help="eager_eot_threshold, 0.3 to 0.7 (default: none)")
    args = parser.parse_args()
    asyncio.run(main(args.wav, args.url, args.api_key, args.eager))
