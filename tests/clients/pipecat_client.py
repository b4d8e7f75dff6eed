"""Pipecat's Deepgram speech-to-text services, as a Pipecat app runs them, pointed at a Deepgram
server: `flux` runs `DeepgramFluxSTTService` (`/v2/listen`), `v1` runs `DeepgramSTTService`
(`/v1/listen`), each with its default options, in a pipeline fed a raw 16-bit mono audio file
at real time. Prints what the app sees, one JSON object a line: the service's turn events and
the transcription frames, each with the seconds since the audio began.

Runs in .venv-clients (scripts/install-clients.sh), not in the worker's virtualenv:
    .venv-clients/bin/python tests/clients/pipecat_client.py flux ws://127.0.0.1:3002 call.raw 16000
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.deepgram.flux.stt import DeepgramFluxSTTService
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.workers.runner import WorkerRunner

CHUNK_S = 0.02  # what a Pipecat transport hands on: 20 ms frames


class Clock:
    started = time.monotonic()  # reset when the audio begins


def say(kind: str, **fields: object) -> None:
    print(json.dumps({"t": round(time.monotonic() - Clock.started, 3), "kind": kind, **fields}), flush=True)


class Transcripts(FrameProcessor):
    """The frames a Pipecat app's next processor (its LLM context aggregator) would get."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            say("transcription", text=frame.text, finalized=bool(getattr(frame, "finalized", False)))
        elif isinstance(frame, InterimTranscriptionFrame):
            say("interim", text=frame.text)
        await self.push_frame(frame, direction)


def flux_service(url: str, rate: int) -> DeepgramFluxSTTService:
    stt = DeepgramFluxSTTService(api_key="pipecat-key", url=f"{url}/v2/listen", sample_rate=rate)

    @stt.event_handler("on_start_of_turn")
    async def on_start_of_turn(service: object, transcript: str) -> None:
        say("StartOfTurn", text=transcript)

    @stt.event_handler("on_eager_end_of_turn")
    async def on_eager_end_of_turn(service: object, transcript: str) -> None:
        say("EagerEndOfTurn", text=transcript)

    @stt.event_handler("on_turn_resumed")
    async def on_turn_resumed(service: object) -> None:
        say("TurnResumed")

    @stt.event_handler("on_update")
    async def on_update(service: object, transcript: str) -> None:
        say("Update", text=transcript)

    @stt.event_handler("on_end_of_turn")
    async def on_end_of_turn(service: object, transcript: str) -> None:
        say("EndOfTurn", text=transcript)

    return stt


async def main(mode: str, url: str, audio: bytes, rate: int) -> None:
    stt = (
        flux_service(url, rate)
        if mode == "flux"
        else DeepgramSTTService(api_key="pipecat-key", base_url=url, sample_rate=rate)
    )

    @stt.event_handler("on_connection_error")
    async def on_connection_error(service: object, error: object) -> None:
        say("connection_error", error=str(error))

    worker = PipelineWorker(
        Pipeline([stt, Transcripts()]),
        params=PipelineParams(audio_in_sample_rate=rate),
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    async def feed() -> None:
        await asyncio.sleep(1.0)  # the pipeline starts and the service connects
        Clock.started = started = time.monotonic()
        step = int(rate * CHUNK_S) * 2
        for i in range(0, len(audio), step):
            await worker.queue_frame(InputAudioRawFrame(audio[i : i + step], rate, 1))
            await asyncio.sleep(max(0.0, started + (i + step) / (2 * rate) - time.monotonic()))
        say("audio_end")
        await asyncio.sleep(1.0)  # the last results
        await worker.queue_frame(EndFrame())

    await asyncio.gather(runner.run(), feed())
    say("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]).read_bytes(), int(sys.argv[4])))
