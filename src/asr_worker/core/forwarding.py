"""Continuous forwarding: when the audio a connected stream has not been sent goes out, and
when the stream gets a keep-alive instead.

Audio goes out in chunks, not message by message: a provider bills and a socket costs per
message, and 20 ms frames would make fifty a second per call. So received audio waits until
it makes a chunk (`chunk_bytes`, ASR_SEND_CHUNK_MS), but never longer than `max_wait_s`
(ASR_MAX_BUFFER_MS) from when the first of it arrived: the only lag the worker adds. A stream
that was sent nothing for `keepalive_s` gets a keep-alive, or the provider would close it as
idle (a call on hold, a source that stalled). What goes out at once goes in messages of at most
`message_bytes`, a size every provider takes (a replay after a reconnect can be minutes).

Pure and clockless, like the session core that owns one per call (`SessionCore`): it is told
when audio starts waiting and when it was sent, and answers what is due at a given time. Its
checks run for every frame; they are a few comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# A timer set for a deadline may wake a hair before it: deadlines are met within this.
_TOLERANCE_S: Final = 1e-9


@dataclass(slots=True)
class Forwarding:
    chunk_bytes: int  # this much waiting audio goes out at once
    max_wait_s: float  # waiting audio goes out at the latest this long after it began to wait
    keepalive_s: float  # a stream sent nothing for this long gets a keep-alive
    message_bytes: int  # audio goes out in messages of at most this
    waiting_since: float | None = None  # monotonic time the oldest unsent audio arrived
    last_sent_at: float = 0.0  # monotonic time the stream was last sent audio or a keep-alive

    def waits(self, now: float) -> bool:
        """Audio arrived at `now` and waits to be sent; True if nothing was waiting before it."""
        if self.waiting_since is None:
            self.waiting_since = now
            return True
        return False

    def send_due(self, unsent_bytes: int, now: float) -> bool:
        """The `unsent_bytes` waiting must go out now: a full chunk, or waited long enough (or
        audio the stream owes from before it connected, which has no start time)."""
        if unsent_bytes <= 0:
            return False
        waiting_since = self.waiting_since
        return (
            unsent_bytes >= self.chunk_bytes
            or waiting_since is None
            or now + _TOLERANCE_S >= waiting_since + self.max_wait_s
        )

    def keepalive_due(self, now: float) -> bool:
        """The stream has been sent nothing for `keepalive_s`: True, and its keep-alive counts
        as sent at `now`."""
        if now + _TOLERANCE_S >= self.last_sent_at + self.keepalive_s:
            self.last_sent_at = now
            return True
        return False

    def stream_opened(self, now: float) -> None:
        """A new stream opened at `now`: its keep-alive time counts from there."""
        self.last_sent_at = now

    def sent(self, now: float) -> float:
        """Everything waiting went out at `now`; returns how long the oldest of it waited."""
        waited_s = 0.0 if self.waiting_since is None else max(0.0, now - self.waiting_since)
        self.waiting_since = None
        self.last_sent_at = now
        return waited_s

    def deadline(self, unsent_bytes: int) -> float:
        """When `send_due` or `keepalive_due` next says yes, if nothing else happens first."""
        deadline = self.last_sent_at + self.keepalive_s
        if unsent_bytes > 0 and self.waiting_since is not None:
            deadline = min(deadline, self.waiting_since + self.max_wait_s)
        return deadline
