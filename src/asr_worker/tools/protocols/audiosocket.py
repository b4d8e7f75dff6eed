"""`--protocol audiosocket`: Asterisk's AudioSocket, over TCP to the --url's host at
`--audiosocket-port` (the worker's ASR_AUDIOSOCKET_PORT), as

    Dial(AudioSocket/HOST:PORT/${UUID()}/c(slin16))

streams a call: the call's UUID first (AudioSocket names calls by a UUID: `--id` must be one,
and each of several calls gets a fresh one), then signed linear 16-bit audio in 20 ms
messages at the file's rate where AudioSocket has a kind for it (8 kHz, what the
`AudioSocket()` application sends, up to 48 kHz through the channel driver), mono (a
two-channel file is mixed); the hangup message at the end. AudioSocket carries no key: the
worker takes connections from the addresses in ASR_AUDIOSOCKET_ALLOW (loopback by default) and
gives every call the tenant ASR_AUDIOSOCKET_TENANT (`--tenant-id` to watch it in another than
the key's). It sends no events back: they are read over SSE on the --url's port."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...errors import ProtocolError
from ...transports.forks import audiosocket_messages as messages
from .base import CallRefused, CallSpec, Leg, Received, RouteProtocol, highest_rate

RATES: Final = sorted(rate for rate in messages.AUDIO_RATES.values() if rate <= messages.MAX_RATE)
MAX_PAYLOAD_BYTES: Final = 0xFFFF - 1  # a message's length field, in whole samples


class AudioSocketLeg(Leg):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fmt: AudioFormat) -> None:
        self.reader = reader
        self.writer = writer
        self.fmt = fmt
        self.ending = False  # our hangup went
        self.hung_up = False  # the worker hung up, or closed the connection

    @property
    def closed(self) -> bool:
        return self.ending or self.hung_up

    async def send_audio(self, chunk: bytes) -> None:
        for i in range(0, len(chunk), MAX_PAYLOAD_BYTES):
            self.writer.write(messages.audio(chunk[i : i + MAX_PAYLOAD_BYTES], self.fmt.sample_rate))
        await self.writer.drain()

    async def end(self) -> None:
        """The hangup message: the worker then ends the call (its last finals, then
        `session_ended`, over SSE) and closes the connection."""
        self.ending = True
        self.writer.write(messages.hangup())
        await self.writer.drain()

    async def received(self) -> AsyncIterator[Received]:
        """Nothing: AudioSocket carries no events back. Returns when the worker closes the
        connection after the hangup; a hangup before it is a refusal of the call."""
        while not await self._hangup_or_close():
            pass
        self.hung_up = True
        if not self.ending:
            raise CallRefused(
                "the worker hung up the AudioSocket call: this machine's address must be in its "
                "ASR_AUDIOSOCKET_ALLOW, and it must have room for the call (its log says which)"
            )
        nothing: tuple[Received, ...] = ()
        for received in nothing:
            yield received

    async def _hangup_or_close(self) -> bool:
        """One message from the worker; True for its hangup or the connection's end."""
        try:
            kind, length = messages.header(await self.reader.readexactly(messages.HEADER_BYTES))
            payload = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return True
        try:
            return isinstance(messages.message(kind, payload), messages.Hangup)
        except ProtocolError:
            return False  # nothing a caller acts on (audio back, a kind it does not know)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class AudioSocket(RouteProtocol):
    name: ClassVar[str] = "audiosocket"
    path: ClassVar[str] = ""  # TCP to --audiosocket-port, not a path of the worker's HTTP port
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"  # AudioSocket takes none: this one watches
    key_hint: ClassVar[str] = (
        "no key for AudioSocket: this machine's address in the worker's ASR_AUDIOSOCKET_ALLOW"
    )

    def call_ids(self, named: str | None, calls: int) -> list[str]:
        """A UUID per call, in the form the worker reads it back in."""
        if named is None:
            return [str(uuid.uuid4()) for _ in range(calls)]
        if calls > 1:
            raise ValueError(
                "--protocol audiosocket names each call by a UUID of its own: give --id only with one call"
            )
        try:
            return [str(uuid.UUID(named))]
        except ValueError:
            raise ValueError(
                f"--protocol audiosocket names a call by a UUID; --id {named[:40]!r} is not one"
            ) from None

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, RATES), 1)

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        host, port = call.host, call.audiosocket_port
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ConnectionRefusedError(
                f"nothing listens for AudioSocket at {where} (the worker's ASR_AUDIOSOCKET_PORT, "
                "--audiosocket-port here)"
            ) from None
        writer.write(messages.call_id(call.interaction_id))
        return AudioSocketLeg(reader, writer, call.fmt)


PROTOCOL: Final = AudioSocket()
