"""Where a speaker's turns start and end, from what a speech engine reports: Flux's turn-taking
decision, as a pure state machine driven by the stream's audio clock.

Flux's states (Deepgram's "Flux state machine"): no turn; a turn under way (`StartOfTurn`);
a turn that may be over (`EagerEndOfTurn`, only when an eager threshold is set), which goes
back to under way (`TurnResumed`) when the speaker goes on, or ends (`EndOfTurn`). Between
changes, an `Update` about every 0.25 s of audio. A turn starts with its first words (a
`StartOfTurn` always has a transcript) and ends with all of them final.

What it is fed is what the local engine knows (`providers.local`, over `engine/channel.py`):
its VAD's `SpeechStarted` (an utterance has begun), its interim results (the open utterance's
words so far), and its finals (an utterance is over, its words settled; `speech_final` when
its endpointer ended it on silence rather than cutting a long one). The clock is the audio:
`now` is the seconds of audio the stream has received, so a decision never depends on how
fast the machine decodes, and the same audio always gives the same turns.

**The end-of-turn confidence** comes from the silence after the turn's last word, counted only
as far as the engine has heard it:

    confidence = silence / (silence + HALF_CONFIDENCE_SILENCE_S)        (0.2 s: 0.5 at 0.2 s)

- While the engine still has an utterance open (its VAD hears the speaker, or a pause shorter
  than its endpointing), the silence is the pause at the end of its latest interim, and the
  confidence is held below 0.5 (`OPEN_UTTERANCE_CAP`): no `eot_threshold` (0.5 to 1.0) ends a
  turn the engine has not ended; an eager threshold under 0.5 may fire at a pause in it.
- Once the utterance has ended on a final, the silence is the audio since the last word, and
  the confidence grows with it: 0.69 at the engine's own endpoint (450 ms of silence), 0.7
  (the default `eot_threshold`) at 0.47 s, 0.8 at 0.8 s, 0.9 at 1.8 s, never 1.0 (so
  `eot_threshold=1.0` leaves turn ends to `ForceEndTurn` and `eot_timeout_ms`).

`eot_timeout_ms` ends a turn after that much of the same silence whatever the confidence.
The audio clock a result is judged on is the audio received when it is read: a client that
streams in real time (as Flux wants) has the engine a decode behind it at most. A final that
comes after the VAD has already opened the next utterance (a busy engine) is judged on the
pause between the two, the silence it would have seen on time, so decode speed never merges
two turns.
`EagerEndOfTurn` comes when the confidence reaches `eager_eot_threshold` (always before the
`EndOfTurn` of the same transcript when eager mode is on); `TurnResumed` when the engine hears
the speaker again or the transcript changes after it. `ForceEndTurn` asks the engine to
finalize what it has heard (`flush`), and ends the turn with that final's words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from ..core.provider_events import TranscriptResult, Word
from .flux import (
    EAGER_END_OF_TURN,
    END_OF_TURN,
    START_OF_TURN,
    TRIGGER_CLOSE,
    TRIGGER_MANUAL,
    TRIGGER_MODEL,
    TRIGGER_TIMEOUT,
    TURN_RESUMED,
    UPDATE,
    Thresholds,
    TurnInfo,
)

HALF_CONFIDENCE_SILENCE_S: Final = 0.2  # the silence after the last word at which confidence is 0.5
OPEN_UTTERANCE_CAP: Final = 0.49  # below every eot_threshold: the engine hears the speaker still
UPDATE_INTERVAL_S: Final = 0.25  # an Update at least this often, in audio
FORCE_WAIT_S: Final = 2.0  # audio a ForceEndTurn waits for the engine's final before ending anyway
_EPSILON_S: Final = 1e-6


class Phase(Enum):
    NO_TURN = "no turn"
    ONGOING = "turn ongoing"
    AWAITING_END = "awaiting end"  # an EagerEndOfTurn was sent


@dataclass(frozen=True, slots=True)
class Step:
    """What an input changed: the TurnInfo to send, in order, and whether the engine must
    finalize now (a ForceEndTurn of an utterance it has not ended)."""

    events: tuple[TurnInfo, ...] = ()
    flush: bool = False


def confidence_for(silence_s: float) -> float:
    """The end-of-turn confidence after this much silence since the last word."""
    silence = max(0.0, silence_s)
    return silence / (silence + HALF_CONFIDENCE_SILENCE_S)


@dataclass
class TurnTaker:
    """One stream's turns. Feed it the engine's results and the audio clock; each input returns
    the `Step` it caused. Only one channel: Flux streams are mono."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    update_interval_s: float = UPDATE_INTERVAL_S
    phase: Phase = Phase.NO_TURN
    turn_index: int = 0
    now: float = 0.0  # seconds of audio received
    _committed: list[Word] = field(default_factory=list)  # the turn's words from finals
    _interim: tuple[Word, ...] = ()  # the open utterance's words so far
    _open_from: float | None = None  # start of the utterance the engine has open, if any
    _heard_until: float = 0.0  # end of the audio the latest result covered
    _last_word_end: float | None = None
    _turn_start: float = 0.0  # the window's start: the turn's first word, or the last turn's end
    _floor: float = 0.0  # words starting before this belong to a turn already ended
    _eager_transcript: str | None = None
    _force_at: float | None = None  # a ForceEndTurn waits for the final of the audio up to here
    _last_sent: float = 0.0  # audio time of the last TurnInfo

    # --- inputs ---------------------------------------------------------------------------

    def audio(self, now: float) -> Step:
        """The stream has received audio up to `now`."""
        self.now = max(self.now, now)
        return self._decide([])

    def speech_started(self, at_s: float, now: float) -> Step:
        """The engine's VAD opened an utterance at `at_s`."""
        self.now = max(self.now, now)
        out: list[TurnInfo] = []
        if at_s + _EPSILON_S >= self._heard_until:  # a later one than any result covers
            self._open_from = at_s
            if self.phase is Phase.AWAITING_END:
                out.append(self._resume())
        return self._decide(out)

    def result(self, result: TranscriptResult, now: float) -> Step:
        """An interim or a final of the engine."""
        self.now = max(self.now, now)
        words = tuple(w for w in result.words if (w.start + w.end) / 2 >= self._floor)
        late_pause_s: float | None = None
        if result.is_final:
            self._committed += words
            self._interim = ()
            if words and not result.speech_final:
                self._open_from = result.end  # a long utterance cut: the speaker goes on
            elif self._open_from is not None and self._open_from < result.end - _EPSILON_S:
                self._open_from = None  # its utterance is over (a later one stays open)
            elif words and self._open_from is not None:
                # A final a decode late: the VAD opened the next utterance before it came. The
                # pause between is silence the engine heard, judged below as if on time.
                late_pause_s = max(0.0, self._open_from - words[-1].end)
        else:
            self._interim = words
            if words and self._open_from is None:
                self._open_from = words[0].start
        self._heard_until = max(self._heard_until, result.end)
        if words:
            self._last_word_end = words[-1].end
        out: list[TurnInfo] = []
        if self.phase is Phase.NO_TURN and self._words():
            out.append(self._start())
        elif self.phase is Phase.AWAITING_END and self.transcript() != self._eager_transcript:
            out.append(self._resume())
        force_at = self._force_at
        if force_at is not None and result.is_final and (result.from_finalize or result.end >= force_at):
            return self._forced(out)
        if late_pause_s is not None and self.phase is not Phase.NO_TURN:
            out += self._judge_pause(late_pause_s)
        return self._decide(out)

    def force_end(self, now: float) -> Step:
        """ForceEndTurn: the turn ends on what has been said so far. At once when every word of
        it is final; else the engine is asked to finalize (`flush`), and its final ends it. With
        no turn known yet the engine is asked too: it may have words of the audio already sent
        that it has not reported (a push-to-talk button released right after a short "yes");
        if its final has none, there was no turn to end and nothing is sent."""
        self.now = max(self.now, now)
        if self._force_at is not None:
            return Step()
        if self._open_from is None and self.phase is not Phase.NO_TURN:
            return Step((self._end(TRIGGER_MANUAL),))
        self._force_at = self.now
        return Step(flush=True)

    def configure(self, thresholds: Thresholds) -> Step:
        """New thresholds (already checked), from now on."""
        self.thresholds = thresholds
        if thresholds.eager_eot_threshold is None and self.phase is Phase.AWAITING_END:
            self.phase = Phase.ONGOING  # no eager mode, no awaiting
        return self._decide([])

    def close(self) -> Step:
        """The stream is closing and the engine has sent its last results: a turn under way
        ends here."""
        if self.phase is Phase.NO_TURN:
            return Step()
        return Step((self._end(TRIGGER_CLOSE),))

    # --- what is known ----------------------------------------------------------------------

    def transcript(self) -> str:
        return " ".join(w.punctuated_word or w.word for w in self._words())

    def silence_s(self) -> float:
        """The silence after the turn's last word, as far as the engine has heard it."""
        if self._last_word_end is None:
            return 0.0
        if self._open_from is not None:
            if self._heard_until <= self._open_from + _EPSILON_S:
                return 0.0  # nothing of the open utterance is decoded yet
            return max(0.0, self._heard_until - self._last_word_end)
        return max(0.0, self.now - self._last_word_end)

    def confidence(self) -> float:
        if self._last_word_end is None:
            return 0.0
        value = confidence_for(self.silence_s())
        return min(value, OPEN_UTTERANCE_CAP) if self._open_from is not None else value

    # --- decisions --------------------------------------------------------------------------

    def _decide(self, out: list[TurnInfo]) -> Step:
        if self._force_at is not None and self.now - self._force_at >= FORCE_WAIT_S:
            return self._forced(out)  # the engine never answered: end on what is known
        if self.phase is not Phase.NO_TURN:
            t = self.thresholds
            confidence = self.confidence()
            eager = t.eager_eot_threshold
            has_words = bool(self._words())
            ends = confidence >= t.eot_threshold
            if (
                eager is not None
                and self.phase is Phase.ONGOING
                and has_words
                and (ends or confidence >= eager)
            ):
                self._eager_transcript = self.transcript()
                self.phase = Phase.AWAITING_END
                out.append(self._info(EAGER_END_OF_TURN))
            if ends:
                out.append(self._end(TRIGGER_MODEL))
            elif self.silence_s() * 1000 >= t.eot_timeout_ms:
                out.append(self._end(TRIGGER_TIMEOUT))
        if not out and self.now - self._last_sent >= self.update_interval_s - _EPSILON_S:
            out.append(self._info(UPDATE))
        if out:
            self._last_sent = self.now
        return Step(tuple(out))

    def _judge_pause(self, pause_s: float) -> list[TurnInfo]:
        """The turn's end decided on a pause already over (its final came after the next
        utterance opened): what the audio clock would have decided had the final come on time,
        so that how fast the engine decodes never merges two turns or splits one."""
        t = self.thresholds
        confidence = confidence_for(pause_s)
        by_model = confidence >= t.eot_threshold
        ends = by_model or pause_s * 1000 >= t.eot_timeout_ms
        out: list[TurnInfo] = []
        eager = t.eager_eot_threshold
        if eager is not None and self.phase is Phase.ONGOING and (ends or confidence >= eager):
            self._eager_transcript = self.transcript()
            self.phase = Phase.AWAITING_END
            out.append(self._info(EAGER_END_OF_TURN, confidence=confidence))
        if ends:
            out.append(self._end(TRIGGER_MODEL if by_model else TRIGGER_TIMEOUT, confidence=confidence))
        elif self.phase is Phase.AWAITING_END:
            out.append(self._resume())  # the speaker went on: the next utterance is open
        return out

    def _forced(self, out: list[TurnInfo]) -> Step:
        # Words the engine finalizes later of the audio before the force belong to this turn.
        self._floor = max(self._floor, self._force_at or 0.0)
        self._force_at = None
        if self.phase is Phase.NO_TURN:
            if not self._words():
                return self._decide(out)  # the engine heard no words: no turn to end
            out.append(self._start())
        out.append(self._end(TRIGGER_MANUAL))
        self._last_sent = self.now
        return Step(tuple(out))

    def _start(self) -> TurnInfo:
        self.phase = Phase.ONGOING
        self._turn_start = self._words()[0].start
        return self._info(START_OF_TURN)

    def _resume(self) -> TurnInfo:
        self.phase = Phase.ONGOING
        self._eager_transcript = None
        return self._info(TURN_RESUMED)

    def _end(self, trigger: str, *, confidence: float | None = None) -> TurnInfo:
        info = self._info(END_OF_TURN, trigger, confidence=confidence)
        self.phase = Phase.NO_TURN
        self.turn_index += 1
        self._committed = []
        self._interim = ()
        self._last_word_end = None
        self._eager_transcript = None
        if trigger == TRIGGER_MANUAL:
            self._force_at = None
        self._floor = max(self._floor, self._heard_until)
        self._turn_start = self.now
        return info

    def _info(self, event: str, trigger: str | None = None, *, confidence: float | None = None) -> TurnInfo:
        in_turn = self.phase is not Phase.NO_TURN or event == END_OF_TURN
        words = tuple(self._words()) if in_turn else ()
        if confidence is None:
            confidence = self.confidence() if in_turn else 0.0
        return TurnInfo(
            event=event,
            turn_index=self.turn_index,
            window_start=min(self._turn_start, self.now),
            window_end=self.now,
            words=words,
            confidence=confidence,
            trigger=trigger,
        )

    def _words(self) -> list[Word]:
        return [*self._committed, *self._interim]
