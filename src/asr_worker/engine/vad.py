"""Voice activity: Silero VAD (the ONNX model faster-whisper ships) run as a stream, and a pure
segmenter that turns its per-window speech probabilities into utterances.

Silero v6 takes 512-sample windows at 16 kHz (32 ms), each with the 64 samples before it as
context, and carries an LSTM state (h, c) from window to window: so one state per channel and
one call per message, which costs about 0.05 ms a window on this machine (a 20 ms frame every
so often), cheap enough to run on the event loop beside the socket work.

The segmenter is the endpointing policy and has no model in it, so it is tested on made-up
probabilities: speech starts at a window at or above `threshold`; it ends once the probability
has stayed below `neg_threshold` for `min_silence_ms`; an utterance reaches back
`lead_in_ms` before its first sure window and on `pad_ms` after its last (never into audio
already given to an earlier one); an utterance reaching `max_utterance_s` is cut at its quietest
recent window.

Silero is less sure of itself on telephone audio than on the wideband audio it learned from:
speech cut at 4 kHz scores lower, a soft word 0.3-0.5 (a caller's "ask" for 400 ms), so the
thresholds are 0.35 and 0.2 rather than Silero's usual 0.5 and 0.35, which cut soft starts off
and split phrases at soft syllables. The lower end threshold hears a word's fading tail as
speech, so 450 ms of silence rather than 500 ends an utterance, which keeps the endpoint where
the usual thresholds put it. An utterance starts half a second before its first sure window,
not 0.2 s, for a soft word still under the threshold. And a blip shorter
than `min_speech_ms` is not an utterance on its own, but it is held for `blip_hold_ms`: speech
that begins within that time starts at the blip, so a soft first word followed by a short pause
("front ... center", where "front" scored above threshold for 192 ms) is not lost; a blip
nothing follows is a click or a cough, left to the silence final that covers it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from .resample import SAMPLE_RATE, Float32Array

WINDOW: Final = 512  # samples per VAD decision at 16 kHz
CONTEXT: Final = 64
# The least silence that may end an utterance when a stream asks for less (Deepgram's default
# `endpointing` is 10 ms, LiveKit's 25): below it the segmenter ends utterances at the gaps
# between words, and the engine, decoding the pieces apart, gets about twice the words wrong
# (14.5% WER at 32 ms, 10.8% at 64, 7.6% at 100, 6.8% at 450 on tests/support/human_speech).
MIN_ENDPOINTING_MS: Final = 100

# --- the model -----------------------------------------------------------------------------------


class _Session(Protocol):
    def run(
        self, outputs: None, feeds: dict[str, npt.NDArray[np.float32]]
    ) -> list[npt.NDArray[np.float32]]: ...


class SileroVad:
    """The shared ONNX session (thread-safe, single-threaded by design)."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    @classmethod
    def load(cls) -> SileroVad:
        """Blocking: call from a thread at start."""
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        session = onnxruntime.InferenceSession(
            os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )
        return cls(session)

    def stream(self) -> VadStream:
        return VadStream(self._session)


class VadStream:
    """One channel's VAD state: feed 16 kHz audio, get a probability per completed window."""

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: Float32Array) -> Float32Array:
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = audio.size // WINDOW
        self._pending = audio[n * WINDOW :].copy()
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.vstack([self._context[None, :], windows[:-1, -CONTEXT:]])
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1), dtype=np.float32)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


# --- the policy ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VadConfig:
    threshold: float = 0.35
    neg_threshold: float = 0.2
    min_silence_ms: int = 450
    min_speech_ms: int = 200
    pad_ms: int = 200  # after the last speech window
    lead_in_ms: int = 500  # before the first window at or above threshold
    blip_hold_ms: int = 1000  # a too-short blip starts speech that begins this soon after it
    max_utterance_s: float = 15.0

    def samples(self, ms: float) -> int:
        return round(ms * SAMPLE_RATE / 1000)


@dataclass(frozen=True, slots=True)
class Utterance:
    """Speech from `start` to `end` (16 kHz sample positions of the channel, padding included);
    `speech_end` is where the voice stopped (for latency); `endpointed` is False for a forced cut."""

    start: int
    end: int
    speech_end: int
    endpointed: bool


