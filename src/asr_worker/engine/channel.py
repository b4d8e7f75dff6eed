"""One channel of a local stream: its audio, VAD, utterances and finals, in order.

    samples -> StreamResampler (16 kHz) -> VadStream -> Segmenter -> utterances
    open utterance --(after new audio, a share of its length, when a decoder is spare)--> interim
    closed utterance --(Scheduler, finals first)--> final, emitted in line

A channel's finals tile its timeline: every utterance's final covers the silence before it,
and silence with no speech gets an empty final about every `silence_final_s` (the session
frees its replay buffer by this coverage). Finals are emitted in order though their decodes
finish out of order; an interim is dropped while an earlier final is still due.

Each decode is conditioned on the channel's context (`prompt`): the end of its recent finals
(when `context_chars` asks for them, as whisper_streaming and WhisperLive carry a stream's
committed text into the next window's prompt), then the call's expected words (keyterms).

Each decode goes to the engine that speaks the channel's language, in it (`languages.py`): the
call's, or, when the call detects it, the one Whisper hears in each utterance (`multi`) or in
the channel's first (kept from then on). Every result says its language: the code the call
named, or the one detected.

A channel knows nothing of the provider or the stream it belongs to: the engine's shared
parts (`ChannelEngine`: scheduler, pool wake-up, clock, metrics, options, which engine speaks
a language) and where its results go (`ChannelOutput`, the stream) are handed to it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

import numpy as np

from ..core.call_options import ENDPOINTING_OFF
from ..core.provider_events import ProviderEvent, SpeechStarted, TranscriptResult, UtteranceEnd, Word
from ..errors import ProviderError
from .agreement import Agreement, normalize
from .decoding import Decoded, DecodedWord
from .languages import SURE_PROBABILITY, CallLanguage, Mode
from .resample import SAMPLE_RATE, Float32Array, StreamResampler
from .scheduler import EngineMetrics, Job, JobKind, Overloaded, Route, Scheduler
from .timing import Span, spread, voiced_spans
from .vad import MIN_ENDPOINTING_MS, WINDOW, Segmenter, Utterance, VadConfig, VadStream

_SPEECH_STARTS_KEPT: Final = 8  # recent speech starts, to know whether the speaker went on


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    vad: VadConfig = field(default_factory=VadConfig)
    interim_interval_s: float = 0.7  # new audio in the open utterance between two interims, at least
    interim_growth: float = 0.25  # ...and at least this share of the utterance so far (see below)
    first_interim_s: float = 0.5  # speech in the open utterance before its first interim
    silence_final_s: float = 1.0  # an empty final at least this often through silence
    context_chars: int = 0  # of the channel's recent finals in each decode's prompt (0: none)
    keyterms: tuple[str, ...] = ()  # words every call is expected to use (ASR_LOCAL_KEYTERMS)


def _one_engine(_code: str | None) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class ChannelEngine:
    """What every channel of every call shares: one per provider."""

    scheduler: Scheduler
    wake_pool: Callable[[], None]  # a decode worker may have work now
    clock: Callable[[], float]  # monotonic seconds
    metrics: EngineMetrics
    options: ChannelOptions
    # The engine that decodes a language (an engine code; None: the one that detects), by name;
    # None: the pool's own.
    engine_for: Callable[[str | None], str | None] = _one_engine


class ChannelOutput(Protocol):
    """Where a channel's results go: its stream."""

    @property
    def closed(self) -> bool: ...

    def push(self, event: ProviderEvent) -> None: ...

    def fail(self, error: ProviderError) -> None:
        """Decoding failed: the stream ends with this error."""

    def maybe_close(self) -> None:
        """A final went out: the stream may close now, if it was asked to and nothing is due."""

    def arrival_of(self, position: int) -> float | None:
        """When the audio at this 16 kHz position reached the stream."""


