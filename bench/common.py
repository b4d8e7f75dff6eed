"""What the benchmark's processes share: the stamped audio frames and /proc readings.

Every 20 ms frame of a call carries a stamp in its first 16 bytes (a magic number, the call's
index, the frame's index), the rest being loud noise the mock engine hears as words, or
silence. Each byte of the stamp is the low byte of one 16-bit sample whose high byte is 0, so
the stamp is quiet (below the mock engine's silence threshold): a silent frame stays silent. The
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
STAMP: Final = struct.Struct("<HHI")  # magic, call, frame index: one byte per sample
STAMP_BYTES: Final = 2 * STAMP.size
MAGIC: Final = 0x5A17
_QUIET_HIGH_BYTES: Final = bytes(STAMP.size)
QUERY: Final = "encoding=linear16&sample_rate=8000&channels=1"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


def frame_pool(count: int = 64, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(-12000, 12000, size=FRAME_BYTES // 2, dtype=np.int16).astype("<i2").tobytes()
        for _ in range(count)
    ]


WORD_MS: Final = 500  # the sink's engine hears one word (or a pause) per 500 ms window
WINDOW_FRAMES: Final = WORD_MS // FRAME_MS
SILENT_FRAME: Final = bytes(FRAME_BYTES)


def speech_plan(call: int, frames: int) -> list[bool]:
    """Which 500 ms windows of a call are speech: utterances of 1-6 words, then 0.5-2 s pauses,
    drawn from the call's index, so the whole call's audio is a function of (call, frames)."""
    rng = np.random.default_rng(1_000_003 + call)
    windows = -(-frames // WINDOW_FRAMES)
    plan: list[bool] = []
    while len(plan) < windows:
        plan += [True] * int(rng.integers(1, 7)) + [False] * int(rng.integers(1, 5))
    return plan[:windows]


def call_frame(pool: list[bytes], plan: list[bool], call: int, index: int) -> bytes:
    """Frame `index` of call `call`: stamped noise in a speech window, stamped silence in a pause."""
    template = pool[(index + call) % len(pool)] if plan[index // WINDOW_FRAMES] else SILENT_FRAME
    return stamped(template, call, index)


def call_audio(pool: list[bytes], call: int, frames: int) -> bytes:
    """The first `frames` frames of a call, exactly as the driver sends them."""
    plan = speech_plan(call, frames)
    return b"".join(call_frame(pool, plan, call, n) for n in range(frames))


def stamped(template: bytes, call: int, index: int) -> bytes:
    frame = bytearray(template)
    frame[0:STAMP_BYTES:2] = STAMP.pack(MAGIC, call & 0xFFFF, index)
    frame[1:STAMP_BYTES:2] = _QUIET_HIGH_BYTES
    return bytes(frame)


def read_stamp(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """The (call, frame index) stamped at `pos`, or None if there is no stamp there."""
    if data[pos + 1 : pos + STAMP_BYTES : 2] != _QUIET_HIGH_BYTES:
        return None
    magic, call, index = STAMP.unpack(bytes(data[pos : pos + STAMP_BYTES : 2]))
    return (call, index) if magic == MAGIC else None


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_s: float  # user + system
    rss_bytes: int
    user_s: float = 0.0  # user only: the process's own work, without the kernel's on its behalf


def proc_sample(pid: int, at: float) -> ProcSample:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime (14, 15)
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE_BYTES
    return ProcSample(at, user + system, rss, user)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK
