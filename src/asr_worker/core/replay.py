"""The replay buffer: a call's audio from the first byte no final result covers to the last
byte received, so that a new provider stream (after a drop, a failed open, a move to the
fallback) starts by replaying what the last one heard but never finalized: no audio is lost
to a reconnect.

Everything is in call byte offsets (byte 0 is the call's first, or a resumed call's `Resume`
offset), four of them in order, `base <= covered <= sent <= received`:

* `base`: the first byte held; nothing before it is kept;
* `covered`: final results cover everything before it (or it was shed, and can no longer be);
* `sent`: everything before it went out on the current stream;
* `received`: the end of the audio received so far.

`stream_base` is the current stream's first byte: the provider's times count from there.

The buffer holds at most `capacity_bytes` (`max_retained_s`): while no provider takes audio
it sheds its oldest whole frames rather than grow without bound, and says how many of them
had never been sent, which the call has then lost.

Pure and clockless, like the session core that owns one per call (`SessionCore`). The core
reads the offsets as attributes, because it does so for every frame; only the methods here
move them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ReplayBuffer:
    capacity_bytes: int  # held at most; older audio is shed
    frame_bytes: int  # one sample on every channel: shedding drops whole frames
    base: int = 0
    covered: int = 0
    sent: int = 0
    received: int = 0
    stream_base: int = 0
    _held: bytearray = field(default_factory=bytearray)  # _held[0] is call offset `base`

    def start_at(self, offset: int) -> None:
        """The call's audio starts at `offset` (a call another worker began): every offset
        begins there, with nothing held before it."""
        self.base = self.covered = self.sent = self.received = self.stream_base = offset

    def append(self, data: bytes) -> int:
        """Hold `data`, the audio that follows everything received; the new `received`."""
        self._held += data
        received = self.received + len(data)
        self.received = received
        return received

    def read(self, start: int, stop: int) -> bytes:
        """The held audio from call offset `start` to `stop`."""
        view = memoryview(self._held)
        try:
            return bytes(view[start - self.base : stop - self.base])
        finally:
            view.release()

    def sent_all(self) -> None:
        """Everything received went out on the current stream."""
        self.sent = self.received

    def rewind(self) -> int:
        """A new stream starts at the first byte no final covered, so the audio the last
        stream was sent past that goes out again; returns its size in bytes (the replay)."""
        replayed_bytes = max(0, self.sent - self.covered)
        self.stream_base = self.sent = self.covered
        return replayed_bytes

    def cover(self, offset: int) -> bool:
        """Final results cover the audio before call offset `offset` (never more than was
        sent): it is freed. True if that covered more than before."""
        covered = min(self.sent, max(self.covered, offset))
        if covered <= self.covered:
            return False
        self.covered = covered
        drop_bytes = covered - self.base
        if drop_bytes > 0:
            del self._held[:drop_bytes]
            self.base = covered
        return True

    def shed_oldest(self) -> int:
        """Past `capacity_bytes`, drop the oldest whole frames; they can no longer be replayed,
        so they count as covered. Returns how many of the bytes dropped had never been sent:
        those are lost to the call, and `sent` moves past them (0 if all had been sent, or if
        nothing was over)."""
        excess_bytes = self.received - self.base - self.capacity_bytes
        excess_bytes -= excess_bytes % self.frame_bytes
        if excess_bytes <= 0:
            return 0
        new_base = self.base + excess_bytes
        del self._held[:excess_bytes]
        self.base = new_base
        self.covered = max(self.covered, new_base)
        if new_base <= self.sent:
            return 0
        lost_bytes = new_base - self.sent
        self.sent = new_base
        return lost_bytes

    def clear(self) -> None:
        """The call is over: free the audio (the offsets stay, for the views)."""
        self._held.clear()

    @property
    def held_bytes(self) -> int:
        return len(self._held)

    @property
    def unsent_bytes(self) -> int:
        return self.received - self.sent

    @property
    def replayable_bytes(self) -> int:
        """Sent on the current stream but not covered by a final: what a new stream replays."""
        return self.sent - self.covered
