"""`--protocol siprec`: a SIPREC recorded session (RFC 7866) into the worker's recording server,
as an SBC forks a call to one, over UDP to the --url's host at `--sip-port` (the worker's
ASR_SIPREC_PORT): an INVITE whose multipart body holds an SDP offer of two labelled
`a=sendonly` PCMU streams (label 1 the customer's, 2 the agent's) and RFC 7865 metadata naming
the two participants and the stream each sends, the call's id as the metadata's session id
(and in the header `--sip-id-header` names, for a worker with ASR_SIPREC_ID_HEADER); 100
Trying and 200 OK, ACK; RTP at real time, a 20 ms packet at a time on each stream the answer
took (a mono file is the customer's stream, the agent's silence; a two-channel file's channels
0 and 1 are the customer's and the agent's); BYE at the end.

The SIP side has no key: the worker takes INVITEs from the addresses in ASR_SIPREC_ALLOW
(loopback by default) and gives the call the tenant ASR_SIPREC_TENANTS gives this machine's
address (`--tenant-id` to watch it in another than the key's). It sends no events back: they
are read over SSE on the --url's port. The messages are written by the recording server's own
modules (`transports/siprec`: SIP, SDP, the multipart body, the metadata), which read them
there.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...core.ids import check_id
from ...errors import BadRequest
from ...transports.siprec import body, metadata, rtp, sdp, sip
from ...transports.siprec.dialog import TIMER_H_S, ClientDialog, retransmissions
from .base import CallRefused, CallSpec, Leg, Received, RouteProtocol

FRAME_SAMPLES: Final = 160  # 20 ms of 8 kHz G.711, a packet
SILENCE: Final = b"\xff"  # mu-law's
# Each stream of the offer, in its order: its label, its sender's name and the user of its AoR.
# The customer's first, as SBCs order an inbound call's legs (the worker's default roles).
STREAMS: Final = (("1", "Customer", "customer"), ("2", "Agent", "agent"))
ALLOW: Final = "INVITE, ACK, BYE, CANCEL, OPTIONS"

Address = tuple[str, int]


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SipEndpoint(asyncio.DatagramProtocol):
    """The client's SIP socket, connected to the worker's SIP port: a request sent again (over
    UDP) until it is answered, each answer matched to its request by CSeq, and what the server
    sends in the dialog (its BYE, an OPTIONS, its 2xx again) answered at once."""

    def __init__(self, where: str) -> None:
        self.where = where  # HOST:PORT, for what is said about it
        self.transport: asyncio.DatagramTransport | None = None
        self.dialog: ClientDialog | None = None
        self.waiting: dict[tuple[int, str], asyncio.Future[sip.Response]] = {}  # one per request
        self.proceeding: set[tuple[int, str]] = set()  # a provisional answer came: no more resends
        self.over = asyncio.Event()  # the session ended: a BYE either way, or let go

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            message = sip.parse(data)
        except sip.SipError:
            return  # not SIP the server would send: nothing to answer
        if isinstance(message, sip.Response):
            self._response(message)
        else:
            self._request(message)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error (port unreachable): nothing listens on the SIP port."""
        refused = ConnectionRefusedError(
            f"nothing answers SIP at {self.where} (the worker's ASR_SIPREC_PORT, --sip-port here)"
        )
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(refused)

    async def transact(self, data: bytes, method: str, cseq: int) -> sip.Response:
        """The request's final answer. Raises TimeoutError when none comes in 64*T1 (32 s),
        ConnectionRefusedError when nothing listens."""
        key = (cseq, method)
        future: asyncio.Future[sip.Response] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        try:
            for wait_s in retransmissions(method):
                if key not in self.proceeding:
                    self.send(data)
                done, _ = await asyncio.wait({future}, timeout=wait_s)
                if done:
                    return future.result()
        finally:
            self.waiting.pop(key, None)
            self.proceeding.discard(key)
        raise TimeoutError(f"no answer to the {method} from {self.where} in {TIMER_H_S:.0f} s")

    def _response(self, response: sip.Response) -> None:
        key = (response.cseq.number, response.cseq.method)
        if response.status < 200:
            if key in self.waiting:
                self.proceeding.add(key)
            return
        future = self.waiting.get(key)
        if future is not None and not future.done():
            future.set_result(response)
        elif response.cseq.method == "INVITE" and response.status < 300 and self.dialog is not None:
            ack = self.dialog.ack  # the server sent its 2xx again: our ACK was lost
            if ack is not None:
                self.send(ack)

    def _request(self, request: sip.Request) -> None:
        dialog = self.dialog
        if dialog is None or request.call_id != dialog.call_id:
            if request.method != "ACK":
                tag = secrets.token_hex(6)
                self.send(sip.response(request, 481, "Call/Transaction Does Not Exist", to_tag=tag))
            return
        if request.method == "BYE":
            self.send(dialog.respond(request, 200, "OK"))
            self.over.set()
        elif request.method == "OPTIONS":
            self.send(dialog.respond(request, 200, "OK", (("Allow", ALLOW),)))
        elif request.method != "ACK":
            self.send(dialog.respond(request, 405, "Method Not Allowed", (("Allow", ALLOW),)))


