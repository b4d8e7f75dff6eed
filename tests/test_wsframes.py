"""The hot-path frame code against websockets' own framing: whatever a real client sends, cut
anywhere, the splitter gives every audio payload once and in order and leaves every other
frame whole; a frame we write for Deepgram parses as the message it carries."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from asr_worker.wsframes import FrameSplitter, MaskKeys, _python_unmask, binary_frame, unmask

MAX_PAYLOAD = 4096


def client() -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://test/v1/audio/x"), state=State.OPEN)


def server() -> ServerProtocol:
    return ServerProtocol(state=State.OPEN, max_size=MAX_PAYLOAD)


def server_frames(data: bytes) -> list[Frame]:
    protocol = server()
    protocol.receive_data(data)
    return [event for event in protocol.events_received() if isinstance(event, Frame)]


# What a client may send: audio messages, text, pings, and fragmented messages.
message = st.one_of(
    st.tuples(st.just("audio"), st.binary(min_size=0, max_size=700)),
    st.tuples(st.just("text"), st.text(max_size=60).map(str.encode)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("fragmented-binary"), st.binary(min_size=2, max_size=300)),
)


def send(protocol: ClientProtocol, kind: str, data: bytes) -> None:
    if kind == "audio":
        protocol.send_binary(data)
    elif kind == "text":
        protocol.send_text(data)
    elif kind == "ping":
        protocol.send_ping(data)
    else:  # one binary message in two frames
        half = len(data) // 2
        protocol.send_binary(data[:half], fin=False)
        protocol.send_continuation(data[half:], fin=True)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(message, max_size=12), cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_any_stream_cut_anywhere_gives_audio_once_in_order_and_other_frames_whole(
    messages: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    protocol = client()
    for kind, data in messages:
        send(protocol, kind, data)
    stream = b"".join(protocol.data_to_send())
    audio: list[bytes] = []
    other: list[bytes] = []
    splitter = FrameSplitter(MAX_PAYLOAD, audio.append, other.append)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for start, stop in itertools.pairwise(points):
        splitter.feed(stream[start:stop])
    assert splitter.pending_bytes == 0
    assert audio == [data for kind, data in messages if kind == "audio"]
    # every other frame came out whole: websockets parses them back to the messages sent
    frames = server_frames(b"".join(other))
    expected = [
        (Opcode.TEXT if kind == "text" else Opcode.PING, data)
        for kind, data in messages
        if kind in ("text", "ping")
    ]
    got = [(f.opcode, bytes(f.data)) for f in frames if f.opcode in (Opcode.TEXT, Opcode.PING)]
    assert got == expected
    fragmented = [f for f in frames if f.opcode in (Opcode.BINARY, Opcode.CONT)]
    assert b"".join(bytes(f.data) for f in fragmented) == b"".join(
        data for kind, data in messages if kind == "fragmented-binary"
    )


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(message, max_size=12))
def test_a_stream_read_one_frame_at_a_time_gives_the_same(messages: list[tuple[str, bytes]]) -> None:
    """The usual read: one whole frame (the splitter's fast path for audio of 126+ bytes)."""
    protocol = client()
    reads: list[bytes] = []
    for kind, data in messages:
        send(protocol, kind, data)
        reads += [chunk for chunk in protocol.data_to_send() if chunk]
    audio: list[bytes] = []
    other: list[bytes] = []
    splitter = FrameSplitter(MAX_PAYLOAD, audio.append, other.append)
    for read in reads:
        splitter.feed(read)
    assert splitter.pending_bytes == 0
    assert audio == [data for kind, data in messages if kind == "audio"]
    assert b"".join(other) == b"".join(read for read in reads if read[0] != 0x82)


@pytest.mark.parametrize("reads", ["together", "one frame at a time"])
def test_a_binary_frame_inside_a_fragmented_message_is_not_audio(reads: str) -> None:
    """It is a protocol error websockets must see (and fail the connection for)."""
    protocol = client()
    protocol.send_text(b"par", fin=False)
    frames = [b"".join(protocol.data_to_send()), binary_frame(bytes(300), b"abcd")]
    audio: list[bytes] = []
    other: list[bytes] = []
    splitter = FrameSplitter(MAX_PAYLOAD, audio.append, other.append)
    for chunk in [b"".join(frames)] if reads == "together" else frames:
        splitter.feed(chunk)
    assert audio == [] and len(other) == 2
    checker = server()
    checker.receive_data(b"".join(other))
    assert checker.close_sent is not None and checker.close_sent.code == 1002  # refused


def test_an_oversized_frame_hands_the_rest_of_the_stream_to_websockets() -> None:
    protocol = client()
    protocol.send_binary(b"a" * 10)
    protocol.send_binary(b"b" * (MAX_PAYLOAD + 1))
    protocol.send_binary(b"c" * 10)
    stream = b"".join(protocol.data_to_send())
    audio: list[bytes] = []
    other: list[bytes] = []
    splitter = FrameSplitter(MAX_PAYLOAD, audio.append, other.append)
    splitter.feed(stream[:20])
    splitter.feed(stream[20:])
    assert audio == [b"a" * 10]
    checker = server()
    checker.receive_data(b"".join(other))
    assert checker.close_sent is not None and checker.close_sent.code == 1009
    assert splitter.pending_bytes == 0


def test_two_frames_in_one_read_are_two_messages() -> None:
    first, second = bytes(range(200)), bytes(300)
    audio: list[bytes] = []
    splitter = FrameSplitter(MAX_PAYLOAD, audio.append, audio.append)
    splitter.feed(binary_frame(first, b"abcd") + binary_frame(second, b"efgh"))
    assert audio == [first, second]


def test_a_read_that_ends_a_frame_is_not_taken_for_a_frame_of_its_own() -> None:
    """The rest of a frame can look exactly like a whole audio frame: it is still the rest."""
    inner = binary_frame(bytes(300), b"wxyz")
    mask = b"abcd"
    payload = unmask(bytes(40) + inner, mask)  # masked, this payload ends in `inner`'s bytes
    frame = binary_frame(payload, mask)
    audio: list[bytes] = []
    splitter = FrameSplitter(MAX_PAYLOAD, audio.append, audio.append)
    splitter.feed(frame[: -len(inner)])
    splitter.feed(frame[-len(inner) :])
    assert audio == [payload]


def test_a_short_frame_whose_mask_key_looks_like_a_length_is_read_as_sent() -> None:
    payload = bytes(range(100))
    mask = bytes((0, 98, 1, 2))  # its first two bytes read as 98, this read's size less 8
    audio: list[bytes] = []
    FrameSplitter(MAX_PAYLOAD, audio.append, audio.append).feed(binary_frame(payload, mask))
    assert audio == [payload]


def test_a_whole_long_text_frame_in_one_read_is_not_audio() -> None:
    protocol = client()
    protocol.send_text(b"x" * 300)
    (frame,) = protocol.data_to_send()
    audio: list[bytes] = []
    other: list[bytes] = []
    FrameSplitter(MAX_PAYLOAD, audio.append, other.append).feed(frame)
    assert audio == [] and other == [frame]


def test_a_whole_oversized_frame_in_one_read_is_not_audio() -> None:
    frame = binary_frame(bytes(300), b"abcd")
    audio: list[bytes] = []
    other: list[bytes] = []
    FrameSplitter(200, audio.append, other.append).feed(frame)
    assert audio == [] and other == [frame]


def test_an_unmasked_frame_is_left_for_websockets_to_refuse() -> None:
    unmasked = bytes((0x82, 3)) + b"abc"
    audio: list[bytes] = []
    other: list[bytes] = []
    FrameSplitter(MAX_PAYLOAD, audio.append, other.append).feed(unmasked)
    assert audio == [] and other == [unmasked]
    checker = server()
    checker.receive_data(unmasked)
    assert checker.close_sent is not None and checker.close_sent.code == 1002


@pytest.mark.parametrize("size", [0, 1, 125, 126, 320, 65535, 65536, 100_000])
def test_a_frame_for_deepgram_parses_as_the_message_it_carries(size: int) -> None:
    payload = os.urandom(size)
    protocol = ServerProtocol(state=State.OPEN, max_size=None)
    protocol.receive_data(binary_frame(payload, MaskKeys().take()))
    (frame,) = protocol.events_received()
    assert isinstance(frame, Frame)
    assert frame.opcode is Opcode.BINARY and frame.fin and bytes(frame.data) == payload


def test_mask_keys_are_four_bytes_and_refilled_from_the_os() -> None:
    keys = MaskKeys(keys_per_draw=3)
    drawn = [keys.take() for _ in range(10)]
    assert all(len(k) == 4 for k in drawn)
    assert len(set(drawn)) == 10  # 32 random bits each: a repeat here would be a bug


@given(st.binary(max_size=600), st.binary(min_size=4, max_size=4))
def test_the_pure_python_unmask_matches_websockets(data: bytes, mask: bytes) -> None:
    assert _python_unmask(data, mask) == unmask(data, mask)
