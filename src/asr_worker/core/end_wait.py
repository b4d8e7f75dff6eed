"""The end's wait: a call that ends waits for its provider's last final results, within a
bound, before `session_ended`.

Once `end` flushed the audio and ended the stream, the provider still owes the finals of what
it heard last; `session_ended` must come after them, or the call's last words are lost. It
must also come: a provider that never confirms cannot hold a call open. So the end waits
`wait_s` (`finalize_timeout_s`), and starts that wait over when there is reason to believe more
is coming, a new connection replacing a failed one or a final covering more audio (a busy local
engine working through its backlog), up to `FINALIZE_WAITS_MAX` waits from the end in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# A call's end waits `finalize_timeout_s` for its connection's last finals, afresh after a
# connection replaces a failed one or a final covers more (a busy local engine's backlog), up
# to this many waits in all: a fault or a provider some seconds behind costs no last words.
FINALIZE_WAITS_MAX: Final = 2


@dataclass(slots=True)
class EndWait:
    wait_s: float  # one wait (`SessionConfig.finalize_timeout_s`, ASR_FINALIZE_TIMEOUT_S)
    started_at: float = 0.0  # monotonic time the end began
    deadline: float | None = None  # monotonic time the end gives up waiting; None: not ending

    def start(self, now: float) -> None:
        """The call's end began at `now`."""
        self.started_at = now
        self.deadline = now + self.wait_s

    def again(self, now: float) -> None:
        """More may be coming: the wait starts over from `now`, within the bound."""
        latest = self.started_at + FINALIZE_WAITS_MAX * self.wait_s
        self.deadline = min(latest, max(self.deadline or now, now + self.wait_s))

    def stop(self) -> None:
        """The call ended: nothing waits any more."""
        self.deadline = None
