"""The mock provider: deterministic words from the audio it receives, and switches for faults.

Every `word_ms` of a stream's audio is one window. A silent window (peak below
`silence_peak`) is a pause; any other window is a word, chosen from a fixed vocabulary by a
checksum of the window's bytes. So the same audio always gives the same words, a test can
compute the words a call must produce (`expected_words`), and a replayed stream that starts
on a window boundary hears exactly the words the dropped one would have.

Results follow Deepgram's shape: an interim after each word, a final every
`words_per_final` words or at a pause (`speech_final`), empty finals through long silences
so finals tile the timeline, and a `from_finalize` final on Finalize/CloseStream. A
two-channel call is heard as one stream (channel 0) unless `multichannel` is on: then each
channel is heard on its own and its results name it, as Deepgram's `multichannel=true` does
(`expected_words` of each channel's audio, `channel_audio`).

With `digits`, the words are digit words ("zero" to "nine") instead: what a caller reading
out a card number sounds like to a provider, for the redaction tests.

Faults, for tests: `fail_opens` (the next N opens fail; fatally with `fail_fatal`),
`open_delay_ms`, `drop_after_ms` (each stream fails after that much audio, for the first
`drop_streams` streams, 0 meaning all), `hang_close` (never confirms CloseStream).
Options come from `ASR_MOCK`, e.g. `ASR_MOCK="word_ms=200,drop_after_ms=3000"`.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from typing import Final

import numpy as np

from ..core.audio import AudioFormat
from ..core.codecs import to_linear16
from ..core.provider_events import ProviderEvent, TranscriptResult, Word
from ..errors import ProviderError
from ..settings import Section, Setting
from .base import ProviderHealth, ProviderKind, ResultQueue, StreamRequest

VOCABULARY = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

_SILENCE_FINAL_S = 1.0


@dataclass
class MockOptions:
    word_ms: int = 200
    words_per_final: int = 5
    silence_peak: int = 500
    fail_opens: int = 0
    fail_fatal: bool = False
    open_delay_ms: int = 0
    drop_after_ms: int = 0
    drop_streams: int = 0
    hang_close: bool = False
    await_every: int = 0  # every Nth `send_audio_now` declines, so that send is awaited (1: all)
    multichannel: bool = False  # each channel of a two-channel call heard on its own
    digits: bool = False  # the words are digit words, not NATO's alphabet

    @classmethod
    def parse(cls, text: str) -> MockOptions:
        """`k=v,k=v` with the field names above; raises ValueError naming a bad key or value.
        Numbers are whole and not negative, and `word_ms` at least 1 (a stream cuts its audio
        into windows of that length)."""
        options = cls()
        known = {f.name: f for f in fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"unknown mock option {key[:40]!r}; known: {', '.join(known)}")
            if isinstance(getattr(options, key), bool):
                setattr(options, key, value.strip().lower() in ("1", "true", "yes", "on"))
                continue
            number = value.strip()
            lowest = 1 if key == "word_ms" else 0
            if not (number.isascii() and number.isdigit() and len(number) <= 9) or int(number) < lowest:
                raise ValueError(
                    f"mock option {key} must be a whole number from {lowest}, not {value[:20]!r}"
                )
            setattr(options, key, int(number))
        return options


def word_for(window: bytes, fmt: AudioFormat, silence_peak: int, digits: bool = False) -> str | None:
    """The word a window of audio stands for, or None if it is silence."""
    samples = to_linear16(window, fmt)
    if samples.size == 0 or int(np.abs(samples.astype(np.int32)).max()) < silence_peak:
        return None
    vocabulary = DIGIT_WORDS if digits else VOCABULARY
    return vocabulary[zlib.crc32(window) % len(vocabulary)]


def expected_words(audio: bytes, fmt: AudioFormat, options: MockOptions | None = None) -> list[str]:
    """The words a whole call's audio must come out as, for tests."""
    opts = options or MockOptions()
    step = fmt.bytes_for(opts.word_ms / 1000)
    words = (
        word_for(audio[i : i + step], fmt, opts.silence_peak, opts.digits) for i in range(0, len(audio), step)
    )
    return [w for w in words if w]


