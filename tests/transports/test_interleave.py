"""Two telephony tracks into one two-channel stream: aligned, gaps filled, lag bounded, nothing lost."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.transports.interleave import TrackInterleaver

MULAW = AudioFormat(Encoding.MULAW, 8000, 1)
PCM16K = AudioFormat(Encoding.LINEAR16, 16000, 1)


def chunk(value: int, ms: int = 20, fmt: AudioFormat = MULAW) -> bytes:
    return bytes([value]) * (fmt.sample_rate * ms // 1000 * fmt.bytes_per_sample)


def split(stereo: bytes) -> tuple[bytes, bytes]:
    return stereo[0::2], stereo[1::2]


def test_aligned_tracks_interleave_sample_by_sample() -> None:
    il = TrackInterleaver(MULAW)
    assert il.push(0, chunk(0x10), 0) == b""  # waits for the other track
    out = il.push(1, chunk(0x20), 0)
    assert out == bytes([0x10, 0x20]) * 160
    out = il.push(1, chunk(0x21), 20) + il.push(0, chunk(0x11), 20)
    assert split(out) == (chunk(0x11), chunk(0x21))
    assert il.stats.silence_filled_samples == 0 and il.pending_ms == 0


def test_a_gap_in_one_track_is_filled_with_silence_by_timestamp() -> None:
    il = TrackInterleaver(MULAW, max_lag_ms=1000)
    out = il.push(0, chunk(0x10), 0) + il.push(1, chunk(0x20), 0)
    # the inbound track skips 40 ms (two chunks lost upstream)
    out += il.push(0, chunk(0x11), 60)
    for t in (20, 40, 60):
        out += il.push(1, chunk(0x21), t)
    left, right = split(out)
    assert left == chunk(0x10) + chunk(0xFF, 40) + chunk(0x11)  # mu-law silence is 0xFF
    assert right == chunk(0x20) + chunk(0x21) * 3
    assert il.stats.silence_filled_samples == 320


def test_a_track_that_starts_late_is_aligned_to_its_timestamp() -> None:
    il = TrackInterleaver(MULAW, max_lag_ms=1000)
    out = b"".join(il.push(0, chunk(0x10), t) for t in (0, 20, 40))
    out += il.push(1, chunk(0x20), 40)  # outbound's first chunk belongs at 40 ms
    left, right = split(out)
    assert left == chunk(0x10) * 3
    assert right == chunk(0xFF, 40) + chunk(0x20)


def test_a_lagging_track_never_holds_the_other_longer_than_max_lag() -> None:
    il = TrackInterleaver(MULAW, max_lag_ms=100)
    released = 0
    for i in range(50):  # 1 s of inbound, outbound silent
        released += len(il.push(0, chunk(0x10), i * 20)) // 2
        held_ms = (i + 1) * 20 - released / 8
        assert held_ms <= 100
    assert il.pending_ms <= 100
    # when the outbound track arrives late, its audio is kept (after the padding), not lost
    out = il.push(1, chunk(0x20), 0)
    out += il.flush()
    assert chunk(0x20) in split(out)[1]


def test_flush_pads_the_shorter_track_and_empties_everything() -> None:
    il = TrackInterleaver(MULAW)
    out = il.push(0, chunk(0x10, 60), 0) + il.push(1, chunk(0x20), 0)
    left, right = split(out + il.flush())
    assert left == chunk(0x10, 60) and right == chunk(0x20) + chunk(0xFF, 40)
    assert il.flush() == b"" and il.pending_ms == 0


def test_linear16_tracks_interleave_whole_samples() -> None:
    il = TrackInterleaver(PCM16K)
    a = np.arange(320, dtype="<i2").tobytes()
    b = (-np.arange(320, dtype="<i2")).tobytes()
    out = np.frombuffer(il.push(0, a, 0) + il.push(1, b, 0), dtype="<i2")
    assert out[0::2].tolist() == list(range(320)) and out[1::2].tolist() == [-x for x in range(320)]
    silence = TrackInterleaver(PCM16K)
    silence.push(0, a, 0)
    assert set(np.frombuffer(silence.flush(), dtype="<i2")[1::2].tolist()) == {0}


def test_a_hostile_timestamp_cannot_make_a_huge_buffer() -> None:
    il = TrackInterleaver(MULAW, max_lag_ms=100, max_fill_ms=2000)
    il.push(0, chunk(0x10), 0)
    out = il.push(0, chunk(0x11), 10**9)  # a timestamp 11 days ahead
    assert len(out) + il.pending_ms * 8 * 2 <= 2 * 8 * (2000 + 40 + 100)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(1, 40), st.integers(0, 5000) | st.none()),
        max_size=60,
    )
)
def test_no_sample_is_lost_and_the_buffer_stays_bounded(pushes: list[tuple[int, int, int | None]]) -> None:
    il = TrackInterleaver(MULAW, max_lag_ms=100, max_fill_ms=500)
    sent = [bytearray(), bytearray()]
    out = bytearray()
    for channel, ms, timestamp in pushes:
        data = bytes([channel + 1]) * (8 * ms)
        sent[channel] += data
        out += il.push(channel, data, timestamp)
        assert il.pending_ms <= 100 + 40 + 1e-9
    out += il.flush()
    for channel in (0, 1):
        track = bytes(out[channel::2]).replace(b"\xff", b"")
        assert track == bytes(sent[channel])  # every sample, in order, only silence added
