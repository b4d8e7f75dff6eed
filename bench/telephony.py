"""What a telephony message costs the worker's event loop: parsing, interleaving, SSE framing.

    .venv/bin/python -m bench.telephony [--messages N]

Prints one row per step with the time per message and how many calls that step alone could
carry on one core (a two-track Twilio call sends 100 messages a second, an Exotel call 10).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable

import numpy as np

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.events import Transcript, TranscriptWord
from asr_worker.transports import exotel_messages, twilio_messages
from asr_worker.transports.interleave import TrackInterleaver
from asr_worker.transports.sse import format_event


def _per_message(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    n = parser.parse_args().messages
    rng = np.random.default_rng(1)
    mulaw = rng.integers(0, 256, 160, dtype=np.uint8).tobytes()
    pcm = rng.integers(-8000, 8000, 800, dtype=np.int16).astype("<i2").tobytes()
    twilio_text = json.dumps(
        {
            "event": "media",
            "sequenceNumber": "3",
            "media": {
                "track": "inbound",
                "chunk": "1",
                "timestamp": "20",
                "payload": base64.b64encode(mulaw).decode(),
            },
            "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
        }
    )
    exotel_text = json.dumps(
        {
            "event": "media",
            "sequence_number": "3",
            "stream_sid": "a8e0c7e4b5f5d3a1e9c2b6d4f7a0c3e5",
            "media": {"chunk": "2", "timestamp": "200", "payload": base64.b64encode(pcm).decode()},
        }
    )
    interleaver = TrackInterleaver(AudioFormat(Encoding.MULAW, 8000, 1))
    event = Transcript(
        "call-1",
        "acme",
        7,
        0,
        True,
        True,
        False,
        "how can I help you today",
        0.9,
        1.0,
        2.2,
        tuple(TranscriptWord(w, 1.0, 1.2, 0.9) for w in ["how", "can", "I", "help", "you", "today"]),
        "deepgram",
        180,
        1764300000000,
    )
    rows = [
        (
            "parse Twilio media (20 ms mu-law)",
            _per_message(lambda _: twilio_messages.parse(twilio_text), n),
            100,
        ),
        (
            "parse Exotel media (100 ms PCM)",
            _per_message(lambda _: exotel_messages.parse(exotel_text), n),
            10,
        ),
        (
            "interleave one Twilio track message",
            _per_message(lambda i: interleaver.push(i % 2, mulaw, i // 2 * 20), n),
            100,
        ),
        ("format one SSE transcript event", _per_message(lambda _: format_event(event), n), 0),
    ]
    print(f"{'step':40} {'us/message':>11} {'calls/core':>11}")
    for name, seconds, per_call_s in rows:
        calls = f"{1 / (seconds * per_call_s):,.0f}" if per_call_s else "-"
        print(f"{name:40} {seconds * 1e6:11.2f} {calls:>11}")


if __name__ == "__main__":
    main()
