"""PCI in the session core, on a fake clock: the pause (no paused audio ever sent, by any
stream, replay or failover; keep-alives hold the connection; the call's time runs on and the
gap is marked), and redaction that holds across a reconnect's replay and a failover in the
middle of a card number."""

from __future__ import annotations

import re

import pytest

from asr_worker.core.actions import FlushStream, OpenStream, SendKeepAlive
from asr_worker.core.clock import FakeClock
from asr_worker.core.failover import Failover, FailoverConfig
from asr_worker.core.provider_events import TranscriptResult, Word
from asr_worker.errors import ProviderError
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.sim import Recorder, make_core

DROP = ProviderError("connection_lost", "dropped", retryable=True)
OUTAGE = ProviderError("service_unavailable", "HTTP 503", retryable=True, status=503, outage=True)
_DIGITISH = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|zero|oh)\b")
_TAG = re.compile(r"\[[A-Z_]+?(?:_\d+)?\]")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def feed(rec: Recorder, audio: bytes) -> None:
    for frame in frames(audio):
        rec.core.on_audio(frame, rec.clock.monotonic())
        rec.run_until(rec.clock.monotonic() + 0.02)
    rec.run_until(rec.clock.monotonic() + 0.2)


def result(
    start: float, end: float, words: list[tuple[str, float, float]], final: bool = True
) -> TranscriptResult:
    ws = tuple(Word(w, s, e, 0.9) for w, s, e in words)
    return TranscriptResult(0, final, final, " ".join(w for w, _, _ in words), 0.9, start, end - start, ws)


def spoken(text: str, start: float, step: float = 0.2) -> list[tuple[str, float, float]]:
    return [(w, start + i * step, start + i * step + 0.15) for i, w in enumerate(text.split())]


def shown_anywhere(rec: Recorder) -> list[str]:
    """Every text a watcher could read: each transcript's text and words."""
    out = []
    for event in rec.events("transcript"):
        out.append(event["text"])
        out.extend(w["word"] for w in event["words"])
        out.extend(w.get("punctuated_word", "") for w in event["words"])
    return out


def digits_shown(rec: Recorder) -> list[str]:
    return [text for text in shown_anywhere(rec) if _DIGITISH.search(_TAG.sub("", text))]


# --- the pause ------------------------------------------------------------------------------------


def test_paused_audio_never_reaches_any_stream_and_the_call_time_runs_on(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock), clock)
    rec.core.attach_source("a", clock.monotonic())
    before, during, after = speechlike(1.0, seed=1), speechlike(2.0, seed=2), speechlike(1.0, seed=3)
    feed(rec, before)
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    assert rec.core.pause_audio(clock.monotonic())
    assert not rec.core.pause_audio(clock.monotonic()), "already paused"
    rec.poll()
    assert isinstance(rec.log[-1][1], FlushStream), "what was heard before the pause is finalized"
    feed(rec, during)
    rec.run_until(clock.monotonic() + 4.0)  # silence from the provider's side: keep-alives
    assert [a for _, a in rec.keepalives() if isinstance(a, SendKeepAlive)], "the connection is held"
    assert rec.core.resume_audio(clock.monotonic())
    feed(rec, after)
    assert rec.sent_bytes(1) == before + after, "not one byte of the paused audio was sent"
    (paused,) = rec.events("paused")
    (resumed,) = rec.events("resumed")
    assert paused["at"] == 1.0 and resumed["at"] == 3.0, "call time counts the paused audio"
    # The provider's stream time counts only what it heard: its 1.5 s is call time 3.5 s.
    rec.core.on_stream_event(1, result(1.0, 2.0, spoken("after the pause", 1.5)), clock.monotonic())
    rec.poll()
    last = rec.events("transcript")[-1]
    assert last["start"] == 3.0 and last["words"][0]["start"] == 3.5
    assert rec.core.stats.bytes_paused == len(during)
    assert rec.core.audio_s == 4.0


def test_a_replay_after_a_reconnect_never_sends_paused_audio_and_maps_times_past_the_gap(
    clock: FakeClock,
) -> None:
    rec = Recorder(make_core(clock), clock)
    rec.core.attach_source("a", clock.monotonic())
    before, during, after = speechlike(1.0, seed=1), speechlike(1.0, seed=2), speechlike(1.0, seed=3)
    feed(rec, before)
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    rec.core.pause_audio(clock.monotonic())
    feed(rec, during)
    rec.core.resume_audio(clock.monotonic())
    feed(rec, after)
    rec.core.on_stream_event(1, result(0.0, 0.5, spoken("hello", 0.1)), clock.monotonic())
    rec.core.on_stream_closed(1, DROP, clock.monotonic())
    rec.run_until(clock.monotonic() + 5)
    rec.core.on_stream_opened(2, clock.monotonic())
    rec.poll()
    assert rec.sent_bytes(2) == before[PCM8K.bytes_for(0.5) :] + after
    # stream 2 starts at kept 0.5 s (call 0.5 s); its 0.7 s is after the gap: call 2.2 s
    rec.core.on_stream_event(2, result(0.5, 1.5, spoken("again", 0.7)), clock.monotonic())
    rec.poll()
    last = rec.events("transcript")[-1]
    assert last["words"][0]["start"] == 2.2 and last["start"] == 2.0
    # what final results cover, in call bytes, counts the paused audio as covered too
    rec.core.on_stream_event(2, result(1.5, 2.5, []), clock.monotonic())
    assert rec.core.covered_offset == len(before) + len(during) + len(after)


