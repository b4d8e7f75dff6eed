"""Benchmark: how soon after a person stops speaking `asr-worker dg-server` says so, at each
`endpointing` a Deepgram client may ask for.

    python -m bench.dg_endpointing
    python -m bench.dg_endpointing --endpointing 10,300,false --utterance-end-ms 1000
    python -m bench.dg_endpointing --endpointing 300 --sets phrases --provider mock  # the harness alone

One `asr-worker dg-server` on the local engine, started as a user starts it; for each
`endpointing` value, the official `deepgram-sdk` client plays recordings of people
(`tests/support/human_speech.py`: the sets with one clip per utterance) into it, all at once,
20 ms at a time at 1x, with 2.5 s of silence after every utterance (so that an utterance's end
can show before the next begins), asking `interim_results=true`, `utterance_end_ms` and that
`endpointing`. Per utterance:

* speech_final: from the client sending the utterance's last sound to receiving the first
  final with `speech_final: true` that reaches it (under a short endpointing an utterance may
  get more than one, at its pauses; the one at its end counts);
* UtteranceEnd: from the same moment to receiving the `UtteranceEnd` whose `last_word_end`
  is that utterance's (it comes `utterance_end_ms` of audio after the last word, at the
  soonest);

and over the run the word error rate of the finals (shorter endpointing cuts utterances at
the gaps between words, and the engine decodes the pieces apart), and finals per utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field

import numpy as np
from tests.support.human_speech import Recording, recordings, word_errors
from tests.support.speech import CallAudio, Spoken

from asr_worker.core.audio import Encoding
from asr_worker.engine.vad import MIN_ENDPOINTING_MS

from .local import table
from .local_calls import CALL_TIMEOUT_S, CallRun, play, running

SETS = ("cards", "librivox", "phrases", "channels", "jfk")  # one clip per utterance
PAUSE_S = 2.5  # silence after each utterance
DEFAULT_ENDPOINTING = "10,100,300,500,1000,false"


@dataclass
class Heard:
    started_at: float = 0.0
    finals: list[tuple[float, float, bool, str]] = field(
        default_factory=list
    )  # (arrived, end, speech_final, text)
    utterance_ends: list[tuple[float, float]] = field(default_factory=list)  # (arrived, last_word_end)
    ended: bool = False

    def speech_final(self, spoken: Spoken) -> float | None:
        at = next((a for a, end, sf, text in self.finals if sf and text and end >= spoken.end_s - 0.05), None)
        return None if at is None else at - (self.started_at + spoken.end_s)

    def utterance_end(self, spoken: Spoken, next_start_s: float) -> float | None:
        at = next(
            (a for a, last in self.utterance_ends if spoken.end_s - 0.5 <= last < next_start_s),
            None,
        )
        return None if at is None else at - (self.started_at + spoken.end_s)


def paused(rec: Recording) -> CallAudio:
    """The recording at 8 kHz mu-law with PAUSE_S more silence after each utterance (put in the
    silence that already follows it), its utterances' times moved to match."""
    call = rec.call(8000, Encoding.MULAW)
    fmt, data = call.fmt, call.data
    silence = b"\xff" * fmt.bytes_for(PAUSE_S)  # mu-law's zero
    pieces, spoken, at, shift = [], [], 0, 0.0
    for s in call.spoken:
        cut = min(len(data), fmt.bytes_for(s.end_s + 0.25))
        pieces += [data[at:cut], silence]
        spoken.append(Spoken(s.text, s.start_s + shift, s.end_s + shift))
        at, shift = cut, shift + PAUSE_S
    pieces.append(data[at:])
    return CallAudio(fmt, b"".join(pieces), tuple(spoken))


