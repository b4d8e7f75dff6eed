"""The benchmark's Deepgram: `asr-worker dg-server`'s server over the mock engine, in a process
of its own, noting when each stamped frame arrives and the gaps between a connection's audio
messages. On SIGTERM it writes what it saw to `--out` (.npz) and exits.

    python -m bench.dg_sink --port 3002 --out /tmp/sink.npz
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from array import array

import numpy as np

from asr_worker.dgserver import ConnectionRecord, DeepgramServer
from asr_worker.providers.mock import MockOptions, MockProvider

from .common import FRAME_BYTES, MAGIC, STAMP


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
        for pos in range(first, len(data) - STAMP.size + 1, FRAME_BYTES):
            magic, call, index = STAMP.unpack_from(data, pos)
            if magic == MAGIC:
                self.calls.append(call)
                self.frames.append(index)
                self.times.append(now)

    def save(self, path: str) -> None:
        np.savez(
            path,
            calls=np.frombuffer(self.calls, dtype=np.int32),
            frames=np.frombuffer(self.frames, dtype=np.int32),
            times=np.frombuffer(self.times, dtype=np.float64),
            max_gaps=np.array(list(self.max_gap.values()), dtype=np.float64),
            messages=np.array([self.messages]),
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    arrivals = Arrivals()
    # Results at about Deepgram's own pace: an interim every 0.5 s of speech, a final every 2 s
    # (the mock's default, a result every 0.2 s, would make every client parse 2.5x more).
    provider = MockProvider(MockOptions(word_ms=500, words_per_final=4))
    server = DeepgramServer(provider, record_audio=False, max_records=10, audio_hook=arrivals)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server.running("127.0.0.1", args.port):
        print("ready", flush=True)
        await stop.wait()
    arrivals.save(args.out)


if __name__ == "__main__":
    import uvloop  # the sink is harness: cheap, so the process under test has its core

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