@dataclass
class RtpStream:
    """One stream the client sends: from its own port, to where the answer said (None: the
    server did not take the stream), a 20 ms packet at a time, its sequence and clock running
    on from random starts (RFC 3550)."""

    transport: asyncio.DatagramTransport
    remote: Address | None
    payload_type: int = 0
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    sequence: int = field(default_factory=lambda: secrets.randbits(16))
    timestamp: int = field(default_factory=lambda: secrets.randbits(32))
    packets: int = 0

    def send(self, audio: bytes) -> None:
        for i in range(0, len(audio), FRAME_SAMPLES):
            payload = audio[i : i + FRAME_SAMPLES]
            if self.remote is not None:
                packet = rtp.build(
                    self.payload_type, self.sequence, self.timestamp, self.ssrc, payload, self.packets == 0
                )
                self.transport.sendto(packet, self.remote)
            self.packets += 1
            self.sequence = (self.sequence + 1) & 0xFFFF
            self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF


class SiprecLeg(Leg):
    def __init__(
        self, endpoint: SipEndpoint, dialog: ClientDialog, streams: list[RtpStream], channels: int
    ) -> None:
        self.endpoint = endpoint
        self.dialog = dialog
        self.streams = streams
        self.channels = channels
        self.ending = False  # our BYE went

    @property
    def closed(self) -> bool:
        return self.ending or self.endpoint.over.is_set()

    async def send_audio(self, chunk: bytes) -> None:
        """A mono chunk is the customer's, the agent's stream silence of its length; a
        two-channel chunk's channels are the two streams."""
        for channel, stream in enumerate(self.streams):
            if self.channels == 2:
                stream.send(chunk[channel::2])
            else:
                stream.send(chunk if channel == 0 else SILENCE * len(chunk))

    async def end(self) -> None:
        """BYE, and its answer: the worker then ends the call (its last finals, then
        `session_ended`, over SSE)."""
        if self.closed:
            return
        self.ending = True
        try:
            await self.endpoint.transact(self.dialog.bye(), "BYE", self.dialog.cseq)
        finally:
            self.endpoint.over.set()

    async def received(self) -> AsyncIterator[Received]:
        """Nothing: the SIP side carries no events. Returns when the session is over."""
        await self.endpoint.over.wait()
        nothing: tuple[Received, ...] = ()
        for received in nothing:
            yield received

    async def close(self) -> None:
        """Let go; a session still up is ended with a BYE first (sent once: the worker would
        otherwise end it only when its RTP stops for ASR_SIPREC_RTP_TIMEOUT_S)."""
        if not self.closed:
            self.ending = True
            self.endpoint.send(self.dialog.bye())
        self.endpoint.over.set()
        _close(self.endpoint, [stream.transport for stream in self.streams])


def _close(endpoint: SipEndpoint, transports: list[asyncio.DatagramTransport]) -> None:
    for transport in transports:
        transport.close()
    if endpoint.transport is not None:
        endpoint.transport.close()


def _refusal(response: sip.Response, local_ip: str) -> str:
    """What the recording server's refusal means, and what to do about it."""
    said = f"the recording server answered {response.status} {response.reason}"
    if response.status == 403:
        return f"{said}: this machine's address {local_ip} must be in the worker's ASR_SIPREC_ALLOW"
    if response.status == 486:
        return f"{said}: a recorded session with this interaction id is running already"
    if response.status == 503:
        retry = response.headers.get("Retry-After")
        return f"{said}: the worker is full or draining" + (f" (retry after {retry} s)" if retry else "")
    warning = response.headers.get("Warning")
    return f"{said} ({warning})" if warning else said


def _answered_streams(
    response: sip.Response, transports: list[asyncio.DatagramTransport], host: str
) -> list[RtpStream]:
    """Each offered stream, to be sent where the SDP answer says (in the offer's order), or
    nowhere where it answered port 0. CallRefused for an answer without SDP, or that takes no
    stream."""
    parts = body.split(response.headers.get("Content-Type"), response.body)
    if parts.sdp is None:
        raise CallRefused("the recording server's 200 OK carries no SDP answer")
    try:
        answer = sdp.parse(parts.sdp)
    except sdp.SdpError as exc:
        raise CallRefused(f"the recording server's SDP answer cannot be read: {exc.detail}") from None
    streams: list[RtpStream] = []
    for index, transport in enumerate(transports):
        media = answer.media[index] if index < len(answer.media) else None
        codec = media.codec("PCMU") if media is not None else None
        remote: Address | None = None
        if media is not None and media.port != 0 and codec is not None:
            address = media.address if media.address not in (None, "0.0.0.0", "::") else host
            remote = (address or host, media.port)
        streams.append(RtpStream(transport, remote, codec.payload_type if codec is not None else 0))
    if all(stream.remote is None for stream in streams):
        raise CallRefused("the recording server took none of the streams (every one answered port 0)")
    return streams


