"""Asterisk AudioSocket: a TCP port of its own (`ASR_AUDIOSOCKET_PORT`, off unless set).

    exten => 100,1,Answer()
     same => n,AudioSocket(${UUID()},worker.example.com:9092)

(or `Dial(AudioSocket/worker.example.com:9092/${UUID()}/c(slin16))`). Each connection is one
call, named by the UUID Asterisk sends first; its audio is signed linear at the rate its message
kind says (8 kHz from the dialplan application, up to 48 kHz through the channel driver), mono:
channel 0. The call's format is its first audio message's. A DTMF message is a `dtmf` event; the
hangup message, or the connection closed, ends the call at once with reason `end`.

AudioSocket carries no credentials at all: who may connect is the address allow-list
(`ASR_AUDIOSOCKET_ALLOW`, loopback only by default), and every call belongs to one tenant
(`ASR_AUDIOSOCKET_TENANT`). Keep the port on a private network with Asterisk.

Bad input (a first message that is not the UUID, a truncated header, an unknown kind, audio
over 48 kHz or of a changed rate) is one log line, an `error` event where there is a call, and,
before the call is known, the hangup message and the connection closed; other calls go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass
from typing import Final

from ...core.audio import AudioFormat, Encoding
from ...core.ids import DEFAULT_TENANT, CallKey, check_id
from ...core.session import Phase
from ...errors import BadRequest, ProtocolError, SessionRefused, StartError
from ...runtime.source import CallSource
from ...settings import Section, Setting
from ..host import CallHost
from . import audiosocket_messages as asm

log = logging.getLogger("asr_worker.audiosocket")

PLATFORM: Final = "audiosocket"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def optional_port(text: str) -> int | None:
    """A TCP port, `0` for any free one, or empty/`none`/`off` for no listener."""
    value = text.strip().lower()
    if value in ("", "none", "off"):
        return None
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError("must be a TCP port (0-65535), or none")
    return int(value)


def networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks."""
    found: list[Network] = []
    for item in text.split(","):
        if item.strip():
            try:
                found.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError("must be comma-separated addresses or CIDR blocks (10.0.0.0/8)") from None
    return tuple(found)


def tenant(text: str) -> str:
    return check_id(text.strip(), "the tenant")


@dataclass(frozen=True)
class AudioSocketOptions:
    port: int | None = None
    tenant: str = DEFAULT_TENANT
    allow: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


SETTINGS: Final = Section(
    "audiosocket",
    "Asterisk AudioSocket",
    AudioSocketOptions,
    (
        Setting(
            "port",
            "ASR_AUDIOSOCKET_PORT",
            "TCP port for Asterisk AudioSocket connections on HOST (each one call, named by its UUID); "
            "none: no listener",
            optional_port,
        ),
        Setting(
            "tenant",
            "ASR_AUDIOSOCKET_TENANT",
            "the tenant AudioSocket calls belong to (AudioSocket carries no credentials)",
            tenant,
        ),
        Setting(
            "allow",
            "ASR_AUDIOSOCKET_ALLOW",
            "addresses (comma-separated CIDRs) that may connect to the AudioSocket port: AudioSocket "
            "has no credentials, so this list is its only access control",
            networks,
            show=lambda value: ",".join(str(n) for n in value) if isinstance(value, tuple) else str(value),
        ),
    ),
)


