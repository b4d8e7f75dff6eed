"""One channel on its own: the engine's parts handed in (a real scheduler, a VAD session that
hears anything loud as speech, a fake clock), its results collected, its decodes finished by
hand in the order the test wants."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from asr_worker.core.provider_events import ProviderEvent, SpeechStarted, TranscriptResult
from asr_worker.engine.channel import Channel, ChannelEngine, ChannelOptions
from asr_worker.engine.decoding import Decoded, DecodedWord
from asr_worker.engine.resample import SAMPLE_RATE, Float32Array
from asr_worker.engine.scheduler import DecodePool, Job, JobKind, Scheduler
from asr_worker.engine.vad import CONTEXT, VadStream
from asr_worker.errors import ProviderError

FRAME = SAMPLE_RATE // 50  # 20 ms


class LoudIsSpeech:
    """Stands in for Silero: a window is speech when its mean amplitude is over 0.1."""

    def run(self, outputs: None, feeds: dict[str, npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
        windows = feeds["input"][:, CONTEXT:]
        probs = np.where(np.abs(windows).mean(axis=1) > 0.1, 0.9, 0.0).astype(np.float32)
        return [probs.reshape(-1, 1), feeds["h"], feeds["c"]]


class Output:
    def __init__(self) -> None:
        self.closed = False
        self.events: list[ProviderEvent] = []
        self.failed: ProviderError | None = None

    def push(self, event: ProviderEvent) -> None:
        self.events.append(event)

    def fail(self, error: ProviderError) -> None:
        self.failed = error

    def maybe_close(self) -> None:
        return None

    def arrival_of(self, position: int) -> float | None:
        return None

    def finals(self) -> list[TranscriptResult]:
        return [e for e in self.events if isinstance(e, TranscriptResult) and e.is_final]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def a_channel() -> tuple[Channel, Output, Scheduler, Clock, list[int]]:
    scheduler = Scheduler(max_batch=1)
    clock = Clock()
    wakes: list[int] = []
    engine = ChannelEngine(
        scheduler=scheduler,
        wake_pool=lambda: wakes.append(1),
        clock=clock,
        metrics=DecodePool(scheduler, 1, clock).metrics,
        options=ChannelOptions(),
    )
    output = Output()
    channel = Channel(
        engine, output, index=0, channels=1, sample_rate=SAMPLE_RATE, vad=VadStream(LoudIsSpeech())
    )
    return channel, output, scheduler, clock, wakes


def feed(channel: Channel, clock: Clock, samples: Float32Array) -> None:
    for start in range(0, samples.size, FRAME):
        clock.now += FRAME / SAMPLE_RATE
        channel.take(samples[start : start + FRAME], clock.now)


def speech(seconds: float) -> Float32Array:
    return np.full(round(seconds * SAMPLE_RATE), 0.5, dtype=np.float32)


def silence(seconds: float) -> Float32Array:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def finals_waiting(scheduler: Scheduler) -> list[Job]:
    jobs = []
    while batch := scheduler.next_batch(interims_running=1):  # interims held back
        jobs.extend(batch)
    assert all(job.kind is JobKind.FINAL for job in jobs)
    return jobs


def words(*texts: str) -> Decoded:
    return Decoded(tuple(DecodedWord(t, 0.1 * i, 0.1 * i + 0.08, 0.9) for i, t in enumerate(texts)), 1.0)


def test_finals_go_out_in_line_though_their_decodes_finish_out_of_order() -> None:
    channel, output, scheduler, clock, wakes = a_channel()
    feed(channel, clock, silence(0.3))
    feed(channel, clock, speech(0.8))
    feed(channel, clock, silence(0.7))
    feed(channel, clock, speech(0.8))
    feed(channel, clock, silence(0.7))
    assert [type(e) for e in output.events] == [SpeechStarted, SpeechStarted]
    first, second = finals_waiting(scheduler)
    assert wakes, "the decode pool was told of the work"

    second.deliver(words("second", "utterance"))
    assert output.finals() == [], "the second final waits for the first"
    first.deliver(words("first"))
    finals = [f for f in output.finals() if f.text]
    assert [f.text for f in finals] == ["first", "second utterance"]
    tiles = output.finals()
    assert tiles[0].start == 0.0
    for before, after in itertools.pairwise(tiles):
        assert after.start == pytest.approx(before.start + before.duration), (
            "finals tile the channel's timeline"
        )
    assert output.failed is None


def test_a_failed_decode_fails_the_stream() -> None:
    channel, output, scheduler, clock, _ = a_channel()
    feed(channel, clock, speech(0.8))
    feed(channel, clock, silence(0.7))
    (job,) = finals_waiting(scheduler)
    job.deliver(RuntimeError("out of memory"))
    assert output.failed is not None and output.failed.code == "engine_error"
    assert output.finals() == []


def test_silence_alone_still_moves_coverage() -> None:
    channel, output, scheduler, clock, _ = a_channel()
    feed(channel, clock, silence(3.5))
    finals = output.finals()
    assert len(finals) >= 2 and all(not f.text for f in finals)
    assert finals_waiting(scheduler) == [], "nothing to decode"
    assert channel.covered > 2 * SAMPLE_RATE


def test_the_first_interim_waits_for_speech_not_for_the_lead_in() -> None:
    """An utterance is decoded from half a second before the voice, which holds no words: its
    first interim comes after `first_interim_s` of speech, and the next after
    `interim_interval_s` more; an interim on the lead-in and a breath of voice makes up words."""
    channel, _output, scheduler, clock, _wakes = a_channel()
    feed(channel, clock, silence(2.0))
    feed(channel, clock, speech(0.4))
    assert scheduler.interims_waiting == 0, "0.4 s of speech: too early, whatever the lead-in"
    feed(channel, clock, speech(0.2))
    assert scheduler.interims_waiting == 1
    (job,) = scheduler.next_batch(interims_running=0)
    assert job.kind is JobKind.INTERIM and job.audio_s >= 1.0, "the interim's audio has the lead-in"
    job.deliver(Decoded((), job.audio_s))
    feed(channel, clock, speech(0.6))
    assert scheduler.interims_waiting == 0, "the next one after interim_interval_s of new audio"
    feed(channel, clock, speech(0.2))
    assert scheduler.interims_waiting == 1


def test_interims_of_a_long_utterance_come_further_apart_as_it_grows() -> None:
    """Each interim decodes the utterance from its start: spaced by a quarter of its length
    (at least `interim_interval_s`), what interims cost per second of speech stays bounded."""
    channel, _output, scheduler, clock, _wakes = a_channel()
    feed(channel, clock, silence(1.0))
    decoded: list[float] = []
    for _ in range(120):  # 12 s of speech, every interim decoded as soon as it is wanted
        feed(channel, clock, speech(0.1))
        for job in scheduler.next_batch(interims_running=0):
            decoded.append(job.audio_s)
            job.deliver(Decoded((), job.audio_s))
    gaps = [b - a for a, b in itertools.pairwise(decoded)]
    assert gaps[0] == pytest.approx(0.7, abs=0.05)
    assert all(gap >= 0.25 * length - 0.05 for gap, length in zip(gaps, decoded[1:], strict=True))
    assert len(decoded) <= 11, "a fixed 0.7 s spacing would decode 16 times"
    assert sum(decoded) / 12.0 <= 5.0, "audio decoded per second of speech"