class Siprec(RouteProtocol):
    name: ClassVar[str] = "siprec"
    path: ClassVar[str] = ""  # SIP to --sip-port, not a path of the worker's HTTP port
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"  # the SIP side takes none: this one watches
    key_hint: ClassVar[str] = "no key for SIP: this machine's address in the worker's ASR_SIPREC_ALLOW"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.MULAW, 8000, min(fmt.channels, 2))

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        _check_id(call)
        host, port = call.host, call.sip.port
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(f"{_host_part(host)}:{port}")
        endpoint.transport, _ = await loop.create_datagram_endpoint(
            lambda: endpoint, remote_addr=(host, port)
        )
        transports: list[asyncio.DatagramTransport] = []
        try:
            name = endpoint.transport.get_extra_info("sockname")
            local_ip, local_port = str(name[0]), int(name[1])
            for _ in STREAMS:
                transport, _protocol = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=(local_ip, 0)
                )
                transports.append(transport)
            me = f"{_host_part(local_ip)}:{local_port}"
            dialog = ClientDialog(
                call_id=f"{uuid.uuid4()}@{_host_part(local_ip)}",
                local_tag=secrets.token_hex(6),
                local_uri=f"<sip:src@{me}>",
                remote_uri=f"<sip:srs@{endpoint.where}>",
                contact=f"sip:src@{me}",
                via=f"SIP/2.0/UDP {me}",
            )
            endpoint.dialog = dialog
            content_type, payload = _body(call.interaction_id, local_ip, transports, me)
            invite = dialog.invite(_headers(call), payload, content_type)
            response = await endpoint.transact(invite, "INVITE", dialog.invite_cseq)
            if response.status >= 300:
                endpoint.send(dialog.refused(response))
                raise CallRefused(_refusal(response, local_ip))
            endpoint.send(dialog.answered(response))
            try:
                streams = _answered_streams(response, transports, host)
            except CallRefused:
                endpoint.send(dialog.bye())
                raise
        except BaseException:
            _close(endpoint, transports)
            raise
        return SiprecLeg(endpoint, dialog, streams, call.fmt.channels)


def _check_id(call: CallSpec) -> None:
    """The call's id must be one the worker reads back from the metadata as it is (or from
    the header that carries it): else the call would go by another, and its events never come."""
    try:
        check_id(call.interaction_id, "the call's id")
    except BadRequest as exc:
        raise CallRefused(exc.message) from None
    read_back = metadata.interaction_id_of(metadata.session_id_of(call.interaction_id))
    if read_back != call.interaction_id and not call.sip.id_header:
        raise CallRefused(
            f"the worker reads the id {call.interaction_id!r} in the metadata as {read_back!r}: "
            "carry it in a header instead (--sip-id-header, with the worker's ASR_SIPREC_ID_HEADER)"
        )


def _headers(call: CallSpec) -> tuple[tuple[str, str], ...]:
    headers = [("Require", "siprec"), ("Allow", ALLOW), ("Accept", "application/sdp")]
    if call.sip.id_header:
        headers.append((call.sip.id_header, call.interaction_id))
    return tuple(headers)


def _body(
    interaction_id: str, local_ip: str, transports: list[asyncio.DatagramTransport], me: str
) -> tuple[str, bytes]:
    """The INVITE's multipart body's Content-Type, and the body: the offer and the metadata."""
    ports = [int(t.get_extra_info("sockname")[1]) for t in transports]
    labelled = [(port, label) for port, (label, _, _) in zip(ports, STREAMS, strict=True)]
    offer = sdp.offer(local_ip, labelled, secrets.randbits(32))
    session_id = metadata.session_id_of(interaction_id)
    sent = [
        metadata.SentStream(
            metadata.encoded_id(uuid.uuid4()),
            label,
            metadata.Participant(metadata.encoded_id(uuid.uuid4()), name, f"sip:{user}@{me}"),
        )
        for label, name, user in STREAMS
    ]
    return body.multipart(offer, metadata.document(session_id, sent), f"asr-worker-{secrets.token_hex(8)}")


PROTOCOL: Final = Siprec()