@dataclass(eq=False, slots=True)
class Slot:
    """One final of a channel, in order: covers [start, end) of the channel's 16 kHz timeline."""

    start: int
    end: int
    audio_start: int = 0  # where the decoded audio began (word times are relative to it)
    speech_end: int | None = None  # None: a silence final, nothing to decode
    endpointed: bool = False
    from_finalize: bool = False
    end_s: float | None = None  # exact end in seconds (at Finalize), else end / 16 kHz
    voiced: list[Span] = field(default_factory=list)  # where the VAD heard voice, from audio_start
    result: Decoded | None = None
    language: str | None = None  # what its result reports
    done: bool = False


class Channel:
    def __init__(
        self,
        engine: ChannelEngine,
        output: ChannelOutput,
        *,
        index: int,
        channels: int,
        sample_rate: int,
        vad: VadStream,
        keyterms: tuple[str, ...] = (),
        endpointing_ms: int | None = None,
        utterance_end_ms: int | None = None,
        language: CallLanguage | None = None,
    ) -> None:
        """`index` of `channels` in the call; `sample_rate`: of the audio given to `take`;
        `keyterms`: this call's expected words, besides the engine's; `endpointing_ms`: the
        silence that ends an utterance with a speech_final (at least MIN_ENDPOINTING_MS; None:
        the engine's; ENDPOINTING_OFF: utterances end at the engine's silence, never
        speech_final); `utterance_end_ms`: how long after an utterance's last word, with no
        speech since, its UtteranceEnd comes (None: with its final); `language`: what the call
        asks (None: English, fixed)."""
        self._engine = engine
        self._scheduler = engine.scheduler
        self._output = output
        self.index = index
        self._channels = channels
        self.resampler = StreamResampler(sample_rate)
        self.vad = vad
        vad_config = engine.options.vad
        if endpointing_ms is not None and endpointing_ms != ENDPOINTING_OFF:
            vad_config = replace(vad_config, min_silence_ms=max(MIN_ENDPOINTING_MS, endpointing_ms))
        self.segmenter = Segmenter(vad_config)
        self._speech_final = endpointing_ms != ENDPOINTING_OFF
        self._utterance_end_s = None if utterance_end_ms is None else utterance_end_ms / 1000
        self._utterance_end_due: tuple[float, float] | None = None  # (last word's end, due), seconds
        self._speech_starts: deque[float] = deque(maxlen=_SPEECH_STARTS_KEPT)
        self.agreement = Agreement()
        self.position = 0  # 16 kHz samples received
        self.covered = 0  # end of the last final queued
        self.slots: deque[Slot] = deque()  # finals not yet emitted, in order
        self._chunks: deque[tuple[int, Float32Array]] = deque()  # (start position, samples)
        self._voice: deque[tuple[int, Float32Array]] = deque()  # (first window's start, VAD probabilities)
        self.utterance = 0  # id of the open (or last) utterance
        self.interim_wanted = False
        self.interim_end: int | None = None  # audio end of the open utterance's last interim
        self.keyterms = ""
        self.set_keyterms(keyterms)
        self.said = ""  # the end of this channel's finals so far, for the prompt
        self.language = language or CallLanguage(Mode.FIXED, "en", None)
        # The language the channel speaks: the call's, or once detected (DETECT_ONCE) the one
        # heard in its first sure utterance; None while it is to be detected.
        self.spoken: str | None = self.language.code
        self.heard: str | None = self.language.named  # what its results last said they were in

    def set_keyterms(self, keyterms: tuple[str, ...]) -> None:
        """This call's expected words from now on (besides the engine's): the next decodes'."""
        terms = dict.fromkeys(t.strip() for t in (*self._engine.options.keyterms, *keyterms) if t.strip())
        self.keyterms = ", ".join(terms)

    # --- audio ------------------------------------------------------------------------------

    def take(self, samples: Float32Array, now: float) -> None:
        out = self.resampler.push(samples)
        self._append(out)
        was_open = self.segmenter.open_start is not None
        for utterance in self.segmenter.push(self._judge(out)):
            self._close(utterance, now)
            was_open = False
        if self.segmenter.open_start is not None and not was_open:
            self._opened()
        self._silence_final()
        self._maybe_want_interim(now)
        self._utterance_end_check()

    def finalize(self, end_s: float, now: float, *, from_finalize: bool = True) -> None:
        """End the open utterance now and cover everything heard. Its final is marked
        `from_finalize` when it answers a Finalize; a CloseStream's is not, as Deepgram's."""
        self._append(self.resampler.flush())
        for closed in self.segmenter.push(self._judge(np.zeros(0, dtype=np.float32))):
            self._close(closed, now)
        last = self.segmenter.close_now(self.position)
        if last is not None:
            self._close(last, now, from_finalize=from_finalize, end_s=end_s)
        else:
            self.slots.append(
                Slot(self.covered, self.position, from_finalize=from_finalize, end_s=end_s, done=True)
            )
            self.covered = self.position
        self.segmenter.floor = self.position
        self._scheduler.cancel_interim(self)
        self.interim_wanted = False

    def forget(self) -> None:
        """The stream is gone: drop whatever this channel still waits for from the engine."""
        self._scheduler.forget(self)

    def _append(self, samples: Float32Array) -> None:
        if samples.size:
            self._chunks.append((self.position, samples))
            self.position += samples.size
        # Keep what a future utterance may start from (its lead-in reaches back), no more.
        keep_from = self.segmenter.open_start
        if keep_from is None:
            keep_from = self.segmenter.settled
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= keep_from:
            self._chunks.popleft()
        while self._voice and self._voice[0][0] + self._voice[0][1].size * WINDOW <= keep_from:
            self._voice.popleft()

    def _judge(self, samples: Float32Array) -> Float32Array:
        """The VAD's probabilities for the windows these samples complete, kept for word times."""
        probs = self.vad.push(samples)
        if probs.size:
            self._voice.append((self.segmenter.position, probs))
        return probs

    def voiced(self, start: int, end: int) -> list[Span]:
        """Where the VAD heard voice in [start, end), as seconds from `start`."""
        threshold = self._engine.options.vad.neg_threshold
        spans: list[Span] = []
        for first, probs in self._voice:
            lo = max(0, (start - first) // WINDOW)
            hi = min(probs.size, -(-(end - first) // WINDOW))
            if lo < hi:
                window_s = WINDOW / SAMPLE_RATE
                offset_s = (first + lo * WINDOW - start) / SAMPLE_RATE
                spans += voiced_spans(probs[lo:hi].tolist(), offset_s, window_s, threshold)
        return _joined(spans)

    def audio(self, start: int, end: int) -> Float32Array:
        parts = []
        for pos, chunk in self._chunks:
            lo, hi = max(start, pos), min(end, pos + chunk.size)
            if lo < hi:
                parts.append(chunk[lo - pos : hi - pos])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    # --- utterances -------------------------------------------------------------------------

    def _opened(self) -> None:
        self.utterance += 1
        self.agreement.reset()
        self.interim_end = None
        start = self.segmenter.speech_start or 0
        self._speech_starts.append(start / SAMPLE_RATE)
        self._output.push(SpeechStarted(self.index, start / SAMPLE_RATE))

    def _close(
        self, utterance: Utterance, now: float, *, from_finalize: bool = False, end_s: float | None = None
    ) -> None:
        slot = Slot(
            self.covered,
            utterance.end,
            audio_start=utterance.start,
            speech_end=utterance.speech_end,
            endpointed=utterance.endpointed,
            from_finalize=from_finalize,
            end_s=end_s,
            voiced=self.voiced(utterance.start, utterance.end),
        )
        self.slots.append(slot)
        self.covered = utterance.end
        self.utterance += 1  # interims still in flight for it are stale now
        self._scheduler.cancel_interim(self)
        self.interim_wanted = False
        self.agreement.reset()
        audio = self.audio(utterance.start, utterance.end)
        job = Job(
            JobKind.FINAL,
            self,
            audio,
            now,
            lambda result: self._final_done(slot, result),
            self.prompt,
            self.route,
        )
        try:
            self._scheduler.add_final(job)
        except Overloaded as exc:
            self._engine.metrics.refused.inc()
            raise ProviderError(
                "engine_overloaded", f"the local speech engine is behind: {exc}", retryable=True
            ) from None
        self._engine.wake_pool()

    def _silence_final(self) -> None:
        """Through silence, an empty final about every second: coverage keeps moving."""
        if self.segmenter.open_start is not None:
            return
        end = self.segmenter.settled
        if end - self.covered >= round(self._engine.options.silence_final_s * SAMPLE_RATE):
            self.slots.append(Slot(self.covered, end, done=True))
            self.covered = end
            self.segmenter.floor = max(self.segmenter.floor, end)
            self.emit_ready()

    def prompt(self) -> str:
        """The context a decode of this channel starts from: recent finals, then keyterms (last,
        so that a prompt shortened from its start to fit a batch keeps them)."""
        parts = [self.said, f"{self.keyterms}." if self.keyterms else ""]
        return " ".join(p for p in parts if p)

    def switch_language(self, language: CallLanguage) -> None:
        """The call's language from now on: the next decodes (interims and finals not yet
        dispatched among them) are in it; what is decoded stays."""
        self.language = language
        self.spoken = language.code
        self.heard = language.named

    def route(self) -> Route:
        """Which engine decodes this channel's next utterance, in which language (None: detect)."""
        language = None if self.language.mode is Mode.PER_UTTERANCE else self.spoken
        return self._engine.engine_for(language), language

    def _heard(self, result: Decoded) -> str | None:
        """The language a result reports: the one the call named, else the one detected."""
        if self.language.mode is Mode.FIXED:
            return self.language.named
        if result.words and result.language is not None:
            self.heard = result.language
            if (
                self.language.mode is Mode.DETECT_ONCE
                and self.spoken is None
                and result.language_probability >= SURE_PROBABILITY
            ):
                self.spoken = result.language  # kept: the next utterances are decoded in it
        return self.heard

    def _remember(self, text: str) -> None:
        limit = self._engine.options.context_chars
        if limit <= 0 or not text:
            return
        if text[-1].isalnum():  # the prompt's style becomes the next decode's: keep sentences
            text += "."
        said = f"{self.said} {text}".strip()
        if len(said) > limit:  # cut at a word boundary
            cut = said.find(" ", len(said) - limit)
            said = said[cut + 1 :] if cut >= 0 else said[-limit:]
        self.said = said

    def _final_done(self, slot: Slot, result: Decoded | Exception) -> None:
        if isinstance(result, Exception):
            self._output.fail(ProviderError("engine_error", f"decoding failed: {result}", retryable=True))
            return
        slot.result = spread(result, slot.voiced)
        slot.language = self._heard(slot.result)
        slot.done = True
        self.emit_ready()

    def emit_ready(self) -> None:
        """Emit the finals at the head of the line whose decodes are done, in order."""
        output = self._output
        while self.slots and self.slots[0].done:
            slot = self.slots.popleft()
            words = _words(slot.result, slot.audio_start) if slot.result else ()
            start_s = slot.start / SAMPLE_RATE
            end_s = slot.end_s if slot.end_s is not None else slot.end / SAMPLE_RATE
            text = " ".join(w.punctuated_word or w.word for w in words)
            self._remember(text)
            output.push(
                TranscriptResult(
                    channel=self.index,
                    is_final=True,
                    speech_final=bool(words) and slot.endpointed and self._speech_final,
                    text=text,
                    confidence=slot.result.confidence if slot.result and words else 0.0,
                    start=start_s,
                    duration=max(0.0, end_s - start_s),
                    words=words,
                    from_finalize=slot.from_finalize,
                    channels=self._channels,
                    language=slot.language if slot.result is not None else self.heard,
                )
            )
            if words and slot.speech_end is not None:
                arrived = output.arrival_of(slot.speech_end)
                if arrived is not None:
                    self._engine.metrics.final_latency.observe(max(0.0, self._engine.clock() - arrived))
                if slot.endpointed and self._utterance_end_s is None:
                    output.push(UtteranceEnd(self.index, words[-1].end))
                elif slot.endpointed and self._utterance_end_s is not None:
                    last = words[-1].end
                    self._utterance_end_due = (last, last + self._utterance_end_s)
                    self._utterance_end_check()
        output.maybe_close()

    def _utterance_end_check(self) -> None:
        """The UtteranceEnd a stream asked for with `utterance_end_ms`: once the audio heard
        reaches that long after the last word and the speaker has not gone on meanwhile."""
        due = self._utterance_end_due
        if due is None:
            return
        last, at = due
        if any(last < started < at for started in self._speech_starts):
            self._utterance_end_due = None  # the speaker went on within the gap
            return
        if self.segmenter.position / SAMPLE_RATE >= at:
            self._utterance_end_due = None
            self._output.push(UtteranceEnd(self.index, last))

    # --- interims ---------------------------------------------------------------------------

    def _maybe_want_interim(self, now: float) -> None:
        """An interim is due once the utterance has `first_interim_s` of speech (counted from
        the voice, not from the lead-in before it, which is no words), then after every
        `interim_interval_s` of new audio, or a quarter of the utterance so far if that is more.

        An interim decodes the open utterance from its start, so its cost grows with the
        utterance; spacing interims in proportion keeps what they cost per second of speech
        bounded (about four decodes' worth of audio a second, however long the utterance),
        where a fixed spacing made the eighth second of speech cost eleven times the first.
        The scheduler spaces them further when decoders are busy (finals first, interims in
        spare time only)."""
        speech_start = self.segmenter.speech_start
        if (
            self.segmenter.open_start is None
            or speech_start is None
            or self.interim_wanted
            or self._output.closed
        ):
            return
        opts = self._engine.options
        if self.interim_end is None:
            due = self.position - speech_start >= opts.first_interim_s * SAMPLE_RATE
        else:
            heard = self.position - (self.segmenter.open_start or speech_start)
            interval = max(opts.interim_interval_s * SAMPLE_RATE, opts.interim_growth * heard)
            due = self.position - self.interim_end >= interval
        if not due:
            return
        self.interim_wanted = True
        self._scheduler.want_interim(self, now, self._make_interim)
        self._engine.wake_pool()

    def _make_interim(self) -> Job | None:
        start = self.segmenter.open_start
        if start is None or self._output.closed:
            self.interim_wanted = False
            return None
        utterance, end = self.utterance, self.position
        self.interim_end = end
        voiced = self.voiced(start, end)
        return Job(
            JobKind.INTERIM,
            self,
            self.audio(start, end),
            self._engine.clock(),
            lambda result: self._interim_done(
                utterance, start, end, result if isinstance(result, Exception) else spread(result, voiced)
            ),
            self.prompt,
            self.route,
        )

    def _interim_done(self, utterance: int, start: int, end: int, result: Decoded | Exception) -> None:
        self.interim_wanted = False
        if isinstance(result, Exception) or utterance != self.utterance or self.segmenter.open_start is None:
            return  # stale: the utterance closed meanwhile and its final supersedes this
        shown = self.agreement.update(list(result.words))
        if not self.slots:  # an earlier final still due goes first; a late interim is dropped
            words = _words(Decoded(tuple(shown), result.audio_s), start)
            covered_s = self.covered / SAMPLE_RATE
            self._output.push(
                TranscriptResult(
                    channel=self.index,
                    is_final=False,
                    speech_final=False,
                    text=" ".join(w.punctuated_word or w.word for w in words),
                    confidence=result.confidence,
                    start=covered_s,
                    duration=max(0.0, end / SAMPLE_RATE - covered_s),
                    words=words,
                    channels=self._channels,
                    language=self.language.named if self.language.mode is Mode.FIXED else result.language,
                )
            )
        self._maybe_want_interim(self._engine.clock())


def _joined(spans: list[Span]) -> list[Span]:
    """Spans in order with those that touch (across two probability chunks) made one."""
    out: list[Span] = []
    for a, b in spans:
        if out and a <= out[-1][1] + 1e-9:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _words(result: Decoded | None, audio_start: int) -> tuple[Word, ...]:
    if result is None:
        return ()
    offset = audio_start / SAMPLE_RATE
    return tuple(_word(w, offset) for w in result.words)


def _word(w: DecodedWord, offset: float) -> Word:
    return Word(
        word=normalize(w.text) or w.text,
        start=round(offset + w.start, 3),
        end=round(offset + max(w.start, w.end), 3),
        confidence=round(w.probability, 4),
        punctuated_word=w.text,
    )
