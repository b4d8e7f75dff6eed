"""Contact-centre calls for `bench.local --parts capacity`: two legs taking turns, at real time.

A call is two channels of 8 kHz mu-law: the agent on channel 0, the caller on channel 1. They
take turns: one says an utterance (1-8 s), the other answers after a pause of 0.3-1.0 s, so
each speaks about half the time. The utterances are drawn, by the call's index (the same
calls every run), half from recordings of people (`tests/support/human_speech.py`: short
commands, read sentences, phrases, announcements) and half from a natural synthetic voice
(`tests/support/piper_speech.py`: what agents and callers say). The client plays both legs as
one two-channel ingest socket in 20 ms frames at 1x and records every transcript event.

Per utterance: its latency (from the client sending the end of its voice to receiving the
final on its channel that covers it), whether an interim reached the client while it was
being spoken or before its final, and the words the finals gave it (each final word goes to
the utterance of its channel nearest to the word's time), scored per source.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import soxr
from tests.support.human_speech import clips, word_errors
from tests.support.piper_speech import AGENT, CALLER, sentence

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711

from .local_calls import CALL_TIMEOUT_S, FRAME_S

RATE = 8000
FORMAT = AudioFormat(Encoding.MULAW, RATE, 2)
LONG_S = 2.0  # an utterance this long should see an interim before its final


@dataclass(frozen=True)
class Turn:
    channel: int
    text: str
    source: str  # "people" or "synthetic"
    start_s: float  # where its voice starts and ends in the call
    end_s: float


@dataclass(frozen=True)
class Conversation:
    data: bytes  # interleaved two-channel mu-law
    turns: tuple[Turn, ...]

    @property
    def seconds(self) -> float:
        return FORMAT.seconds(len(self.data))


@dataclass
class Heard:
    started_at: float = 0.0
    finals: list[tuple[float, int, float, list[tuple[float, str]]]] = field(default_factory=list)
    interims: list[tuple[float, int, float]] = field(default_factory=list)  # (arrived, channel, end)
    ended: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class Utterance:
    turn: Turn
    latency_s: float | None
    interim: bool
    errors: int
    words: int


def _voice(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample of a clip's voice (its loud part)."""
    loud = np.flatnonzero(np.abs(samples) > 0.1 * float(np.abs(samples).max() or 1.0))
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, samples.size)


Pool = list[tuple[str, np.ndarray]]


def pools() -> tuple[Pool, Pool, Pool]:
    """(people, agent, caller): (transcript, 8 kHz float32) each."""
    people = [(text, soxr.resample(s, 16000, RATE).astype(np.float32)) for _set, text, s in clips()]
    spoken = []
    for lines in (AGENT, CALLER):
        made = []
        for text in lines:
            rate, audio = sentence(text)
            made.append((text, soxr.resample(audio, rate, RATE).astype(np.float32) * 0.7))
        spoken.append(made)
    return people, spoken[0], spoken[1]


def conversation(index: int, turns: int, pool: tuple[Pool, Pool, Pool]) -> Conversation:
    rng = random.Random(1000 + index)
    people, agent, caller = pool
    legs: list[list[np.ndarray]] = [[], []]
    t = 0.5
    out: list[Turn] = []
    for k in range(turns):
        channel = k % 2
        human = (k // 2 + index) % 2 == 1
        text, audio = rng.choice(people) if human else rng.choice(agent if channel == 0 else caller)
        first, last = _voice(audio)
        out.append(Turn(channel, text, "people" if human else "synthetic", t + first / RATE, t + last / RATE))
        for leg in (0, 1):
            legs[leg].append(audio if leg == channel else np.zeros_like(audio))
        pause = np.zeros(round(rng.uniform(0.3, 1.0) * RATE), dtype=np.float32)
        legs[0].append(pause)
        legs[1].append(pause)
        t += (audio.size + pause.size) / RATE
    tail = np.zeros(RATE, dtype=np.float32)
    both = np.stack([np.concatenate([np.zeros(RATE // 2, dtype=np.float32), *leg, tail]) for leg in legs], 1)
    pcm = np.clip(both * 32767, -32768, 32767).astype(np.int16).reshape(-1)
    return Conversation(encode_g711(pcm, Encoding.MULAW), tuple(out))


async def play_call(
    http: aiohttp.ClientSession, port: int, name: str, call: Conversation, delay_s: float
) -> Heard:
    heard = Heard()
    await asyncio.sleep(delay_s)
    loop = asyncio.get_running_loop()
    query = "encoding=mulaw&sample_rate=8000&channels=2"
    async with http.ws_connect(f"ws://127.0.0.1:{port}/v1/audio/{name}?{query}") as ws:

        async def talk() -> None:
            step = FORMAT.bytes_for(FRAME_S)
            heard.started_at = loop.time()
            try:
                for n, i in enumerate(range(0, len(call.data), step)):
                    if ws.closed:  # refused (engine_full): the worker said so and closed
                        return
                    await ws.send_bytes(call.data[i : i + step])
                    await asyncio.sleep(max(0.0, heard.started_at + (n + 1) * FRAME_S - loop.time()))
                await ws.send_str(json.dumps({"type": "end"}))
            except ConnectionResetError:
                return

        async with asyncio.timeout(CALL_TIMEOUT_S + call.seconds), asyncio.TaskGroup() as tg:
            tg.create_task(talk())
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if event["type"] == "transcript" and event["text"]:
                    at, channel, end = loop.time(), int(event["channel"]), float(event["end"])
                    if event["is_final"]:
                        words = [((w["start"] + w["end"]) / 2, w["word"]) for w in event["words"]]
                        heard.finals.append((at, channel, end, words))
                    else:
                        heard.interims.append((at, channel, end))
                elif event["type"] == "session_ended":
                    heard.ended = True
                elif event["type"] == "error":
                    heard.errors.append(str(event["code"]))
    return heard


def judge(call: Conversation, heard: Heard) -> list[Utterance]:
    """Each turn's latency, interim and words (see the module's notes)."""
    said: dict[int, list[str]] = {i: [] for i in range(len(call.turns))}
    for _at, channel, _end, words in heard.finals:
        for middle, word in words:
            mine = [i for i, t in enumerate(call.turns) if t.channel == channel]
            if mine:
                nearest = min(
                    mine, key=lambda i: max(0.0, call.turns[i].start_s - middle, middle - call.turns[i].end_s)
                )
                said[nearest].append(word)
    out = []
    for i, turn in enumerate(call.turns):
        covering = next((f for f in heard.finals if f[1] == turn.channel and f[2] >= turn.end_s - 0.05), None)
        latency = None if covering is None else covering[0] - (heard.started_at + turn.end_s)
        final_at = covering[0] if covering is not None else float("inf")
        interim = any(
            channel == turn.channel and end > turn.start_s and at < final_at
            for at, channel, end in heard.interims
        )
        wrong, total = word_errors(turn.text, " ".join(said[i]))
        out.append(Utterance(turn, latency, interim, wrong, total))
    return out
