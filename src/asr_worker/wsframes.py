"""WebSocket frames (RFC 6455) on the hot paths: audio in from a client, audio out to Deepgram.

In: an ingest socket carries 50 audio frames a second per call, each a complete, unfragmented,
masked binary frame. `FrameSplitter` unmasks exactly those here, in the transport's
callback. Every other frame (text, ping, close, fragments, unmasked or reserved-bit frames)
goes whole, as its original bytes, to websockets' sans-I/O protocol, so it keeps that
library's checks and close handshake. A frame that announces more than `max_payload` bytes
hands the rest of the stream to websockets, which fails the connection with 1009.

Out: `binary_frame` frames one audio message as a client must (masked), with its mask key
from `MaskKeys`, which draws them from the OS's random source 1,024 at a time instead of a
system call per frame.

Pure apart from that random source: bytes in, bytes or callbacks out, no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final


def _python_unmask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    size = len(data)
    key = (mask * ((size + 3) >> 2))[:size]
    key_int = int.from_bytes(key, "little")
    return (int.from_bytes(data, "little") ^ key_int).to_bytes(size, "little")


try:  # websockets' C helper when its wheel has it (faster); the same result otherwise
    from websockets.speedups import apply_mask

    unmask = apply_mask
except ImportError:  # pragma: no cover - wheels for Linux and macOS ship the extension
    unmask = _python_unmask

AUDIO_FIRST_BYTE: Final = 0x82  # FIN set, no reserved bits, opcode 2 (binary)
_MASKED: Final = 0x80
_FIN: Final = 0x80
_CONTROL: Final = 0x08
MAX_HEADER_BYTES: Final = 14  # 2 + 8 (64-bit length) + 4 (mask key)


class FrameSplitter:
    """Cut a client's byte stream into frames: audio payloads to `audio`, anything else to
    `other` as the frame's raw bytes. Holds at most one incomplete frame (at most
    `max_payload` + 14 bytes)."""

    def __init__(
        self, max_payload: int, audio: Callable[[bytes], object], other: Callable[[bytes], None]
    ) -> None:
        self._max_payload = max_payload
        self.audio = audio  # where audio payloads go (a socket may point it elsewhere later)
        self._other = other
        self._pending = bytearray()  # an incomplete frame's bytes so far
        self._need = 0  # bytes `_pending` must hold before it is worth parsing again
        self._in_fragments = False  # a fragmented message is open: binary frames are not audio
        self._passthrough = False  # websockets owns the stream from here (an oversized frame)

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes) -> None:
        if self._passthrough:
            self._other(data)
            return
        if self._pending:
            # An incomplete frame grows in place, and is parsed again only once it may be
            # whole: a frame trickled in a byte at a time costs no more than one sent at once.
            self._pending += data
            if len(self._pending) < self._need:
                return
            buf = bytes(self._pending)
            self._pending = bytearray()
        else:
            buf = data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                if size - head < 2:
                    self._keep(buf, pos, head + 2)
                    return
                length = (buf[head] << 8) | buf[head + 1]
                head += 2
            elif length == 127:
                if size - head < 8:
                    self._keep(buf, pos, head + 8)
                    return
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            if length > self._max_payload:
                self._passthrough = True
                self._other(buf[pos:])
                return
            masked = second & _MASKED
            end = head + (4 if masked else 0) + length
            if end > size:
                self._keep(buf, pos, end)
                return
            if first == AUDIO_FIRST_BYTE and masked and not self._in_fragments:
                self.audio(unmask(buf[head + 4 : end], buf[head : head + 4]))
            else:
                if not first & _CONTROL:  # a data frame: opens or closes a fragmented message
                    self._in_fragments = not first & _FIN
                self._other(buf[pos:end])
            pos = end
        if pos < size:
            self._keep(buf, pos, pos + 2)

    def _keep(self, buf: bytes, pos: int, until: int) -> None:
        """Hold the incomplete frame at `pos` until the stream reaches `until` (its end, or as
        far as its header says so far)."""
        self._pending = bytearray(buf[pos:])
        self._need = until - pos


class MaskKeys:
    """Mask keys for client frames: unpredictable (the OS's random source, as RFC 6455
    section 10.3 asks), drawn in blocks."""

    def __init__(self, keys_per_draw: int = 1024) -> None:
        self._block_bytes = 4 * keys_per_draw
        self._block = b""
        self._next = 0

    def take(self) -> bytes:
        if self._next >= len(self._block):
            self._block = os.urandom(self._block_bytes)
            self._next = 0
        start = self._next
        self._next = start + 4
        return self._block[start : start + 4]


def binary_frame(payload: bytes, mask: bytes) -> bytes:
    """One complete binary message from a client: FIN, opcode 2, masked with `mask`."""
    size = len(payload)
    if size < 126:
        head = bytes((AUDIO_FIRST_BYTE, _MASKED | size))
    elif size < 1 << 16:
        head = bytes((AUDIO_FIRST_BYTE, _MASKED | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((AUDIO_FIRST_BYTE, _MASKED | 127)) + size.to_bytes(8, "big")
    return head + mask + unmask(payload, mask)  # masking and unmasking are the same XOR
