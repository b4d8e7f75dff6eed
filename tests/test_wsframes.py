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


def test_a_binary_frame_inside_a_fragmented_message_is_not_audio() -> None:
    """It is a protocol error websockets must see (and fail the connection for)."""
    protocol = client()
    protocol.send_text(b"par", fin=False)
    stream = b"".join(protocol.data_to_send())
    stream += binary_frame(b"\x00\x01", b"abcd")
    audio: list[bytes] = []
    other: list[bytes] = []
    FrameSplitter(MAX_PAYLOAD, audio.append, other.append).feed(stream)
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
