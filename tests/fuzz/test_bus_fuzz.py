"""Fuzzing what the Redis Streams bus reads from Redis: call announcements, audio frames and
end entries (the `data` field as bytes in any encoding, bad JSON, bad base64, wrong formats,
non-whole-sample audio, huge seq numbers), replies of any shape, and the transcript tail a
worker resumes a call from. Each is a typed value or a short reason, never an exception."""

from __future__ import annotations

import base64
import json
import math

from hypothesis import example, given
from hypothesis import strategies as st

from asr_worker.bus.redis.wire import (
    MAX_SEQ,
    Announcement,
    Frame,
    entries,
    event_seq,
    final_end,
    json_object,
    parse_announcement,
    parse_frame,
    streams,
)
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import check_id
from tests.support.fuzz import HOSTILE, SCALARS, bounded, dumps, examples, garbled, json_values, mutated

PCM8K = AudioFormat(Encoding.LINEAR16, 8000, 1)
MULAW2 = AudioFormat(Encoding.MULAW, 8000, 2)

ANNOUNCEMENT = {
    "interaction_id": "call-1",
    "tenant_id": "acme",
    "encoding": "linear16",
    "sample_rate": 8000,
    "channels": 1,
}
FRAME = {
    "interaction_id": "call-1",
    "tenant_id": "acme",
    "seq": 3,
    "timestamp_ms": 1764300000000,
    "sample_rate": 8000,
    "encoding": "pcm16",
    "audio": base64.b64encode(b"\x01\x00" * 160).decode(),
}
END = {"interaction_id": "call-1", "seq": 4, "end": True}


@st.composite
def data_field(draw: st.DrawFn, valid: dict[str, object]) -> bytes | None:
    """The `data` field as Redis hands it over: bytes, from near-valid JSON in UTF-8 (or in
    another encoding a producer chose), or any bytes at all, or missing."""
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "garbled", "encoded", "bytes", "missing"]))
    if kind == "missing":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    text = dumps(valid)
    if kind == "mutated":
        text = dumps(draw(mutated(valid)))
    elif kind == "garbled":
        text = draw(garbled(text))
    if kind == "encoded":
        codec = draw(st.sampled_from(["utf-16", "utf-32-be", "latin-1", "utf-8-sig"]))
        return text.encode(codec, "replace")
    return text.encode("utf-8", "surrogatepass")


@examples(300)
@given(data_field(ANNOUNCEMENT))
@example(dumps({**ANNOUNCEMENT, "sample_rate": "²"}).encode())  # was a bare ValueError (AudioFormat.parse)
@example(dumps({**ANNOUNCEMENT, "channels": 10**400}).encode())  # quoted 400 digits
@example(dumps({**ANNOUNCEMENT, "interaction_id": "x" * 100_000}).encode())
@example(b'{"interaction_id": "call-1", "encoding": ' + b"[" * 5000 + b"]" * 5000 + b"}")
def test_an_announcement_is_a_call_or_a_short_problem(raw: bytes | None) -> None:
    announcement, tag, problem = parse_announcement(raw)
    if announcement is not None:
        assert isinstance(announcement, Announcement) and problem == ""
        assert tag == announcement.tag and tag.endswith(
            check_id(announcement.interaction_id, "interaction_id")
        )
        assert announcement.fmt.channels in (1, 2) and 8000 <= announcement.fmt.sample_rate <= 48000
    else:
        bounded(problem)
        # only a usable id is echoed, as the call's tag: [TENANT/]ID
        assert tag is None or all(check_id(part, "interaction_id") == part for part in tag.split("/"))


@examples(250)
@given(fmt=st.sampled_from([PCM8K, MULAW2]), raw=st.one_of(data_field(FRAME), data_field(END)))
@example(fmt=PCM8K, raw=dumps({**FRAME, "audio": "AAE"}).encode())  # base64 of the wrong length
@example(fmt=PCM8K, raw=dumps({**FRAME, "audio": "ＡＡＡＡ"}).encode())  # non-ASCII base64
@example(fmt=PCM8K, raw=dumps({**FRAME, "audio": base64.b64encode(b"\x01\x02\x03").decode()}).encode())
@example(fmt=PCM8K, raw=dumps({**FRAME, "seq": 10**400}).encode())
@example(fmt=PCM8K, raw=dumps({**FRAME, "sample_rate": 16000}).encode())
@example(fmt=PCM8K, raw=dumps({**END, "end": "true"}).encode())
def test_an_audio_entry_is_a_frame_or_a_short_problem(fmt: AudioFormat, raw: bytes | None) -> None:
    frame = parse_frame(raw, fmt)
    if isinstance(frame, str):
        bounded(frame)
        return
    assert isinstance(frame, Frame) and isinstance(frame.audio, bytes)
    assert not (frame.end and frame.audio)
    # A frame that is not whole samples is the session's to refuse (an error event), not the
    # parser's: the entry is still read, so the call's cursor moves past it.


def test_a_declared_format_other_than_the_calls_is_refused() -> None:
    problem = parse_frame(dumps({**FRAME, "encoding": "mulaw"}).encode(), PCM8K)
    assert isinstance(problem, str) and "mulaw 8000 Hz" in problem and "linear16 8000 Hz" in problem


REPLIES = st.recursive(
    st.none() | st.integers() | st.binary(max_size=10) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.binary(max_size=5) | st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=15,
)


@examples(200)
@given(REPLIES)
def test_replies_of_any_shape_give_well_typed_entries(raw: object) -> None:
    for entry_id, fields in entries(raw):
        assert isinstance(entry_id, str)
        assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields.items())
    for stream, batch in streams(raw):
        assert isinstance(stream, str) and isinstance(batch, list)


# --- the transcript tail a worker resumes a call from -----------------------------------------------

FINAL = {
    "type": "transcript",
    "interaction_id": "call-1",
    "seq": 41,
    "channel": 1,
    "is_final": True,
    "start": 1.2,
    "end": 2.5,
    "text": "hello",
}


@examples(300)
@given(st.one_of(mutated(FINAL), json_values()))
@example({**FINAL, "seq": 10**400})  # beyond what the write script's Lua numbers hold exactly
@example({**FINAL, "seq": 2**53})
@example({**FINAL, "seq": True})
@example({**FINAL, "end": math.inf})  # was taken as how far the call was final: no word after it
@example({**FINAL, "end": math.nan})
@example({**FINAL, "end": 10**400})  # float() overflowed (found by the hunt profile)
@example({**FINAL, "channel": True})
def test_a_transcript_entry_gives_a_usable_seq_and_final_end_or_none(event: object) -> None:
    body = json_object(dumps(event).encode("utf-8", "surrogatepass"))
    if body is None:
        return
    seq = event_seq(body)
    assert seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ)
    final = final_end(body, 2)
    if final is not None:
        channel, end = final
        assert channel in (0, 1) and not isinstance(channel, bool)
        assert math.isfinite(end) and end >= 0


@examples(100)
@given(SCALARS | HOSTILE)
def test_json_object_is_an_object_or_none(value: object) -> None:
    raw = json.dumps(value, allow_nan=True).encode()
    parsed = json_object(raw)
    assert parsed is None or isinstance(parsed, dict)