class AudioSocketServer:
    """The listener and its connections, each one call."""

    def __init__(self, host: CallHost, options: AudioSocketOptions, bind_host: str) -> None:
        self._host = host
        self._options = options
        self._bind_host = bind_host
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port: int | None = None  # the bound port, once listening

    async def start(self) -> None:
        """Listen, when a port is configured."""
        if self._options.port is None:
            return
        try:
            self._server = await asyncio.start_server(self._connection, self._bind_host, self._options.port)
        except OSError as exc:
            raise StartError(f"ASR_AUDIOSOCKET_PORT {self._options.port}: {exc.strerror or exc}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info(
            "audiosocket listening",
            extra={
                "host": self._bind_host,
                "port": self.port,
                "tenant": self._options.tenant,
                "allow": ",".join(str(n) for n in self._options.allow),
            },
        )

    async def close(self) -> None:
        """Stop listening; hang up the calls still connected (the worker drains)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(asm.hangup())
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _allowed(self, peer: object) -> bool:
        if not isinstance(peer, tuple) or not peer:
            return False
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self._options.allow)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not self._allowed(peer):
            self._host.limits.refuse(
                "audiosocket_not_allowed", str(peer[0]) if isinstance(peer, tuple) else None
            )
            writer.close()
            return
        if self._host.draining:
            writer.write(asm.hangup())
            writer.close()
            return
        self._writers.add(writer)
        call = _Call(self._host, self._options.tenant, reader, writer)
        try:
            await call.run()
        finally:
            call.release()
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _Call:
    """One AudioSocket connection: its UUID, then its messages until the hangup."""

    def __init__(
        self, host: CallHost, tenant: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._host = host
        self._tenant = tenant
        self._reader = reader
        self._writer = writer
        self._messages = host.metrics.telephony_messages
        self._interaction_id: str | None = None
        self._source: CallSource | None = None
        self._fmt: AudioFormat | None = None
        self._complained = False

    async def run(self) -> None:
        try:
            first = await asyncio.wait_for(self._read(), self._host.http.first_message_timeout_s)
        except TimeoutError:
            self._host.limits.refuse("first_message_timeout")
            return
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError) as exc:
            self._refuse(_why(exc))
            return
        if first is None:
            return  # closed before a word
        if not isinstance(first, asm.CallId):
            self._refuse(f"the first message must be the call's UUID (0x01), not {type(first).__name__}")
            return
        try:
            self._interaction_id = check_id(first.interaction_id, "interaction_id")
        except BadRequest as exc:
            self._refuse(exc.message)
            return
        self._messages.labels(PLATFORM, "uuid").inc()
        while True:
            try:
                message = await self._read()
            except ProtocolError as exc:
                if not self._problem(exc.code, exc.message):
                    continue
                return
            except asyncio.IncompleteReadError as exc:
                self._problem("bad_message", _why(exc))
                self._end("a truncated message, then the close")
                return
            except ConnectionError:
                return  # lost, not closed: the call waits its grace period for nothing
            if message is None:
                self._end("close")
                return
            if not await self._take(message):
                return

    def release(self) -> None:
        if self._source is not None:
            self._source.leave()

    # --- reading ---------------------------------------------------------------------------

    async def _read(self) -> asm.AudioSocketMessage | None:
        """The next message; None at a clean end of the stream. A header cut short or a payload
        shorter than its length raises IncompleteReadError; ProtocolError for one the worker
        cannot take (after its payload was read, so the stream stays in step)."""
        try:
            head = await self._reader.readexactly(asm.HEADER_BYTES)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise
        kind, length = asm.header(head)
        payload = await self._reader.readexactly(length) if length else b""
        return asm.message(kind, payload)

    async def _take(self, message: asm.AudioSocketMessage) -> bool:
        """Act on one message; False when the connection is done."""
        if isinstance(message, asm.Audio):
            return await self._audio(message)
        if isinstance(message, asm.Hangup):
            self._messages.labels(PLATFORM, "hangup").inc()
            self._end("hangup")
            return False
        if isinstance(message, asm.Digit):
            self._messages.labels(PLATFORM, "dtmf").inc()
            if self._source is not None:
                self._source.dtmf(message.digit, 0)
            else:
                log.debug("audiosocket dtmf before audio", extra={"interaction_id": self._interaction_id})
            return True
        if isinstance(message, asm.AsteriskError):
            self._messages.labels(PLATFORM, "error").inc()
            self._problem("platform_error", f"Asterisk reported an AudioSocket error (code {message.code})")
            return True
        self._problem("bad_message", f"a second UUID on one connection ({message.interaction_id}); ignored")
        return True

    async def _audio(self, audio: asm.Audio) -> bool:
        if self._source is None:
            return self._join(audio)
        fmt = self._fmt
        assert fmt is not None
        if audio.sample_rate != fmt.sample_rate:
            self._problem(
                "bad_format", f"audio at {audio.sample_rate} Hz in a call at {fmt.sample_rate} Hz; dropped"
            )
            return True
        status = self._source.runner.status
        if status.phase is not Phase.ACTIVE:
            # the call ended without Asterisk saying so (shutdown, a provider that refused it)
            self._send(asm.hangup())
            return False
        self._source.feed(audio.pcm)
        return True

    def _join(self, audio: asm.Audio) -> bool:
        """The call's first audio fixes its format: join it, and feed the audio."""
        interaction_id = self._interaction_id
        assert interaction_id is not None
        fmt = AudioFormat(Encoding.LINEAR16, audio.sample_rate, 1)
        try:
            self._source = self._host.manager.join(CallKey(self._tenant, interaction_id), fmt)
        except SessionRefused as exc:
            log.info(
                "audiosocket refused",
                extra={"interaction_id": interaction_id, "code": exc.code, "reason": exc.message},
            )
            self._send(asm.hangup())
            return False
        self._fmt = fmt
        log.info(
            "audiosocket started",
            extra={
                "interaction_id": interaction_id,
                "tenant": self._tenant,
                "sample_rate": fmt.sample_rate,
                "resumed": self._source.runner.status.resumed,
            },
        )
        self._source.feed(audio.pcm)
        return True

    # --- ends and troubles -------------------------------------------------------------------

    def _end(self, by: str) -> None:
        source = self._source
        if source is None:
            return
        source.leave()
        source.end("end")
        log.info("audiosocket ended", extra={"interaction_id": source.interaction_id, "by": by})

    def _problem(self, code: str, message: str) -> bool:
        """Bad input after the UUID: an `error` event for a call that has begun (its first
        logged), one log line before. True when the connection is done."""
        self._messages.labels(PLATFORM, "invalid").inc()
        source = self._source
        if source is not None:
            source.error(code, message)
        if not self._complained:
            self._complained = True
            log.info(
                "audiosocket sent bad input; the call goes on, more of it is only counted",
                extra={"interaction_id": self._interaction_id, "code": code, "reason": message},
            )
        return False

    def _refuse(self, reason: str) -> None:
        """Bad input before the call is known: one log line, the hangup message, the close."""
        self._messages.labels(PLATFORM, "invalid").inc()
        log.info("audiosocket refused", extra={"reason": reason})
        self._send(asm.hangup())

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._writer.write(data)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError):
        return exc.message
    if isinstance(exc, asyncio.IncompleteReadError):
        expected = exc.expected if exc.expected is not None else "?"
        return f"the connection closed {len(exc.partial)} bytes into a {expected}-byte header or payload"
    return f"the connection failed: {exc!s:.120}"