def channel_audio(audio: bytes, fmt: AudioFormat, channel: int) -> bytes:
    """One channel of interleaved audio, in the same encoding."""
    if fmt.channels == 1:
        return audio
    width = fmt.bytes_per_sample
    frames = np.frombuffer(audio[: len(audio) - len(audio) % fmt.frame_bytes], dtype=np.uint8)
    return frames.reshape(-1, fmt.channels, width)[:, channel, :].tobytes()


class _Channel:
    """What the mock has heard of one channel: its audio cut into word windows, the words of
    the utterance under way, and where its last final ended."""

    def __init__(self, stream: MockStream, index: int, fmt: AudioFormat) -> None:
        self.stream = stream
        self.index = index
        self.fmt = fmt
        self.window_bytes = fmt.bytes_for(stream.options.word_ms / 1000)
        self.pending = bytearray()
        self.done_bytes = 0  # bytes of completed windows
        self.final_end = 0.0
        self.utterance: list[Word] = []

    def take(self, data: bytes) -> None:
        self.pending += data
        while len(self.pending) >= self.window_bytes:
            window = bytes(self.pending[: self.window_bytes])
            del self.pending[: self.window_bytes]
            self.window(window)

    def flush(self) -> None:
        if self.pending:
            self.window(bytes(self.pending))
            self.pending.clear()

    def window(self, window: bytes) -> None:
        start = self.fmt.seconds(self.done_bytes)
        self.done_bytes += len(window)
        end = self.fmt.seconds(self.done_bytes)
        opts = self.stream.options
        word = word_for(window, self.fmt, opts.silence_peak, opts.digits)
        if word is not None:
            self.utterance.append(Word(word, start, end, 0.9))
            self.result(self.final_end, end, is_final=False, speech_final=False)
            if len(self.utterance) >= opts.words_per_final:
                self.final(end, speech_final=False)
        elif self.utterance or end - self.final_end >= _SILENCE_FINAL_S:
            self.final(end, speech_final=bool(self.utterance))

    def final(self, end: float, *, speech_final: bool, from_finalize: bool = False) -> None:
        self.result(self.final_end, end, is_final=True, speech_final=speech_final, finalize=from_finalize)
        self.final_end = end
        self.utterance = []

    def result(
        self, start: float, end: float, *, is_final: bool, speech_final: bool, finalize: bool = False
    ) -> None:
        words = tuple(self.utterance)
        self.stream.put(
            TranscriptResult(
                channel=self.index,
                is_final=is_final,
                speech_final=speech_final,
                text=" ".join(w.word for w in words),
                confidence=0.9 if words else 0.0,
                start=start,
                duration=max(0.0, end - start),
                words=words,
                from_finalize=finalize,
                channels=len(self.stream.channels),
            )
        )