async def sdk_call(port: int, call: CallAudio, endpointing: str, utterance_end_ms: int) -> Heard:
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment
    from deepgram.listen.v1 import ListenV1Metadata, ListenV1Results, ListenV1UtteranceEnd

    heard = Heard()
    here = f"127.0.0.1:{port}"
    client = AsyncDeepgramClient(
        api_key="bench-key",
        environment=DeepgramClientEnvironment(
            base=f"http://{here}",
            production=f"ws://{here}",
            agent=f"ws://{here}",
            agent_rest=f"http://{here}",
        ),
    )

    def on_message(message: object) -> None:
        now = asyncio.get_running_loop().time()
        if isinstance(message, ListenV1Results) and message.is_final:
            text = message.channel.alternatives[0].transcript
            heard.finals.append((now, message.start + message.duration, bool(message.speech_final), text))
        elif isinstance(message, ListenV1UtteranceEnd):
            heard.utterance_ends.append((now, message.last_word_end))
        elif isinstance(message, ListenV1Metadata):
            heard.ended = True

    async with client.listen.v1.connect(
        model="nova-3",
        encoding=str(call.fmt.encoding),
        sample_rate=call.fmt.sample_rate,
        interim_results="true",
        punctuate="true",
        utterance_end_ms=utterance_end_ms,
        endpointing=endpointing,
    ) as connection:
        connection.on(EventType.MESSAGE, on_message)
        async with asyncio.timeout(CALL_TIMEOUT_S), asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            run = CallRun()  # play() notes when the first frame went
            await play(run, call, lambda _n, frame: connection.send_media(frame))
            heard.started_at = run.started_at
            await connection.send_close_stream()
            await listening
    return heard


def _ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "n/a"


async def measure(values: list[str], utterance_end_ms: int, sets: list[str], provider: str) -> str:
    recs = [r for r in recordings() if r.name in sets]
    calls = [paused(r) for r in recs]
    rows = []
    async with running("dg-server", provider) as port:
        for value in values:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(sdk_call(port, call, value, utterance_end_ms)) for call in calls]
            heard = [t.result() for t in tasks]
            finals_s, ends_s, missing_final, missing_end, finals = [], [], 0, 0, 0
            pairs = []
            for rec, call, h in zip(recs, calls, heard, strict=True):
                for i, spoken in enumerate(call.spoken):
                    next_start = call.spoken[i + 1].start_s if i + 1 < len(call.spoken) else float("inf")
                    latency = h.speech_final(spoken)
                    if latency is None:
                        missing_final += 1
                    else:
                        finals_s.append(latency)
                    ue = h.utterance_end(spoken, next_start)
                    if ue is None:
                        missing_end += 1
                    else:
                        ends_s.append(ue)
                said = [text for _a, _e, _sf, text in h.finals if text]
                finals += len(said)
                pairs.append(word_errors(rec.text, " ".join(said)))
            utterances = sum(len(c.spoken) for c in calls)
            effective = "off" if value == "false" else str(max(MIN_ENDPOINTING_MS, int(value)))
            errors, words = sum(e for e, _n in pairs), sum(n for _e, n in pairs)
            rows.append(
                [
                    value,
                    effective,
                    str(utterances),
                    _ms(finals_s, 50),
                    _ms(finals_s, 95),
                    str(missing_final),
                    _ms(ends_s, 50),
                    _ms(ends_s, 95),
                    str(missing_end),
                    f"{errors / words:.1%}" if words else "-",
                    f"{finals / utterances:.1f}",
                    f"{os.getloadavg()[0]:.1f}",
                ]
            )
    headers = [
        "endpointing",
        "engine ms",
        "utterances",
        "speech_final p50 ms",
        "p95 ms",
        "none",
        "UtteranceEnd p50 ms",
        "p95 ms",
        "none",
        "WER",
        "finals/utt",
        "load",
    ]
    return "\n".join(
        [
            f"dg-server endpointing: end of speech to speech_final and to UtteranceEnd "
            f"(utterance_end_ms={utterance_end_ms}), {len(calls)} calls of people at once, 1x, "
            f"{provider} engine",
            table(headers, rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dg_endpointing", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--endpointing",
        default=DEFAULT_ENDPOINTING,
        help=f"comma-separated values (default {DEFAULT_ENDPOINTING})",
    )
    parser.add_argument("--utterance-end-ms", type=int, default=1000, help="utterance_end_ms (1000-5000)")
    parser.add_argument(
        "--sets", default=",".join(SETS), help=f"recordings of people, by name (default {','.join(SETS)})"
    )
    parser.add_argument(
        "--provider", default="local", choices=("local", "mock"), help="dg-server's engine (mock: harness)"
    )
    args = parser.parse_args()
    sets = [name.strip() for name in args.sets.split(",") if name.strip()]
    unknown = sorted(set(sets) - set(SETS))
    if unknown or not sets:
        parser.error(f"--sets takes names from {','.join(SETS)}, not {','.join(unknown) or 'none'}")
    values = [v.strip().lower() for v in args.endpointing.split(",") if v.strip()]
    for value in values:
        if value != "false" and not value.isdigit():
            parser.error(f"--endpointing values are milliseconds or false, not {value!r}")
    print(asyncio.run(measure(values, args.utterance_end_ms, sets, args.provider)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
