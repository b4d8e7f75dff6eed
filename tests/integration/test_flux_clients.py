"""dg-server on the real local engine, proven with the clients voice agents run: a conversation
of a person's two turns ("go forward ten meters", a pause, "feels like these days go on
forever"), streamed at real time,
- over Flux (`/v2/listen`) by Pipecat's `DeepgramFluxSTTService` and LiveKit Agents'
  Deepgram `STTv2`, which must each see both turns start, update and end, with the words said;
- over `/v1/listen` by Pipecat's `DeepgramSTTService` and LiveKit's Deepgram `STT`, unchanged,
  with their default options, which must each get both utterances' words as finals;
- and by the official deepgram-sdk's `listen.v2` client, whose ForceEndTurn ends a turn at once
  and whose Configure changes how the next one ends.
The four framework clients run at once, each in its own process (tests/clients/)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asr_worker.core.audio import Encoding
from asr_worker.dgserver import DeepgramServer
from asr_worker.providers.local import LocalProvider
from tests.support.clients import ClientRun, run_client
from tests.support.human_speech import (
    CARDS,
    LIBRIVOX,
    PHRASES,
    POCKETSPHINX,
    POCKETSPHINX_SDIST,
    cache_root,
    fetch_sdist,
    join,
    word_errors,
)
from tests.support.speech import CallAudio

pytestmark = pytest.mark.timeout(300)

RATE = 16000
TAIL_S = 1.0  # after the recording's own half second: time for the last turn's end


@pytest.fixture(scope="module")
def conversation() -> CallAudio:
    root = cache_root()
    fetch_sdist(root, POCKETSPHINX, POCKETSPHINX_SDIST, CARDS + LIBRIVOX + PHRASES)
    recording = join("phrases", "pocketsphinx sdist (BSD-2-Clause)", root, PHRASES, gap_s=1.5, rate=RATE)
    call = recording.call(RATE, Encoding.LINEAR16)
    return CallAudio(call.fmt, call.data + bytes(round(TAIL_S * RATE) * 2), call.spoken)


@pytest.fixture
async def local_dg_server() -> AsyncIterator[DeepgramServer]:
    provider = LocalProvider()
    async with asyncio.TaskGroup() as tg:
        engine = tg.create_task(provider.run())
        async with asyncio.timeout(120):  # the first run on a machine assembles the model
            while True:  # it says so on /ready, which is this
                if provider.health().ready:
                    break
                await asyncio.sleep(0.05)
        async with DeepgramServer(provider).running() as server:
            yield server
        engine.cancel()


def assert_said(call: CallAudio, heard: list[str], where: str) -> None:
    """Each turn's words, as the engine hears this person (one error of slack in all)."""
    assert len(heard) == len(call.spoken), f"{where}: {heard}"
    errors = sum(word_errors(s.text, h)[0] for s, h in zip(call.spoken, heard, strict=True))
    assert errors <= 1, f"{where}: {heard}"


async def test_pipecat_and_livekit_flux_and_v1_clients_hear_both_turns(
    local_dg_server: DeepgramServer, conversation: CallAudio, tmp_path: Path
) -> None:
    audio = tmp_path / "conversation.raw"
    audio.write_bytes(conversation.data)
    url = f"ws://127.0.0.1:{local_dg_server.port}"
    runs = await asyncio.gather(
        run_client("pipecat_client", "flux", url, audio, RATE),
        run_client("livekit_client", "flux", url, audio, RATE),
        run_client("pipecat_client", "v1", url, audio, RATE),
        run_client("livekit_client", "v1", url, audio, RATE),
    )
    pipecat_flux, livekit_flux, pipecat_v1, livekit_v1 = runs

    # Pipecat's Flux service: its turn events, an interim transcription on each update, and the
    # final transcription of each turn at its end.
    turns = [e["kind"] for e in pipecat_flux.of("StartOfTurn", "EagerEndOfTurn", "TurnResumed", "EndOfTurn")]
    assert turns == ["StartOfTurn", "EndOfTurn", "StartOfTurn", "EndOfTurn"], pipecat_flux.name
    assert len(pipecat_flux.of("Update")) >= 2 and pipecat_flux.of("interim")
    assert_said(conversation, pipecat_flux.texts("EndOfTurn"), pipecat_flux.name)
    assert pipecat_flux.texts("transcription") == pipecat_flux.texts("EndOfTurn")
    assert_turns_end_after_their_speech(pipecat_flux, conversation, "EndOfTurn")

    # LiveKit's STTv2: start of speech, interims, the final transcript and the end of each turn.
    speech = [e["kind"] for e in livekit_flux.of("start_of_speech", "final_transcript", "end_of_speech")]
    assert speech == ["start_of_speech", "final_transcript", "end_of_speech"] * 2, livekit_flux.name
    assert livekit_flux.of("interim_transcript")
    assert_said(conversation, livekit_flux.texts("final_transcript"), livekit_flux.name)
    assert_turns_end_after_their_speech(livekit_flux, conversation, "end_of_speech")

    # The v1 plugins, unchanged and with their default options: every word, as finals.
    assert_said(conversation, pipecat_v1.texts("transcription"), pipecat_v1.name)
    assert_said(conversation, livekit_v1.texts("final_transcript"), livekit_v1.name)
    assert livekit_v1.of("start_of_speech") and livekit_v1.of("end_of_speech")

    # What the server saw: two Flux streams with both turns each, two v1 streams.
    assert [r.turn_events() for r in local_dg_server.flux_connections] == [
        ["StartOfTurn", "EndOfTurn", "StartOfTurn", "EndOfTurn"]
    ] * 2
    assert len(local_dg_server.connections) == 2
    for run in runs:
        assert "Traceback" not in run.stderr, run.stderr[-2000:]