def test_pause_before_any_stream_opens_no_stream_and_keys_pressed_in_a_pause_are_not_told(
    clock: FakeClock,
) -> None:
    rec = Recorder(make_core(clock), clock)
    rec.core.attach_source("a", clock.monotonic())
    rec.core.pause_audio(clock.monotonic())
    feed(rec, speechlike(1.0))
    rec.core.on_dtmf("4", 0, clock.monotonic())
    assert not rec.opens()
    assert not rec.events("dtmf")
    rec.core.resume_audio(clock.monotonic())
    rec.core.on_dtmf("#", 0, clock.monotonic())
    feed(rec, speechlike(0.2))
    assert rec.opens() == [OpenStream(1, reconnect=False)]
    assert [e["digit"] for e in rec.events("dtmf")] == ["#"]
    assert [e["type"] for e in rec.events()][1:3] == ["paused", "resumed"]


def test_an_ending_call_cannot_be_paused(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock), clock)
    rec.core.attach_source("a", clock.monotonic())
    rec.core.end("end", clock.monotonic())
    assert not rec.core.pause_audio(clock.monotonic())
    assert not rec.core.resume_audio(clock.monotonic())


# --- redaction through reconnects and failover ------------------------------------------------------


def test_a_card_number_replayed_after_a_reconnect_is_redacted_again(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock, redact=frozenset({"pci"})), clock)
    rec.core.attach_source("a", clock.monotonic())
    feed(rec, speechlike(4.0))
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    said = "my card number is four one one one one one one one"
    rec.core.on_stream_event(1, result(0.0, 2.0, spoken(said, 0.1), final=False), clock.monotonic())
    rec.core.on_stream_closed(1, DROP, clock.monotonic())
    rec.run_until(clock.monotonic() + 5)
    rec.core.on_stream_opened(2, clock.monotonic())
    rec.poll()
    # the new stream hears the replay from 0 and says it all again, then the rest
    whole = said + " one one one one one one one one thanks"
    rec.core.on_stream_event(2, result(0.0, 4.0, spoken(whole, 0.1)), clock.monotonic())
    rec.poll()
    assert not digits_shown(rec), digits_shown(rec)
    texts = [e["text"] for e in rec.events("transcript")]
    assert texts == ["my card number is [REDACTED]", "my card number is [CREDIT_CARD_1] thanks"]


def test_a_call_failing_over_in_the_middle_of_a_card_number_keeps_redacting(clock: FakeClock) -> None:
    slots_left = [1]

    def claim() -> bool:
        slots_left[0] -= 1
        return slots_left[0] >= 0

    failover = Failover(FailoverConfig("local", after_s=10.0, refusals=3, retry_s=2.0), claim)
    core = make_core(
        clock,
        provider="deepgram",
        failover=failover,
        redact=frozenset({"pci"}),
        backoff_initial_s=0.5,
        backoff_max_s=1.0,
    )
    rec = Recorder(core, clock)
    rec.core.attach_source("a", clock.monotonic())
    feed(rec, speechlike(3.0))
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    # The primary finalizes the first group of the card, then goes down with the rest pending.
    rec.core.on_stream_event(1, result(0.0, 1.2, spoken("my card is 4111", 0.1)), clock.monotonic())
    rec.core.on_stream_event(1, result(1.2, 2.0, spoken("1111 1111", 1.3), final=False), clock.monotonic())
    rec.core.on_stream_closed(1, DROP, clock.monotonic())
    rec.run_until(clock.monotonic() + 1.0)
    rec.core.on_stream_failed(2, OUTAGE, clock.monotonic())
    rec.poll()
    (moved,) = rec.events("provider_changed")
    opened = next(o for o in rec.opens() if o.fallback)
    rec.core.on_stream_opened(opened.conn_id, clock.monotonic())
    rec.poll()
    # The fallback writes the rest its own way: digit words.
    rest = "one one one one one one one one one one one one thank you"
    rec.core.on_stream_event(
        opened.conn_id, result(0.0, 1.8, spoken(rest, 0.05, step=0.12)), clock.monotonic()
    )
    rec.poll()
    assert not digits_shown(rec), digits_shown(rec)
    finals = [e for e in rec.events("transcript") if e["is_final"]]
    assert [e["text"] for e in finals] == ["my card is [CREDIT_CARD_1]", "[CREDIT_CARD_1] thank you"]
    assert [e["provider"] for e in finals] == ["deepgram", "local"]
    assert moved["to"] == "local"
    assert rec.core.stats.spans_redacted == 2
