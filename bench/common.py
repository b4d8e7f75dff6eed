"""What the benchmark's processes share: the stamped audio frames and /proc readings.

Every 20 ms frame of a call carries a stamp in its first 8 bytes (a magic number, the call's
index, the frame's index), the rest being loud noise the mock engine hears as words. The
worker passes linear16 audio byte for byte, so the sink finds each stamp at every 320-byte
boundary of a connection's audio, however the worker coalesced the frames, and the forward
latency of a frame is its arrival time at the sink minus its send time at the driver: both
read CLOCK_MONOTONIC, which is one clock for every process on one machine.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 160 samples of 16-bit linear PCM
STAMP: Final = struct.Struct("<HHI")
MAGIC: Final = 0x5A17
QUERY: Final = "encoding=linear16&sample_rate=8000&channels=1"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


def frame_pool(count: int = 64, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(-12000, 12000, size=FRAME_BYTES // 2, dtype=np.int16).astype("<i2").tobytes()
        for _ in range(count)
    ]


def stamped(template: bytes, call: int, index: int) -> bytes:
    frame = bytearray(template)
    STAMP.pack_into(frame, 0, MAGIC, call, index)
    return bytes(frame)


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_s: float  # user + system
    rss_bytes: int


def proc_sample(pid: int, at: float) -> ProcSample:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE_BYTES
    return ProcSample(at, cpu, rss)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK
