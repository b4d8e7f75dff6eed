"""The benchmark's Deepgram: `asr-worker dg-server`'s server over the mock engine, in a process
of its own, noting when each stamped frame arrives and the gaps between a connection's audio
messages. On SIGTERM it writes what it saw to `--out` (.npz) and exits. With `--faults` (the
dg-server's `DG_SERVER_FAULTS` syntax) it misbehaves as told, and also writes how many faults of
each kind it applied, its handshakes and its connections. SIGUSR1 begins an outage (every
live connection dropped, every handshake refused 503), SIGUSR2 ends it.

A frame counts when the server hands it to its engine: audio a faulty connection took but did
not transcribe (the message on which it dropped, anything after it stalled) is not counted.

    python -m bench.dg_sink --port 3002 --out /tmp/sink.npz

With `--digits` its engine hears every word as a digit word ("four", "one"...): every result a
card number being read out, the worst case for a worker that redacts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from array import array

import numpy as np

from asr_worker.dgserver import ConnectionRecord, DeepgramServer, Faults
from asr_worker.providers.mock import MockOptions, MockProvider

from .common import FRAME_BYTES, STAMP_BYTES, WORD_MS, read_stamp


class Arrivals:
    def __init__(self) -> None:
        self.calls = array("i")
        self.frames = array("i")
        self.times = array("d")
        self.last_message: dict[int, float] = {}
        self.max_gap: dict[int, float] = {}
        self.messages = 0

    def __call__(self, record: ConnectionRecord, data: bytes) -> None:
        now = time.monotonic()
        self.messages += 1
        key = record.index
        last = self.last_message.get(key)
        if last is not None:
            gap = now - last
            if gap > self.max_gap.get(key, 0.0):
                self.max_gap[key] = gap
        self.last_message[key] = now
        offset = record.bytes_received - len(data)
        first = (-offset) % FRAME_BYTES
        for pos in range(first, len(data) - STAMP_BYTES + 1, FRAME_BYTES):
            stamp = read_stamp(data, pos)
            if stamp is not None:
                self.calls.append(stamp[0])
                self.frames.append(stamp[1])
                self.times.append(now)

    def save(self, path: str, server: DeepgramServer) -> None:
        counts = {
            "injected": dict(server.injected),
            "accepted": server.accepted,
            "handshakes": server.handshakes_total,
        }
        np.savez(
            path,
            server=np.array([json.dumps(counts)]),
            calls=np.frombuffer(self.calls, dtype=np.int32),
            frames=np.frombuffer(self.frames, dtype=np.int32),
            times=np.frombuffer(self.times, dtype=np.float64),
            max_gaps=np.array(list(self.max_gap.values()), dtype=np.float64),
            messages=np.array([self.messages]),
        )


def engine_options(digits: bool = False) -> MockOptions:
    """Results at about Deepgram's own pace: an interim every 0.5 s of speech, a final every 2 s
    (the mock's default, a result every 0.2 s, would make every client parse 2.5x more)."""
    return MockOptions(word_ms=WORD_MS, words_per_final=4, digits=digits)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--faults", default="", help="dg-server faults, e.g. fault_percent=20,...")
    parser.add_argument("--digits", action="store_true", help="every word a digit word")
    args = parser.parse_args()
    arrivals = Arrivals()
    provider = MockProvider(engine_options(args.digits))
    server = DeepgramServer(
        provider,
        record_audio=False,
        max_records=10,
        audio_hook=arrivals,
        faults=Faults.parse(args.faults),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, server.begin_outage)  # the drill's outage phase
    loop.add_signal_handler(signal.SIGUSR2, server.end_outage)
    async with server.running("127.0.0.1", args.port):
        print("ready", flush=True)
        await stop.wait()
    arrivals.save(args.out, server)


if __name__ == "__main__":
    import uvloop  # the sink is harness: cheap, so the process under test has its core

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
