"""End-of-turn latency of dg-server's Flux (`/v2/listen`) next to v1's endpointing (`/v1/listen`),
on the same recordings of people: `python -m bench.flux` (from the repository root).

A conversation is the short clips of people in tests/support/human_speech.py (cards, LibriVox
sentences, phrases, and the ALSA announcements where apt can fetch them), one turn each, with
`--gap` seconds of silence between them: the shape of a caller answering a voice agent. One
`asr-worker dg-server` process (the local engine, default settings) takes two streams of it at
once, at real time in 20 ms messages of 16 kHz linear16:

* Flux, as a voice agent opens it (`model=flux-general-en`, `eot_threshold`, and
  `eager_eot_threshold` unless `--eager 0`);
* v1, as a Deepgram live client asks for endpointing (`interim_results=true`,
  `utterance_end_ms=1000`, `vad_events=true`).

For each turn, the latency from the end of the person's voice (the clip's last loud sample,
`Spoken.end_s`, sent at the stream's start plus that offset) to the first message of each kind
that arrives after it and before the next turn's voice begins: EagerEndOfTurn and EndOfTurn on
Flux, the first `speech_final` result and UtteranceEnd on v1. A turn with none in its window
is counted missing; an EndOfTurn that arrives while the person is still speaking is counted
early. The EndOfTurn transcripts' word error rate is scored against the clips' texts.

Prints one table. About the conversation's length (some 100 s with the ALSA clips), plus the
engine's start. Needs the test install (the recordings' fetching) and pip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.human_speech import (
    CARDS,
    CHANNELS,
    LIBRIVOX,
    PHRASES,
    POCKETSPHINX,
    POCKETSPHINX_SDIST,
    cache_root,
    fetch_alsa,
    fetch_sdist,
    join,
    word_errors,
)
from tests.support.speech import CallAudio, Spoken
from websockets.asyncio.client import connect

from asr_worker.core.audio import Encoding

from .local_calls import CallRun, play, running

RATE = 16000
Keep = Callable[[dict[str, object]], bool]


@dataclass
class Stream:
    """What one stream received: (arrival, seconds since its first audio, message)."""

    started_at: float = 0.0
    messages: list[tuple[float, dict[str, object]]] = field(default_factory=list)

    def arrivals(self, keep: Keep) -> list[tuple[float, dict[str, object]]]:
        """(audio time of arrival, message) of the messages `keep` accepts."""
        return [(at - self.started_at, m) for at, m in self.messages if keep(m)]


def conversation(gap_s: float, turns: int | None = None) -> CallAudio:
    root = cache_root()
    fetch_sdist(root, POCKETSPHINX, POCKETSPHINX_SDIST, CARDS + LIBRIVOX + PHRASES)
    clips = (PHRASES + CARDS + LIBRIVOX + (CHANNELS if fetch_alsa(root) else ()))[:turns]
    recording = join("turns", "human_speech clips", root, clips, gap_s=gap_s, rate=RATE)
    call = recording.call(RATE, Encoding.LINEAR16)
    return CallAudio(call.fmt, call.data + bytes(round(gap_s * RATE) * 2), call.spoken)


async def stream(url: str, call: CallAudio) -> Stream:
    run = Stream()
    loop = asyncio.get_running_loop()
    async with connect(url, additional_headers={"Authorization": "Token bench"}, max_size=None) as ws:

        async def talk() -> None:
            timing = CallRun()
            await play(timing, call, lambda _n, frame: ws.send(frame))
            run.started_at = timing.started_at
            await ws.send('{"type": "CloseStream"}')

        async with asyncio.timeout(len(call.data) / (2 * RATE) + 60), asyncio.TaskGroup() as tg:
            tg.create_task(talk())
            async for message in ws:
                run.messages.append((loop.time(), json.loads(message)))
    return run


def latencies(
    spoken: tuple[Spoken, ...], arrivals: list[tuple[float, dict[str, object]]]
) -> tuple[list[float], list[dict[str, object] | None]]:
    """For each turn, the first arrival after its voice ends and before the next voice begins."""
    found: list[float] = []
    first: list[dict[str, object] | None] = []
    for i, turn in enumerate(spoken):
        until = spoken[i + 1].start_s if i + 1 < len(spoken) else float("inf")
        hit = next(((at, m) for at, m in arrivals if turn.end_s < at < until), None)
        first.append(None if hit is None else hit[1])
        if hit is not None:
            found.append(hit[0] - turn.end_s)
    return found, first


def row(name: str, values: list[float], turns: int) -> str:
    if not values:
        return f"{name:<44} {'-':>7} {'-':>7} {'-':>7} {turns:>8}"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    cells = (statistics.median(ordered), p95, ordered[-1])
    return f"{name:<44} " + " ".join(f"{v * 1000:>5.0f}ms" for v in cells) + f" {turns - len(values):>8}"


async def main(args: argparse.Namespace) -> None:
    call = conversation(args.gap, args.turns)
    flux_query = f"model=flux-general-en&encoding=linear16&sample_rate={RATE}&eot_threshold={args.eot}"
    if args.eager:
        flux_query += f"&eager_eot_threshold={args.eager}"
    v1_query = (
        f"encoding=linear16&sample_rate={RATE}&interim_results=true&utterance_end_ms=1000&vad_events=true"
    )
    async with running("dg-server", args.provider) as port:
        flux, v1 = await asyncio.gather(
            stream(f"ws://127.0.0.1:{port}/v2/listen?{flux_query}", call),
            stream(f"ws://127.0.0.1:{port}/v1/listen?{v1_query}", call),
        )

    def turn(event: str) -> Keep:
        return lambda m: m.get("type") == "TurnInfo" and m.get("event") == event

    spoken = call.spoken
    eager, _ = latencies(spoken, flux.arrivals(turn("EagerEndOfTurn")))
    ends, end_messages = latencies(spoken, flux.arrivals(turn("EndOfTurn")))
    speech_final, _ = latencies(
        spoken,
        v1.arrivals(lambda m: m.get("type") == "Results" and m.get("speech_final") is True and _said(m)),
    )
    utterance_end, _ = latencies(spoken, v1.arrivals(lambda m: m.get("type") == "UtteranceEnd"))
    early = sum(
        1 for at, _m in flux.arrivals(turn("EndOfTurn")) if any(s.start_s < at < s.end_s for s in spoken)
    )
    resumed = len(flux.arrivals(turn("TurnResumed")))
    errors = words = 0
    for said, message in zip(spoken, end_messages, strict=True):
        e, n = word_errors(said.text, str(message["transcript"]) if message else "")
        errors, words = errors + e, words + n
    seconds = len(call.data) / (2 * RATE)
    eager_name = f"eager_eot_threshold={args.eager}" if args.eager else "no eager threshold"
    print(
        f"{len(spoken)} turn{'s' if len(spoken) != 1 else ''} of people's speech, {args.gap:g} s apart "
        f"({seconds:.0f} s at real time), "
        f"16 kHz linear16, one dg-server on the {args.provider} engine taking both streams at once"
    )
    print(f"Flux: eot_threshold={args.eot}, {eager_name}; v1: utterance_end_ms=1000, engine endpointing")
    print()
    print(f"{'from the end of the voice to':<44} {'p50':>7} {'p95':>7} {'max':>7} {'missing':>8}")
    if args.eager:
        print(row("Flux EagerEndOfTurn", eager, len(spoken)))
    print(row("Flux EndOfTurn", ends, len(spoken)))
    print(row("v1 first speech_final result", speech_final, len(spoken)))
    print(row("v1 UtteranceEnd", utterance_end, len(spoken)))
    print()
    print(
        f"Flux: EndOfTurn while the person spoke: {early}; TurnResumed: {resumed}; "
        f"EndOfTurn transcripts' word error rate {errors / max(1, words):.1%} ({errors}/{words} words)"
    )


def _said(message: dict[str, object]) -> bool:
    channel = message.get("channel")
    if not isinstance(channel, dict):
        return False
    alternatives = channel.get("alternatives")
    best = alternatives[0] if isinstance(alternatives, list) and alternatives else None
    return isinstance(best, dict) and bool(best.get("transcript"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", type=float, default=2.0, help="silence between turns, s [2]")
    parser.add_argument("--eot", type=float, default=0.7, help="Flux eot_threshold [0.7]")
    parser.add_argument("--eager", type=float, default=0.5, help="Flux eager_eot_threshold, 0 for none [0.5]")
    parser.add_argument("--turns", type=int, help="only the first N clips (the phrases come first) [all]")
    parser.add_argument(
        "--provider", default="local", help="dg-server's engine: local, or mock for a smoke run"
    )
    asyncio.run(main(parser.parse_args()))
