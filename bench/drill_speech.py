"""Speech for the fault drill's calls, when the local engine is the fallback.

The drill's usual audio is loud noise the mock engine hears as words: a real engine hears no
words in it, so a call moved to the local engine could not show whether it lost any. With
`bench.fault_drill --fallback local` each call is speech instead: utterances of people and of
a natural synthetic voice (the capacity benchmark's, `bench/conversations.py`), 0.5-2 s apart,
drawn from the call's index, each frame stamped as usual (`common.stamped`: the sink still
knows every frame, and the mock engine behind it still hears deterministic words in it, so the
primary's part of a call stays exactly checkable). What each utterance says, and when, is
known, so the words the local engine gives a moved call are scored against it.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np

from .common import FRAME_BYTES, SAMPLE_RATE, stamped


@dataclass(frozen=True)
class Said:
    text: str
    start_s: float  # its voice, in the call
    end_s: float


@functools.cache
def _clips() -> list[tuple[str, bytes, float, float]]:
    """(text, 8 kHz linear16, voice start s, voice end s) of every utterance the calls draw from."""
    from .conversations import _voice, pools

    people, agent, caller = pools()
    out = []
    for text, audio in people + agent + caller:
        first, last = _voice(audio)
        pcm = np.clip(audio * 32767, -32768, 32767).astype("<i2").tobytes()
        out.append((text, pcm, first / SAMPLE_RATE, last / SAMPLE_RATE))
    return out


@functools.lru_cache(maxsize=256)  # the calls live at once, and some: a call's audio is ~1 MB
def script(call: int, frames: int) -> tuple[bytes, tuple[Said, ...]]:
    """A call's audio (unstamped, exactly `frames` frames) and what it says when."""
    rng = random.Random(2_000_003 + call)
    clips = _clips()
    total = frames * FRAME_BYTES
    parts: list[bytes] = []
    said: list[Said] = []
    at = 0
    while True:  # whole utterances only, each 0.5-2 s after the last: each can be scored
        pause = 2 * round(rng.uniform(0.5, 2.0) * SAMPLE_RATE)
        text, pcm, voice_start, voice_end = rng.choice(clips)
        if at + pause + len(pcm) > total:
            break
        t = (at + pause) / (2 * SAMPLE_RATE)
        said.append(Said(text, t + voice_start, t + voice_end))
        parts += [bytes(pause), pcm]
        at += pause + len(pcm)
    return b"".join(parts).ljust(total, b"\x00"), tuple(said)


def frame(call: int, frames: int, index: int) -> bytes:
    """Frame `index` of a speech call, stamped, as the driver sends it."""
    audio, _said = script(call, frames)
    return stamped(audio[index * FRAME_BYTES : (index + 1) * FRAME_BYTES], call, index)


def call_audio(call: int, frames: int, taken: int) -> bytes:
    """The first `taken` frames of a speech call, exactly as the driver sent them."""
    return b"".join(frame(call, frames, n) for n in range(taken))