class MockStream:
    def __init__(self, provider: MockProvider, request: StreamRequest, index: int) -> None:
        self.request = request
        self.index = index
        self.received = bytearray()
        self.controls: list[str] = []
        self.keyterms = request.options.keyterms  # the mock hears no words by them: kept for tests
        self.options = self._opts = provider.options
        self._fmt = request.fmt
        split = self._opts.multichannel and self._fmt.channels > 1
        heard = AudioFormat(self._fmt.encoding, self._fmt.sample_rate, 1) if split else self._fmt
        self.channels = [_Channel(self, c, heard) for c in range(self._fmt.channels if split else 1)]
        drops = self._opts.drop_streams
        self._drop_at = (
            self._fmt.bytes_for(self._opts.drop_after_ms / 1000)
            if self._opts.drop_after_ms and (drops == 0 or index < drops)
            else 0
        )
        self._results = ResultQueue(max_events=10_000)
        self._failed: ProviderError | None = None
        self._closed = False
        self._immediate_offers = 0
        self.keyterms = request.options.keyterms  # the stream's, as Configure last set them

    # --- the ProviderStream interface ---------------------------------------------------------

    async def send_audio(self, data: bytes) -> None:
        self._check_open()
        self._send(data)

    def send_audio_now(self, data: bytes) -> bool:
        self._check_open()
        self._immediate_offers += 1
        if self._opts.await_every and self._immediate_offers % self._opts.await_every == 0:
            return False
        self._send(data)
        return True

    async def keepalive(self) -> None:
        self._check_open()
        self.controls.append("KeepAlive")

    async def finalize(self) -> None:
        self._check_open()
        self.controls.append("Finalize")
        for channel in self.channels:
            channel.flush()
            channel.final(channel.fmt.seconds(channel.done_bytes), speech_final=True, from_finalize=True)

    async def close_stream(self) -> None:
        self._check_open()
        self.controls.append("CloseStream")
        # As Deepgram's: the audio no Finalize flushed gets its final (not marked from_finalize).
        for channel in self.channels:
            if channel.pending or channel.utterance:
                channel.flush()
                channel.final(channel.fmt.seconds(channel.done_bytes), speech_final=True)
        if not self._opts.hang_close:
            self._closed = True
            self._results.finish()

    async def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self.controls.append("abort")
            self._results.finish()

    def events(self) -> AsyncIterator[ProviderEvent]:
        return self._results.events()

    def update_keyterms(self, keyterms: tuple[str, ...]) -> bool:
        """Taken and kept (`keyterms`, and "Keyterms" in `controls`), for tests; the mock's words
        do not depend on them."""
        self.controls.append("Keyterms")
        self.keyterms = keyterms
        return True

    # --- the mock recognizer ------------------------------------------------------------------

    def put(self, event: ProviderEvent) -> None:
        if not self._results.put(event) and not self._results.ended:
            self._failed = ProviderError("events_overflow", "mock results are not being read", retryable=True)
            self._results.finish(self._failed)

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ProviderError("closed", "mock stream is closed", retryable=True)

    def _send(self, data: bytes) -> None:
        if self._drop_at and len(self.received) + len(data) >= self._drop_at:
            take = self._drop_at - len(self.received)
            take -= take % self._fmt.frame_bytes
            self._take(data[:take])
            error = ProviderError("mock_drop", "mock stream dropped", retryable=True)
            self._fail(error)
            raise error
        self._take(data)

    def _fail(self, error: ProviderError) -> None:
        self._failed = error
        self._results.finish(error)

    def _take(self, data: bytes) -> None:
        self.received += data
        if len(self.channels) == 1:
            self.channels[0].take(data)
            return
        for channel in self.channels:
            channel.take(channel_audio(data, self._fmt, channel.index))


@dataclass
class MockProvider:
    options: MockOptions = field(default_factory=MockOptions)
    name: str = "mock"
    opens: int = 0
    open_attempts: int = 0
    # The most recent streams, for tests to inspect; bounded so a long-running mock stays small.
    streams: deque[MockStream] = field(default_factory=lambda: deque(maxlen=1024))

    async def open(self, request: StreamRequest) -> MockStream:
        self.open_attempts += 1
        if self.options.open_delay_ms:
            await asyncio.sleep(self.options.open_delay_ms / 1000)
        if self.options.fail_opens > 0:
            self.options.fail_opens -= 1
            if self.options.fail_fatal:
                raise ProviderError(
                    "unauthorized", "mock provider refused the credentials", retryable=False, status=401
                )
            raise ProviderError("unavailable", "mock provider is unavailable", retryable=True, status=503)
        stream = MockStream(self, request, self.opens)
        self.opens += 1
        self.streams.append(stream)
        return stream

    def health(self) -> ProviderHealth:
        return ProviderHealth(ok=True)

    async def aclose(self) -> None:
        return None

    def streams_for(self, interaction_id: str) -> list[MockStream]:
        return [s for s in self.streams if s.request.interaction_id == interaction_id]


def create(options: MockOptions) -> MockProvider:
    return MockProvider(options)


SETTINGS: Final = Section(
    "mock",
    "mock provider",
    MockOptions,
    (
        Setting(
            "",
            "ASR_MOCK",
            "mock provider options, e.g. word_ms=200,drop_after_ms=3000 (tests)",
            MockOptions.parse,
        ),
    ),
)

KIND: Final = ProviderKind(SETTINGS, create)
