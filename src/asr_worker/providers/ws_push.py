"""A websockets client connection that hands each data message to a callback as it is parsed.

This is the one place the worker overrides an internal of a library (websockets'
`Connection.process_event`, which its asyncio connection calls for every event its sans-I/O
protocol parses). It does so for speed: at 500 calls Deepgram sends about 1,250 results a
second, and the queue, future and task switch behind `recv` were a large part of what a
result cost. `tests/providers/test_ws_push.py` checks the behaviour relied on (every message
once and in order, pings answered, closes and bad UTF-8 handled as websockets' own reader
does) against the locked websockets, so a release that changes the internal fails there
rather than in production.
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import Event


class PushingConnection(ClientConnection):
    """websockets' client connection, which can hand each complete data message to a callback
    as its frames are parsed, instead of queueing it for a reader task to await.

    At 500 calls Deepgram sends about 1,250 results a second, and the queue, the future and the
    task switch behind each were a large part of what a result cost. websockets still parses
    every frame, enforces max_size and answers pings and closes; only where a data message goes
    changes, and only if nothing was queued before, so messages keep their order."""

    _sink: Callable[[str | bytes], None] | None = None
    _queued_messages = 0  # data frames websockets' own queue took (before a sink was set)
    _fragments: list[bytes] | None = None  # a fragmented message's frames so far
    _text = True  # the message being received is text (its first frame said so)

    def push_to(self, sink: Callable[[str | bytes], None]) -> bool:
        """Messages go to `sink` from now on: text as str, binary as bytes, as `recv` gives."""
        if self._queued_messages:
            return False  # a reader must drain the queue first, or the order would change
        self._sink = sink
        return True

    def stop_pushing(self) -> None:
        """Drop the callback (the stream has ended): it refers back to the stream and its
        session, and this cycle would otherwise wait for a full garbage collection."""
        self._sink = None

    def process_event(self, event: Event) -> None:
        sink = self._sink
        if sink is None or not isinstance(event, Frame) or event.opcode not in DATA_OPCODES:
            if self.response is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
                self._queued_messages += 1
            super().process_event(event)
            return
        if event.opcode is not Opcode.CONT:
            self._text = event.opcode is Opcode.TEXT
        if not event.fin:
            if self._fragments is None:
                self._fragments = []
            self._fragments.append(bytes(event.data))
            return
        data = bytes(event.data)
        if self._fragments is not None:
            self._fragments.append(data)
            data, self._fragments = b"".join(self._fragments), None
        if not self._text:
            sink(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:  # as websockets' own recv answers it
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            return
        sink(text)