@dataclass(slots=True)
class Segmenter:
    config: VadConfig = field(default_factory=VadConfig)
    position: int = 0  # samples judged so far (whole windows)
    floor: int = 0  # no utterance may start before this (audio already given away)
    speech_start: int | None = None  # where the open utterance's speech began
    speech_end: int = 0  # end of its last window at or above threshold
    silence_run: int = 0
    blip: tuple[int, int] | None = None  # (padded start, speech end) of a held too-short blip
    _reach_back: int | None = None  # the open utterance starts at a blip before it
    _recent: list[tuple[int, float]] = field(default_factory=list)  # (window end, prob) while open

    @property
    def open_start(self) -> int | None:
        """Start (padded) of the open utterance, if speech is going on."""
        if self.speech_start is None:
            return None
        start = self.speech_start - self.config.samples(self.config.lead_in_ms)
        if self._reach_back is not None:
            start = min(start, self._reach_back)
        return max(self.floor, start)

    @property
    def settled(self) -> int:
        """No utterance will ever start before this: what a silence final may cover. Behind the
        judged audio by the lead-in, and held at a blip that speech may still start from."""
        settled = self.position - self.config.samples(self.config.lead_in_ms)
        if self.blip is not None:
            settled = min(settled, self.blip[0])
        return max(self.floor, settled)

    def push(self, probs: Float32Array) -> list[Utterance]:
        """Judge the next windows; return the utterances they closed."""
        closed: list[Utterance] = []
        cfg = self.config
        for p in probs.tolist():
            start, end = self.position, self.position + WINDOW
            self.position = end
            if self.speech_start is None:
                if self.blip is not None and start - self.blip[1] > cfg.samples(cfg.blip_hold_ms):
                    self.blip = None  # nothing followed it: a click or a cough
                if p >= cfg.threshold:
                    self.speech_start, self.speech_end, self.silence_run = start, end, 0
                    self._recent = [(end, p)]
                    self._reach_back = self.blip[0] if self.blip is not None else None
                    self.blip = None
                continue
            self._recent.append((end, p))
            if p >= cfg.threshold or (p >= cfg.neg_threshold and self.silence_run == 0):
                self.speech_end, self.silence_run = end, 0
            else:
                self.silence_run += WINDOW
            if self.silence_run >= cfg.samples(cfg.min_silence_ms):
                utterance = self._close(min(end, self.speech_end + cfg.samples(cfg.pad_ms)), endpointed=True)
                if utterance is not None:
                    closed.append(utterance)
            elif end - (self.open_start or 0) >= round(cfg.max_utterance_s * SAMPLE_RATE):
                cut = self._quietest_recent_end()
                utterance = self._close(cut, endpointed=False)
                if utterance is not None:
                    closed.append(utterance)
                if cut < end:  # the words after the cut start the next utterance
                    self.speech_start, self.speech_end, self.silence_run = cut, end, 0
                    self._recent = [(end, p)]
        return closed

    def close_now(self, end: int) -> Utterance | None:
        """The call or stream ends (Finalize): the open utterance ends here, whatever its length;
        with none open, a held blip is the utterance (a short "no" just before a bot's Finalize
        is the answer, not a cough: nothing will follow it to start from it)."""
        if self.speech_start is None:
            if self.blip is None:
                return None
            start, speech_end = self.blip
            self.blip = None
            self.floor = end
            return Utterance(start, end, speech_end, endpointed=True)
        return self._close(end, endpointed=True, keep_short=True)

    def _close(self, end: int, *, endpointed: bool, keep_short: bool = False) -> Utterance | None:
        start = self.open_start
        assert start is not None and self.speech_start is not None
        speech = self.speech_end - self.speech_start
        speech_end = min(self.speech_end, end)
        self.speech_start = None
        self.silence_run = 0
        self._recent = []
        self._reach_back = None
        if speech < self.config.samples(self.config.min_speech_ms) and not keep_short:
            self.blip = (start, speech_end)  # held: speech may follow it (see the module's notes)
            return None
        self.blip = None
        self.floor = end
        return Utterance(start, end, speech_end, endpointed)

    def _quietest_recent_end(self) -> int:
        """Where to cut a too-long utterance: the end of the least speech-like window in its last
        three seconds (a breath between words), else right here."""
        horizon = self.position - 3 * SAMPLE_RATE
        candidates = [(p, end) for end, p in self._recent if end >= horizon]
        if not candidates:
            return self.position
        _p, end = min(candidates)
        return end
