"""A source's part in a call: the one handle every source uses to feed the call it joined.

A call may have several sources at once (two ingest sockets, a media stream and a socket, the
bus's reader of its audio stream), and one session serves them all. Each source joins the call
(`SessionManager.join`, which starts the session if there is none, or refuses with a stable
code), feeds it audio, key presses and bad-input errors, may end it, and leaves when it goes
away. Leaving is what lets a call outlive a dropped socket: the session counts the sources
attached to it and, once the last one has left, waits its grace period for one to come back
before it finalizes. So every source must leave exactly once, whatever path it goes away by;
`leave` may be called on every such path.

All of it is synchronous: no await can come between a check and what it decides.
"""

from __future__ import annotations

from collections.abc import Callable

from .runner import SessionRunner


class CallSource:
    """One source attached to one call's session, until it leaves."""

    __slots__ = ("_source_id", "feed", "runner")

    feed: Callable[[bytes], bool]
    """Audio in the call's format; False if the session did not take it (the call is ending,
    or the message is not whole samples: the session has told the call's watchers why).
    It is the runner's own method: at 25,000 frames a second a call in between would cost."""

    def __init__(self, runner: SessionRunner) -> None:
        self.runner = runner
        self.feed = runner.feed
        self._source_id: str | None = runner.attach()

    @property
    def interaction_id(self) -> str:
        return self.runner.interaction_id

    @property
    def attached(self) -> bool:
        """True from joining until `leave` (and again after `rejoin`)."""
        return self._source_id is not None

    def dtmf(self, digit: str, channel: int) -> None:
        """A key pressed on the phone, as an event in the call's order."""
        self.runner.dtmf(digit, channel)

    def error(self, code: str, message: str) -> None:
        """Bad input from this source (a message it cannot take, a socket that failed): an
        `error` event for everyone watching the call, which goes on."""
        self.runner.error(code, message)

    def pause(self) -> bool:
        """A PCI pause from this source (AudioHook's `paused`, the ingest socket's `pause`): the
        call's audio stops reaching the provider until `resume`. False if it already was."""
        return self.runner.pause()

    def resume(self) -> bool:
        """The pause is over: the call's audio reaches the provider again."""
        return self.runner.resume()

    def finalize(self) -> None:
        """The pending utterance's final now, marked `from_finalize` (a voice bot at the end
        of a turn); the call goes on."""
        self.runner.finalize()

    def switch_language(self, language: str | None) -> None:
        """The call is in this language from now on (AudioHook's `update`); check it with the
        provider's `language_refusal` first."""
        self.runner.switch_language(language)

    def end(self, reason: str) -> None:
        """The source says the call is over: the session finalizes (whatever other sources
        are still attached) and ends with `reason`."""
        self.runner.end(reason)

    def abandon(self, code: str, message: str) -> None:
        """End the call at once, without waiting for the provider's last results, and leave."""
        self.runner.abandon(code, message)
        self.leave()

    def leave(self) -> None:
        """This source is gone; the call goes on with its other sources, or waits its grace
        period for one. Idempotent."""
        if self._source_id is not None:
            self.runner.detach(self._source_id)
            self._source_id = None

    def rejoin(self) -> None:
        """The same source is back after leaving (the bus hears a silent producer again).
        Idempotent."""
        if self._source_id is None:
            self._source_id = self.runner.attach()
