"""Two tracks of one call (Twilio's inbound and outbound) into one two-channel stream.

Each track arrives as its own run of 20 ms messages with a timestamp from the start of the
stream. The interleaver keeps, per channel, the samples not yet sent, aligned by position:
a track's gap of at least `min_gap_ms` (by its timestamps) is filled with silence, and when one
track runs more than `max_lag_ms` ahead of the other, the lagging one is padded with silence
so the leader is never held longer than that. Late audio of the lagging track is kept, not
dropped: it follows the padding (shifted by at most `max_lag_ms`). Every buffer is bounded by
`max_lag_ms` plus one message.

Pure: no clock, no I/O; `push` returns the interleaved bytes that became ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.audio import AudioFormat, Encoding

_SILENCE: dict[Encoding, bytes] = {
    Encoding.MULAW: b"\xff",
    Encoding.ALAW: b"\xd5",
    Encoding.LINEAR16: b"\x00\x00",
}


@dataclass(slots=True)
class InterleaveStats:
    silence_filled_samples: int = 0  # per channel, summed
    late_samples: int = 0  # audio that arrived for a position already sent (kept, shifted)


@dataclass(slots=True)
class TrackInterleaver:
    track_fmt: AudioFormat  # the format of ONE track (channels == 1)
    max_lag_ms: int = 100
    min_gap_ms: int = 20
    max_fill_ms: int = 2000
    stats: InterleaveStats = field(default_factory=InterleaveStats)
    _pending: tuple[bytearray, bytearray] = field(default_factory=lambda: (bytearray(), bytearray()))
    _sent: int = 0  # samples per channel already handed out

    def push(self, channel: int, data: bytes, timestamp_ms: int | None = None) -> bytes:
        """Take one message of one track; return interleaved audio now ready (maybe empty)."""
        if channel not in (0, 1):
            raise ValueError(f"channel must be 0 or 1, not {channel}")
        width = self.track_fmt.bytes_per_sample
        if len(data) % width:
            raise ValueError(f"{len(data)} bytes is not whole samples")
        if timestamp_ms is not None:
            self._fill_gap(channel, timestamp_ms)
        self._pending[channel].extend(data)
        lead = max(self._end(0), self._end(1)) - self._sent
        limit = self._samples(self.max_lag_ms)
        if lead > limit:
            target = self._sent + lead - limit
            for c in (0, 1):
                self._pad(c, target - self._end(c))
        return self._take(min(self._end(0), self._end(1)) - self._sent)

    def flush(self) -> bytes:
        """Everything pending, the shorter track padded with silence (at stop or a drop)."""
        end = max(self._end(0), self._end(1))
        for c in (0, 1):
            self._pad(c, end - self._end(c))
        return self._take(end - self._sent)

    @property
    def pending_ms(self) -> float:
        """How much audio of the leading track waits for the other."""
        lead = max(self._end(0), self._end(1)) - self._sent
        return lead * 1000 / self.track_fmt.sample_rate

    # --- internals -------------------------------------------------------------------------

    def _samples(self, ms: int) -> int:
        return self.track_fmt.sample_rate * ms // 1000

    def _end(self, channel: int) -> int:
        return self._sent + len(self._pending[channel]) // self.track_fmt.bytes_per_sample

    def _fill_gap(self, channel: int, timestamp_ms: int) -> None:
        position = timestamp_ms * self.track_fmt.sample_rate // 1000
        gap = position - self._end(channel)
        if gap >= self._samples(self.min_gap_ms):
            self._pad(channel, min(gap, self._samples(self.max_fill_ms)))
        elif gap < -self._samples(self.min_gap_ms):
            self.stats.late_samples += min(-gap, self._samples(self.max_fill_ms))

    def _pad(self, channel: int, samples: int) -> None:
        if samples > 0:
            self._pending[channel].extend(_SILENCE[self.track_fmt.encoding] * samples)
            self.stats.silence_filled_samples += samples

    def _take(self, samples: int) -> bytes:
        if samples <= 0:
            return b""
        width = self.track_fmt.bytes_per_sample
        n = samples * width
        left, right = self._pending
        out = bytearray(2 * n)
        if width == 1:
            out[0::2] = left[:n]
            out[1::2] = right[:n]
        else:
            out[0::4], out[1::4] = left[0:n:2], left[1:n:2]
            out[2::4], out[3::4] = right[0:n:2], right[1:n:2]
        del left[:n]
        del right[:n]
        self._sent += samples
        return bytes(out)