def assert_turns_end_after_their_speech(run: ClientRun, call: CallAudio, kind: str) -> None:
    """No turn ends while its speaker is still speaking (the client's clock is the audio's: it
    streams from t=0 at real time, so a message before a phrase's end would be early). How soon
    after is bench/flux.py's measure, not a test's: that the first turn ended before the second
    began is what the events' order and each turn's words already say."""
    ends = [float(str(e["t"])) for e in run.of(kind)]
    assert [s.end_s < end for s, end in zip(call.spoken, ends, strict=True)] == [True, True], (run.name, ends)


# deepgram-sdk 7.x uses websockets' legacy client, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_sdks_force_end_turn_ends_a_turn_at_once_and_configure_changes_the_next(
    local_dg_server: DeepgramServer, conversation: CallAudio
) -> None:
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment
    from deepgram.listen.v2.types import ListenV2Configure, ListenV2ConfigureThresholds

    base = f"127.0.0.1:{local_dg_server.port}"
    client = AsyncDeepgramClient(
        api_key="sdk-key",
        environment=DeepgramClientEnvironment(
            base=f"http://{base}",
            production=f"ws://{base}",
            agent=f"ws://{base}",
            agent_rest=f"http://{base}",
        ),
    )
    first = conversation.spoken[0]
    cut = round((first.end_s + 0.1) * RATE) * 2  # push-to-talk released just after the first phrase
    turn_ended = asyncio.Event()
    received: list[object] = []

    def on_message(message: object) -> None:
        received.append(message)
        if getattr(message, "event", None) == "EndOfTurn":
            turn_ended.set()

    # eot_threshold=1.0: nothing but ForceEndTurn (and the timeout) ends a turn.
    async with client.listen.v2.connect(
        model="flux-general-en", encoding="linear16", sample_rate=RATE, eot_threshold="1.0"
    ) as connection:
        connection.on(EventType.MESSAGE, on_message)
        async with asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            loop = asyncio.get_running_loop()
            started = loop.time()
            step = RATE // 10 * 2  # 100 ms
            for i in range(0, cut, step):
                await connection.send_media(conversation.data[i : min(i + step, cut)])
                await asyncio.sleep(max(0.0, started + (i + step) / (2 * RATE) - loop.time()))
            await connection.send_force_end_turn()
            await asyncio.wait_for(turn_ended.wait(), 30)  # with no more audio sent
            await connection.send_configure(
                ListenV2Configure(thresholds=ListenV2ConfigureThresholds(eot_threshold=0.7))
            )
            rest = conversation.data[cut:]
            for i in range(0, len(rest), step):
                await connection.send_media(rest[i : i + step])
                await asyncio.sleep(0.05)  # twice real time
            await connection.send_close_stream()
            await asyncio.wait_for(listening, 30)
    names = [type(m).__name__ for m in received]
    assert names[0] == "ListenV2Connected" and "ListenV2ConfigureSuccess" in names
    ends = [m for m in received if getattr(m, "event", None) == "EndOfTurn"]
    assert [getattr(m, "trigger", None) for m in ends] == ["manual", "model"]
    assert_said(conversation, [getattr(m, "transcript", "") for m in ends], "deepgram-sdk listen.v2")
    # At once: it came with no audio after the ForceEndTurn, so the force alone ended it (with
    # eot_threshold=1.0, only the 5 s timeout could have, and it needs more audio); how soon in
    # wall time is bench's measure, not a test's.
    assert getattr(ends[0], "audio_window_end", None) == pytest.approx(cut / (2 * RATE))
    assert [getattr(m, "turn_index", None) for m in ends] == [0, 1]
    for turn in (0, 1):  # each turn starts, then is updated with its words as they come
        of_turn = [m for m in received if getattr(m, "turn_index", None) == turn]
        kinds = [getattr(m, "event", None) for m in of_turn if getattr(m, "words", None)]
        assert kinds[0] == "StartOfTurn" and "Update" in kinds, kinds
    thresholds = local_dg_server.flux_connections[0].sent_of("ConfigureSuccess")[0]["thresholds"]
    assert json.dumps(thresholds) == '{"eot_threshold": 0.7, "eot_timeout_ms": 5000}'
