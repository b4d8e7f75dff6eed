"""The SIPREC recording server (RFC 7866): SIP on UDP, TCP and TLS, each recorded session one
call of the worker.

An INVITE from an allowed SBC is answered 100 Trying, then 200 OK with an SDP answer that
receives every recordable stream on a port of the pool; the call joins the session manager
as `CallKey(tenant, interaction_id)` in two-channel G.711 (the customer's stream channel 0,
the agent's channel 1) and its RTP becomes the call's audio. A re-INVITE or UPDATE holds,
resumes, adds or drops streams and may bring new metadata; BYE ends the call (reason `end`:
the last finals come before `session_ended`); CANCEL stops an INVITE not yet answered.
Refusals say why in the status (403 not allowed, 488 no G.711, 503 with Retry-After when
full or draining, 422 too short a session timer, 400 what cannot be read) and in one log line.

Answers to INVITEs wait until the messages read together with them are handled (one TCP read,
one UDP datagram), so a CANCEL that arrives with its INVITE stops it before it is answered.
The SIP side sends nothing of the call's events: watchers use SSE or the bus.

Every timer (RTP reordering's wait, the 200 OK's retransmission, session timers, a silent
call's end) is driven by one task of the worker's task group.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from ...core.audio import AudioFormat, Encoding
from ...core.call_options import CallOptions
from ...core.ids import CallKey
from ...core.session import Phase
from ...errors import SessionRefused
from ...runtime.source import CallSource
from ..host import CallHost
from . import body as bodies
from . import metadata as rs
from . import sdp, sip
from .dialog import ACCEPT, ALLOW, SUPPORTED, Dialog, SessionTimer, State, session_timer
from .listeners import Peer, SipDatagrams, SipStream
from .media import CallMedia, Leg, RtpPorts, RtpSocket
from .options import SiprecOptions
from .rtp import RtpReceiver
from .stats import SiprecMetrics

log = logging.getLogger("asr_worker.siprec")

RETRY_AFTER_S: Final = 30
_SANITIZE: Final = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass
class SipCall:
    key: CallKey
    dialog: Dialog
    peer: Peer
    metadata: rs.Metadata
    source: CallSource | None = None
    media: CallMedia | None = None
    plans: list[sdp.Plan] = field(default_factory=list)
    law: Encoding = Encoding.MULAW
    address: str = "127.0.0.1"
    session_id: int = 0
    sdp_version: int = 0
    timer: SessionTimer | None = None  # asked for by the INVITE awaiting its answer


class SiprecServer:
    def __init__(self, host: CallHost, options: SiprecOptions, bind_host: str) -> None:
        self.host = host
        self.options = options
        self.bind_host = bind_host
        self.ports = RtpPorts(bind_host, options.rtp_ports.first, options.rtp_ports.last)
        self.metrics = SiprecMetrics(self, host.metrics)
        self.calls: dict[str, SipCall] = {}
        self.external: dict[CallKey, CallMedia] = {}  # externalMedia calls (external_media.py)
        self.sip_port: int | None = None
        self.tls_port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self.streams: set[SipStream] = set()  # open TCP and TLS connections
        self._to_answer: list[SipCall] = []
        self._refused: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # (Call-ID, branch) -> final
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # --- life ------------------------------------------------------------------------------

    async def start(self, tg: asyncio.TaskGroup) -> None:
        """Listen (when ASR_SIPREC_PORT is set) and start the timers' task in `tg`."""
        self._loop = asyncio.get_running_loop()
        self._task = tg.create_task(self._timers(), name="siprec:timers")
        if self.options.port is None:
            return
        loop = self._loop
        port = self.options.port
        for attempt in range(20):  # port 0: UDP picks one, and TCP must get the same number
            transport, _ = await loop.create_datagram_endpoint(
                lambda: SipDatagrams(self), local_addr=(self.bind_host, port)
            )
            udp_port = int(transport.get_extra_info("sockname")[1])
            try:
                server = await loop.create_server(lambda: SipStream(self, "TCP"), self.bind_host, udp_port)
            except OSError:
                transport.close()
                if self.options.port != 0 or attempt == 19:
                    raise
                continue
            self._udp = transport
            self._servers.append(server)
            self.sip_port = udp_port
            break
        if self.options.tls_port is not None and self.options.tls_cert and self.options.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.options.tls_cert, self.options.tls_key)
            tls = await loop.create_server(
                lambda: SipStream(self, "TLS"), self.bind_host, self.options.tls_port, ssl=context
            )
            self._servers.append(tls)
            self.tls_port = int(tls.sockets[0].getsockname()[1])
        log.info(
            "siprec listening",
            extra={
                "host": self.bind_host,
                "port": self.sip_port,
                "tls_port": self.tls_port,
                "rtp_ports": str(self.options.rtp_ports),
            },
        )

    def close(self) -> None:
        """Every call hung up (a BYE to its SBC), the sockets closed."""
        for call in list(self.calls.values()):
            self._hang_up(call, "shutdown")
        for key in list(self.external):
            self.end_external(key, "shutdown")
        if self._udp is not None:
            self._udp.close()
        for stream in list(self.streams):
            stream.close()
        for server in self._servers:
            server.close()
        if self._task is not None:
            self._task.cancel()

    def wake(self) -> None:
        """A call began: the timers' task runs again."""
        self._wake.set()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # --- messages --------------------------------------------------------------------------

    def receive(self, messages: list[bytes], peer: Peer) -> None:
        """One batch of messages read together from one peer; INVITEs answered after it."""
        for data in messages:
            try:
                message = sip.parse(data)
            except sip.SipError as exc:
                self.metrics.messages.labels("invalid").inc()
                self._bad_message(data, exc, peer)
                continue
            if isinstance(message, sip.Response):
                self.metrics.messages.labels("response").inc()
                continue  # to a BYE or UPDATE of ours: nothing waits on it
            self.metrics.messages.labels(message.method if message.method in _METHODS else "other").inc()
            try:
                self._request(message, peer)
            except sip.SipError as exc:
                self._refuse(message, peer, exc.status, exc.reason, exc.detail)
        pending, self._to_answer = self._to_answer, []
        for call in pending:
            self._answer(call)

    def _bad_message(self, data: bytes, exc: sip.SipError, peer: Peer) -> None:
        log.info(
            "siprec message refused",
            extra={"peer": peer.address[0], "status": exc.status, "reason": exc.detail},
        )
        if data.split(b" ", 1)[0] in (b"ACK", b"SIP/2.0"):
            return
        try:  # answer what can be answered: enough of the message to copy Via, From, To...
            head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            request = sip.parse(head)
        except sip.SipError:
            return
        if isinstance(request, sip.Request):
            peer.send(sip.response(request, exc.status, exc.reason, to_tag=_tag()))

    def _request(self, request: sip.Request, peer: Peer) -> None:
        call = self.calls.get(request.call_id)
        if call is not None and call.dialog.matches(request):
            self._in_dialog(call, request, peer)
            return
        if request.method == "ACK":
            self._refused.pop((request.call_id, request.branch), None)
            return
        if not self.options.allowed(peer.address[0]):
            self._refuse(
                request, peer, 403, "Forbidden", "the address is not in ASR_SIPREC_ALLOW", "not_allowed"
            )
            return
        if request.method == "OPTIONS":
            peer.send(self._options(request))
        elif request.method == "INVITE":
            earlier = self._refused.get((request.call_id, request.branch))
            if earlier is not None:
                peer.send(earlier)
                return
            self._invite(request, peer)
        elif request.method == "CANCEL" or request.method in ("BYE", "UPDATE", "INFO"):
            peer.send(sip.response(request, 481, "Call/Transaction Does Not Exist", to_tag=_tag()))
        else:
            peer.send(
                sip.response(request, 405, "Method Not Allowed", to_tag=_tag(), headers=(("Allow", ALLOW),))
            )

    def _options(self, request: sip.Request) -> bytes:
        headers = (("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED))
        return sip.response(request, 200, "OK", to_tag=_tag(), headers=headers)

    def _refuse(
        self,
        request: sip.Request,
        peer: Peer,
        status: int,
        reason: str,
        detail: str,
        metric: str | None = None,
    ) -> None:
        """A request refused outside a dialog: the status, one log line, a metric."""
        headers: tuple[tuple[str, str], ...] = ()
        if status == 503:
            headers = (("Retry-After", str(RETRY_AFTER_S)),)
        elif status == 422:
            headers = (("Min-SE", str(self.options.min_session_expires_s)),)
        elif status == 488:
            headers = (("Warning", '304 asr-worker "no G.711 audio stream offered"'),)
        data = sip.response(request, status, reason, to_tag=_tag(), headers=headers)
        if request.method == "INVITE":
            self.metrics.refused.labels(metric or str(status)).inc()
            self._refused[(request.call_id, request.branch)] = data
            while len(self._refused) > 1024:
                self._refused.popitem(last=False)
            log.info(
                "siprec invite refused",
                extra={
                    "peer": peer.address[0],
                    "call_id": request.call_id[:80],
                    "status": status,
                    "reason": detail,
                },
            )
        peer.send(data)

    # --- a new call ------------------------------------------------------------------------

    def _invite(self, request: sip.Request, peer: Peer) -> None:
        peer.send(sip.response(request, 100, "Trying"))
        if self.host.draining:
            self._refuse(request, peer, 503, "Service Unavailable", "the worker is draining", "draining")
            return
        if len(self.calls) >= self.options.max_calls or self.host.manager.at_capacity:
            self._refuse(request, peer, 503, "Service Unavailable", "at capacity", "capacity")
            return
        timer = session_timer(request, self.options.min_session_expires_s)
        parts = bodies.split(request.headers.get("Content-Type"), request.body)
        if parts.sdp is None:
            self._refuse(request, peer, 488, "Not Acceptable Here", "the INVITE has no SDP offer", "no_offer")
            return
        offer = _offer(parts.sdp)
        metadata = rs.Metadata()
        if parts.metadata is not None:
            _update_metadata(metadata, parts.metadata)
        plans = sdp.plan(offer)
        law = sdp.call_law(plans)
        if law is None:
            self._refuse(
                request, peer, 488, "Not Acceptable Here", "no stream offers G.711 (PCMU or PCMA)", "codec"
            )
            return
        plans, channels = self._channels(plans, metadata)
        key = CallKey(self.options.tenant_of(peer.address[0]), self._interaction_id(request, metadata))
        if any(c.key == key for c in self.calls.values()):
            self._refuse(
                request,
                peer,
                486,
                "Busy Here",
                f"call {key.interaction_id} is being recorded already",
                "busy",
            )
            return
        sockets = self.ports.open(sum(1 for p in plans if p.recorded))
        if sockets is None:
            self._refuse(request, peer, 503, "Service Unavailable", "no free RTP ports", "ports")
            return
        local_ip = peer.local[0]
        transport = "" if peer.transport == "UDP" else f";transport={peer.transport.lower()}"
        dialog = Dialog(
            request,
            _tag(),
            f"sip:srs@{_host_part(local_ip)}:{peer.local[1]}{transport}",
            self.now(),
            via=f"SIP/2.0/{peer.transport} {_host_part(local_ip)}:{peer.local[1]}",
            reliable=peer.reliable,
            min_se_s=self.options.min_session_expires_s,
        )
        call = SipCall(key, dialog, peer, metadata, law=law, timer=timer)
        call.address = self.options.media_address or _advertised(local_ip, request.uri)
        call.session_id = secrets.randbits(48)
        # the call joins the worker when it is answered: an INVITE cancelled first never starts one
        call.media = CallMedia(
            None, AudioFormat(law, 8000, 2), self.now(), max_lag_ms=self.host.manager.config.max_buffer_ms
        )
        recorded = [p for p in plans if p.recorded]
        for plan, sock in zip(recorded, sockets, strict=True):
            self._add_leg(call, plan, sock, channels.get(plan.media.index), peer)
        call.plans = plans
        self.calls[request.call_id] = call
        self._to_answer.append(call)
        self.wake()

    def _answer(self, call: SipCall) -> None:
        if call.dialog.state is State.ENDED or call.dialog.awaiting_answer is None:
            return
        request, key, peer = call.dialog.awaiting_answer, call.key, call.peer
        assert call.media is not None
        try:
            source = self.host.manager.join(key, call.media.fmt, options=CallOptions.from_parameters({}))
        except SessionRefused as exc:
            retry = exc.code in _RETRY_LATER
            status, reason = (503, "Service Unavailable") if retry else (486, "Busy Here")
            headers = (("Retry-After", str(RETRY_AFTER_S)),) if retry else ()
            peer.send(call.dialog.refuse(status, reason, headers))
            self.metrics.refused.labels(exc.code).inc()
            log.info(
                "siprec invite refused",
                extra={
                    "peer": peer.address[0],
                    "call_id": request.call_id[:80],
                    "status": status,
                    "reason": exc.message,
                },
            )
            self._finish(call, "refused", end=False)
            return
        call.source = call.media.source = source
        recorded = [p for p in call.plans if p.recorded]
        channels = {leg.index: leg.channel for leg in call.media.legs.values()}
        law = call.law
        log.info(
            "siprec call started",
            extra={
                "interaction_id": key.interaction_id,
                "tenant_id": key.tenant,
                "peer": peer.address[0],
                "transport": peer.transport,
                "call_id": request.call_id[:80],
                "streams": len(recorded),
                "encoding": str(law),
                "roles": ",".join(
                    f"{p.media.label}={rs.role_of(channels.get(p.media.index) or 0)}" for p in recorded
                ),
            },
        )
        ports = {leg.index: leg.socket.port for leg in call.media.legs.values()}
        call.sdp_version += 1
        answer = sdp.answer(call.plans, ports, call.address, call.session_id, call.sdp_version)
        timer, call.timer = call.timer, None
        call.peer.send(call.dialog.answer(answer, self.now(), timer))

    def _channels(
        self, plans: list[sdp.Plan], metadata: rs.Metadata
    ) -> tuple[list[sdp.Plan], dict[int, int]]:
        """Every recorded stream's channel, by m-line; streams beyond the two are answered
        port 0."""
        recorded = [p for p in plans if p.recorded]
        found = rs.channels([p.media.label for p in recorded], metadata, self.options.roles)
        channels = {p.media.index: c for p, c in zip(recorded, found, strict=True) if c is not None}
        kept = [
            p if (not p.recorded or p.media.index in channels) else sdp.Plan(p.media, None, None, None)
            for p in plans
        ]
        return kept, channels

    def _add_leg(
        self, call: SipCall, plan: sdp.Plan, sock: RtpSocket, channel: int | None, peer: Peer
    ) -> None:
        assert call.media is not None and plan.codec is not None
        payloads = {plan.codec.payload_type: sdp.G711[plan.codec.name]}
        receiver = RtpReceiver(
            law=call.law,
            payloads=payloads,
            telephone_event=plan.telephone_event,
            comfort_noise=plan.comfort_noise,
            jitter_ms=self.options.jitter_ms,
        )
        remote = plan.media.address if plan.media.address not in (None, "0.0.0.0", "::") else peer.address[0]
        leg = Leg(
            plan.media.index,
            plan.media.label,
            sock,
            receiver,
            remote,
            channel,
            sending=plan.sending,
        )
        call.media.add(leg, self.now)

    def _interaction_id(self, request: sip.Request, metadata: rs.Metadata) -> str:
        name = self.options.id_header
        if name:
            value = request.headers.get(name)
            if value:
                found = _SANITIZE.sub("-", sip.uri_of(value.split(";", 1)[0]).strip().strip('"<>'))[
                    :128
                ].strip("-")
                if found:
                    return found
            log.warning(
                "siprec call id header missing",
                extra={"header": name, "call_id": request.call_id[:80], "using": "metadata or Call-ID"},
            )
        from_metadata = metadata.interaction_id()
        if from_metadata:
            return from_metadata
        return _SANITIZE.sub("-", request.call_id)[:128] or "siprec"

    # --- requests in a dialog --------------------------------------------------------------

    def _in_dialog(self, call: SipCall, request: sip.Request, peer: Peer) -> None:
        dialog = call.dialog
        earlier = dialog.retransmission(request)
        if earlier is not None:
            peer.send(earlier)
            return
        if request.to_tag is None and request.method == "INVITE":
            return  # the first INVITE again, before its answer: the 100 went out already
        method = request.method
        if method == "ACK":
            dialog.ack(request, self.now())
            return
        if method == "CANCEL":
            for data in dialog.cancel(request):
                peer.send(data)
            if dialog.state is State.ENDED:
                self._finish(call, "cancel", end=True)
            return
        if dialog.stale(request):
            peer.send(dialog.respond(request, 500, "Server Internal Error", headers=(("Retry-After", "1"),)))
            return
        if method == "BYE":
            peer.send(dialog.bye(request))
            self._finish(call, "end", end=True)
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(call, request, peer)
        elif method == "INFO":
            self._info(call, request)
            peer.send(dialog.respond(request, 200, "OK"))
        elif method == "OPTIONS":
            peer.send(dialog.respond(request, 200, "OK", headers=(("Allow", ALLOW), ("Accept", ACCEPT))))
        else:
            peer.send(dialog.respond(request, 405, "Method Not Allowed", headers=(("Allow", ALLOW),)))

    def _reoffer(self, call: SipCall, request: sip.Request, peer: Peer) -> None:
        """A re-INVITE or UPDATE: hold, resume, streams added or dropped, new metadata, or
        (an UPDATE without a body) a session refresh."""
        dialog = call.dialog
        try:
            timer = session_timer(request, self.options.min_session_expires_s)
            parts = bodies.split(request.headers.get("Content-Type"), request.body)
            offer = _offer(parts.sdp) if parts.sdp is not None else None
            if parts.metadata is not None:
                _update_metadata(call.metadata, parts.metadata)
        except sip.SipError as exc:
            peer.send(dialog.respond(request, exc.status, exc.reason))
            return
        timer = timer or dialog.timer
        if offer is None:
            if request.method == "UPDATE":
                dialog.set_timer(timer, self.now())
                self._reassign(call)
                peer.send(dialog.respond(request, 200, "OK", headers=dialog.session_headers()))
                return
            offer = sdp.Offer(tuple(p.media for p in call.plans))  # offerless re-INVITE: ours again
        plans, channels = self._channels(sdp.plan(offer, keep=call.law), call.metadata)
        if not any(p.recorded for p in plans) and any(p.sending for p in plans):
            peer.send(dialog.respond(request, 488, "Not Acceptable Here"))
            return
        plans = self._apply(call, plans, channels, peer)
        call.sdp_version += 1
        ports = {leg.index: leg.socket.port for leg in (call.media.legs.values() if call.media else ())}
        answer = sdp.answer(plans, ports, call.address, call.session_id, call.sdp_version)
        if request.method == "INVITE":
            dialog.offer(request)
            peer.send(dialog.answer(answer, self.now(), timer))
        else:
            dialog.set_timer(timer, self.now())
            peer.send(
                dialog.respond(
                    request, 200, "OK", headers=dialog.session_headers(), body=answer, content_type=bodies.SDP
                )
            )
        log.info(
            "siprec call updated",
            extra={
                "interaction_id": call.key.interaction_id,
                "method": request.method,
                "held": all(not p.sending for p in plans if p.recorded),
                "streams": sum(1 for p in plans if p.recorded),
            },
        )

    def _apply(
        self, call: SipCall, plans: list[sdp.Plan], channels: dict[int, int], peer: Peer
    ) -> list[sdp.Plan]:
        """Media changes: streams kept (their direction, their channel), dropped, added; the
        plans as answered (a new stream without a free port is answered port 0)."""
        media = call.media
        assert media is not None
        wanted = {p.media.index: p for p in plans if p.recorded}
        for index in [i for i in media.legs if i not in wanted]:
            leg = media.remove(index)
            if leg is not None:
                self.ports.release(leg.socket)
        new = [p for i, p in wanted.items() if i not in media.legs]
        sockets = self.ports.open(len(new)) if new else []
        if sockets is None:  # no ports for the new streams: answer them port 0
            sockets = []
            for p in new:
                wanted.pop(p.media.index)
            plans = [
                p if p.media.index in wanted or not p.recorded else sdp.Plan(p.media, None, None, None)
                for p in plans
            ]
            new = []
        for plan, sock in zip(new, sockets, strict=True):
            self._add_leg(call, plan, sock, channels.get(plan.media.index), peer)
        for index, plan in wanted.items():
            leg = media.legs[index]
            media.set_sending(leg, plan.sending, self.now())
            leg.label = plan.media.label
            if plan.media.address not in (None, "0.0.0.0", "::") and plan.media.address != leg.remote_ip:
                leg.remote_ip, leg.latched = plan.media.address, None
        for leg in media.legs.values():
            leg.channel = channels.get(leg.index)
        call.plans = plans
        return plans

    def _reassign(self, call: SipCall) -> None:
        """New metadata alone: the channels follow it."""
        if call.media is None:
            return
        recorded = [p for p in call.plans if p.recorded]
        found = rs.channels([p.media.label for p in recorded], call.metadata, self.options.roles)
        for plan, channel in zip(recorded, found, strict=True):
            leg = call.media.legs.get(plan.media.index)
            if leg is not None:
                leg.channel = channel

    def _info(self, call: SipCall, request: sip.Request) -> None:
        """SIP INFO with `application/dtmf-relay`: a key press on the SBC's side."""
        kind = bodies.media_type(request.headers.get("Content-Type") or "")[0]
        if kind != "application/dtmf-relay" or call.source is None:
            return
        for line in request.body.decode("utf-8", "replace").splitlines():
            name, _, value = line.partition("=")
            digit = value.strip().upper()
            if name.strip().lower() == "signal" and len(digit) == 1 and digit in "0123456789*#ABCD":
                call.source.dtmf(digit, 0)

    # --- ends ------------------------------------------------------------------------------

    def _hang_up(self, call: SipCall, reason: str) -> None:
        data = call.dialog.hang_up(reason)
        if data is not None:
            call.peer.send(data)
        self._finish(call, reason, end=True)

    def _finish(self, call: SipCall, reason: str, *, end: bool) -> None:
        if self.calls.get(call.dialog.call_id) is not call:
            return
        del self.calls[call.dialog.call_id]
        media, source = call.media, call.source
        if media is not None:
            legs = list(media.legs.values())
            media.finish()
            self.metrics.ended(media)
            for leg in legs:
                self.ports.release(leg.socket)
        if source is not None:
            if end and source.runner.status.phase is Phase.ACTIVE:
                source.end(reason)
            source.leave()
        if source is None:
            return
        log.info(
            "siprec call ended",
            extra={"interaction_id": call.key.interaction_id, "tenant_id": call.key.tenant, "reason": reason},
        )

    # --- time ------------------------------------------------------------------------------

    async def _timers(self) -> None:
        while True:
            if not self.calls and not self.external:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(0.02)
            self.tick(self.now())

    def tick(self, now: float) -> None:
        for call in list(self.calls.values()):
            media = call.media
            if media is not None:
                media.poll(now)
                self.metrics.account(media)
            for data in call.dialog.poll(now):
                call.peer.send(data)
            if call.dialog.state is State.ENDED:
                self._finish(call, call.dialog.end_reason or "end", end=True)
            elif call.source is not None and call.source.runner.status.phase is not Phase.ACTIVE:
                self._hang_up(call, call.source.runner.status.end_reason or "ended")
            elif media is not None and self._silent(media, now):
                log.info("siprec call silent", extra={"interaction_id": call.key.interaction_id})
                self._hang_up(call, "rtp_timeout")
        for key, media in list(self.external.items()):
            media.poll(now)
            self.metrics.account(media)
            if media.source is None or media.source.runner.status.phase is not Phase.ACTIVE:
                self.end_external(key, "ended")
            elif self._silent(media, now):
                log.info("externalMedia call silent", extra={"interaction_id": key.interaction_id})
                self.end_external(key, "rtp_timeout")

    def _silent(self, media: CallMedia, now: float) -> bool:
        if not any(leg.sending for leg in media.legs.values()):
            return False  # on hold: the SBC sends nothing, rightly
        since = media.last_packet_at if media.last_packet_at is not None else media.started_at
        return now - since > self.options.rtp_timeout_s

    # --- externalMedia (external_media.py asks) --------------------------------------------

    def end_external(self, key: CallKey, reason: str) -> bool:
        media = self.external.pop(key, None)
        if media is None:
            return False
        legs = list(media.legs.values())
        media.finish()
        self.metrics.ended(media)
        for leg in legs:
            self.ports.release(leg.socket)
        source = media.source
        if source is not None:
            if source.runner.status.phase is Phase.ACTIVE:
                source.end(reason)
            source.leave()
        log.info("externalMedia call ended", extra={"interaction_id": key.interaction_id, "reason": reason})
        return True


_METHODS: Final = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO"})
_RETRY_LATER: Final = frozenset({"capacity", "overloaded", "draining"})


def _offer(data: bytes) -> sdp.Offer:
    try:
        return sdp.parse(data)
    except sdp.SdpError as exc:
        raise sip.SipError(
            exc.status, "Bad SDP" if exc.status == 400 else "Not Acceptable Here", exc.detail
        ) from None


def _update_metadata(metadata: rs.Metadata, document: bytes) -> None:
    try:
        metadata.update(document)
    except rs.MetadataError as exc:
        raise sip.SipError(400, "Bad Metadata", str(exc)) from None


def _tag() -> str:
    return secrets.token_hex(6)


def _host_part(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _advertised(local_ip: str, uri: str) -> str:
    """Where the SBC should send RTP: the local address the INVITE came in on, else the host
    it addressed (a server listening on every address knows no better)."""
    if local_ip not in ("0.0.0.0", "::", ""):
        return local_ip
    host = uri.split("@", 1)[-1].split(";", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host or "127.0.0.1"
