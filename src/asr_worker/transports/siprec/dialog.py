"""One recording session's SIP dialog (RFC 3261, RFC 4028): its state, its transactions'
retransmissions, its session timer. Pure: requests and the time in, bytes to send and the
call's end out; the server does the I/O and the media.

    PROCEEDING --answer--> ANSWERED --ACK--> CONFIRMED --BYE/timer--> ENDED
        \\--CANCEL (487)--> ENDED     \\--no ACK in 32 s--> ENDED

Over UDP the 200 OK of an INVITE is sent again (500 ms, doubling to 4 s) until its ACK
arrives, and the last response of each transaction is sent again when its request is; over
TCP neither, as the transport is reliable. With a session timer the offerer (the SBC)
refreshes the session with a re-INVITE or UPDATE; a session not refreshed in time ends, and
the server says so with a BYE.

`ClientDialog` is the other side, the recording client's (an SBC's; what `asr-worker stream
--protocol siprec` speaks): its INVITE, the ACK of the answer, its BYE, and `retransmissions`,
the waits between sending a request again over UDP.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from . import sip
from .sip import Request, Response

T1_S: Final = 0.5
T2_S: Final = 4.0
TIMER_H_S: Final = 64 * T1_S  # how long an answer waits for its ACK
ALLOW: Final = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
ACCEPT: Final = "application/sdp, application/rs-metadata+xml, multipart/mixed"
SUPPORTED: Final = "timer, siprec"


class State(enum.Enum):
    PROCEEDING = "proceeding"
    ANSWERED = "answered"  # 2xx sent, its ACK not yet here
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass(frozen=True)
class SessionTimer:
    interval_s: int
    refresher: str  # "uac": the SBC refreshes; "uas": we do


def session_timer(request: Request, min_se_s: int) -> SessionTimer | None:
    """The session timer an INVITE or UPDATE asks for (RFC 4028), or None. Raises SipError
    422 when the interval is below `min_se_s`."""
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    number = value.split(";", 1)[0].strip()
    if not number.isdigit() or len(number) > 9:
        raise sip.SipError(400, "Bad Session-Expires", f"Session-Expires {value[:30]!r}")
    interval = int(number)
    if interval < min_se_s:
        raise sip.SipError(422, "Session Interval Too Small", f"Session-Expires {interval} below {min_se_s}")
    supported = {s.lower() for s in request.headers.all("Supported")}
    refresher = (sip.param(value, "refresher") or "").lower()
    # The SBC refreshes whenever it can: a recorder that never has to send a re-INVITE is
    # simpler, and the SBC is the one that knows the call is alive.
    if refresher != "uas" and "timer" in supported:
        refresher = "uac"
    elif refresher != "uac":
        refresher = "uas"
    return SessionTimer(interval, refresher)


class Dialog:
    def __init__(
        self,
        invite: Request,
        local_tag: str,
        contact: str,
        now: float,
        *,
        via: str,
        reliable: bool,
        min_se_s: int = 90,
    ) -> None:
        self.call_id = invite.call_id
        self.local_tag = local_tag
        self.remote_tag = invite.from_tag or ""
        self.contact = contact  # our Contact URI
        self.via = via  # how our own requests go: `SIP/2.0/UDP host:port`
        self.reliable = reliable
        self.min_se_s = min_se_s
        self.state = State.PROCEEDING
        self.end_reason: str | None = None
        self.remote_target = sip.uri_of(invite.headers.get("Contact") or invite.headers.get("From") or "")
        self.route_set = tuple(reversed(invite.headers.all("Record-Route")))
        self.local_uri = invite.headers.get("To") or ""
        self.remote_uri = invite.headers.get("From") or ""
        self.remote_cseq = invite.cseq.number
        self.local_cseq = 0
        self.timer: SessionTimer | None = None
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        self._pending: Request | None = invite  # the INVITE not yet answered finally
        self._answer: bytes | None = None  # a 2xx waiting for its ACK
        self._answer_sent_at = now
        self._resend_at: float | None = None
        self._resend_every_s = T1_S
        self._responses: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    # --- answering -------------------------------------------------------------------------

    def respond(
        self,
        request: Request,
        status: int,
        reason: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> bytes:
        """A response to one of this dialog's requests, kept to answer its retransmissions."""
        data = sip.response(
            request,
            status,
            reason,
            to_tag=self.local_tag,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        if status >= 200:
            self._remember(request, data)
        return data

    def answer(self, sdp: bytes, now: float, timer: SessionTimer | None) -> bytes:
        """The 200 OK with our SDP for the INVITE (first or re-INVITE) awaiting one."""
        invite = self._pending
        assert invite is not None, "no INVITE waits for an answer"
        self._pending = None
        data = self.respond(
            invite, 200, "OK", headers=self._answer_headers(timer), body=sdp, content_type="application/sdp"
        )
        self.set_timer(timer, now)
        self.state = State.ANSWERED
        self._answer = data
        self._answer_sent_at = now
        self._resend_every_s = T1_S
        self._resend_at = None if self.reliable else now + T1_S
        return data

    def refuse(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        """A final refusal of the INVITE awaiting an answer (a re-INVITE's leaves the dialog
        as it was; the first INVITE's ends it)."""
        invite = self._pending
        assert invite is not None, "no INVITE waits for an answer"
        self._pending = None
        if self.state is State.PROCEEDING:
            self._end("refused")
        return self.respond(invite, status, reason, headers=headers)

    def _answer_headers(self, timer: SessionTimer | None) -> tuple[tuple[str, str], ...]:
        headers = [("Contact", f"<{self.contact}>"), ("Allow", ALLOW), ("Supported", SUPPORTED)]
        if timer is not None:
            headers.append(("Session-Expires", f"{timer.interval_s};refresher={timer.refresher}"))
            if timer.refresher == "uac":
                headers.append(("Require", "timer"))
        return tuple(headers)

    def session_headers(self) -> tuple[tuple[str, str], ...]:
        """For a refresh's 200 OK (UPDATE without a body)."""
        return self._answer_headers(self.timer)[1:]

    def set_timer(self, timer: SessionTimer | None, now: float) -> None:
        """The session timer (re)starts: on an answer, or a refresh."""
        self.timer = timer
        if timer is None:
            self.expires_at = self.refresh_at = None
            return
        if timer.refresher == "uac":
            self.expires_at = now + timer.interval_s - min(32.0, timer.interval_s / 3)
            self.refresh_at = None
        else:
            self.expires_at = None
            self.refresh_at = now + timer.interval_s / 2

    # --- requests in the dialog ------------------------------------------------------------

    def retransmission(self, request: Request) -> bytes | None:
        """The response already sent for this request, if it is a retransmission."""
        if request.method == "ACK":
            return None
        return self._responses.get((request.branch, request.method, request.cseq.number))

    def matches(self, request: Request) -> bool:
        """A request of this dialog (its tags), or a retransmission of its first INVITE."""
        if request.to_tag is None:
            return request.from_tag == self.remote_tag and request.cseq.number == self.remote_cseq
        return request.to_tag == self.local_tag and (request.from_tag or "") == self.remote_tag

    def stale(self, request: Request) -> bool:
        """A request with a CSeq not above the last one (RFC 3261 12.2.2): 500 it."""
        if request.method in ("ACK", "CANCEL"):
            return False
        if request.cseq.number <= self.remote_cseq:
            return True
        self.remote_cseq = request.cseq.number
        return False

    def offer(self, invite: Request) -> None:
        """A re-INVITE: the dialog waits to answer it."""
        self._pending = invite

    @property
    def awaiting_answer(self) -> Request | None:
        return self._pending

    def ack(self, request: Request, now: float) -> None:
        if self.state is State.ANSWERED and request.cseq.number >= self.remote_cseq - 1:
            self._answer = None
            self._resend_at = None
            self.state = State.CONFIRMED

    def cancel(self, request: Request) -> list[bytes]:
        """CANCEL: 200 for itself and, if the INVITE is still unanswered, 487 for it."""
        out = [sip.response(request, 200, "OK", to_tag=self.local_tag)]
        invite = self._pending
        if invite is not None and invite.branch == request.branch and self.state is State.PROCEEDING:
            self._pending = None
            out.append(self.respond(invite, 487, "Request Terminated"))
            self._end("cancel")
        return out

    def bye(self, request: Request) -> bytes:
        data = self.respond(request, 200, "OK")
        self._end("end")
        return data

    # --- time ------------------------------------------------------------------------------

    def deadline(self) -> float | None:
        times = [t for t in (self._resend_at, self.expires_at, self.refresh_at) if t is not None]
        if self._answer is not None:
            times.append(self._answer_sent_at + TIMER_H_S)
        return min(times) if times else None

    def poll(self, now: float) -> list[bytes]:
        """What the time calls for: an answer sent again, a refresh, or the end (a BYE)."""
        out: list[bytes] = []
        if self.state is State.ENDED:
            return out
        if self._answer is not None and now >= self._answer_sent_at + TIMER_H_S:
            self._answer = None
            self._resend_at = None
            self._end("no_ack")
            out.append(self.request("BYE"))
            return out
        if self._answer is not None and self._resend_at is not None and now >= self._resend_at:
            out.append(self._answer)
            self._resend_every_s = min(self._resend_every_s * 2, T2_S)
            self._resend_at = now + self._resend_every_s
        if self.expires_at is not None and now >= self.expires_at:
            self._end("session_expired")
            out.append(self.request("BYE"))
        elif self.refresh_at is not None and now >= self.refresh_at and self.timer is not None:
            out.append(
                self.request("UPDATE", (("Session-Expires", f"{self.timer.interval_s};refresher=uas"),))
            )
            self.refresh_at = now + self.timer.interval_s / 2
        return out

    def hang_up(self, reason: str) -> bytes | None:
        """The worker ends the call (its session ended, shutdown): the BYE to send, if the
        dialog is established."""
        if self.state in (State.ENDED, State.PROCEEDING):
            return None
        self._end(reason)
        return self.request("BYE")

    def request(self, method: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
        """A request of ours in the dialog; the server adds the Via it sends it by."""
        self.local_cseq += 1
        branch = f"z9hG4bK-asr-{self.local_tag}-{self.local_cseq}"
        headers: list[tuple[str, str]] = [("Via", f"{self.via};branch={branch};rport")]
        headers += [("Route", route) for route in self.route_set]
        headers += [
            ("Max-Forwards", "70"),
            ("From", _with_tag(self.local_uri, self.local_tag)),
            ("To", self.remote_uri),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
            ("Contact", f"<{self.contact}>"),
            *extra,
        ]
        return sip.request_bytes(method, self.remote_target, tuple(headers))

    # --- internals -------------------------------------------------------------------------

    def _end(self, reason: str) -> None:
        if self.state is not State.ENDED:
            self.state = State.ENDED
            self.end_reason = reason
            self.expires_at = self.refresh_at = None

    def _remember(self, request: Request, data: bytes) -> None:
        self._responses[(request.branch, request.method, request.cseq.number)] = data
        while len(self._responses) > 8:
            self._responses.popitem(last=False)


def _with_tag(uri: str, tag: str) -> str:
    return uri if sip.param(uri, "tag") is not None else f"{uri};tag={tag}"


def retransmissions(method: str) -> Iterator[float]:
    """How long a client waits for an answer before it sends its request again over UDP
    (RFC 3261 17.1: T1, doubling; capped at T2 but for an INVITE), 64*T1 in all."""
    waited_s, wait_s = 0.0, T1_S
    while waited_s < TIMER_H_S:
        step = min(wait_s, TIMER_H_S - waited_s)
        yield step
        waited_s += step
        wait_s = wait_s * 2 if method == "INVITE" else min(wait_s * 2, T2_S)


class ClientDialog:
    """The recording client's dialog: the INVITE that opens it, the ACK of its answer (a 2xx's
    in the dialog, a refusal's in the INVITE's transaction), its BYE, and the answers to what
    the server sends in it."""

    def __init__(self, call_id: str, local_tag: str, local_uri: str, remote_uri: str, contact: str, via: str):
        self.call_id = call_id
        self.local_tag = local_tag
        self.local_uri = local_uri  # From, without its tag
        self.remote_uri = remote_uri  # To, and the INVITE's Request-URI
        self.contact = contact  # our Contact URI
        self.via = via  # `SIP/2.0/UDP host:port`
        self.remote_target = sip.uri_of(remote_uri)
        self.remote_tag: str | None = None
        self.route_set: tuple[str, ...] = ()
        self.cseq = 0
        self.invite_cseq = 0
        self._invite_via = ""
        self._ack: bytes | None = None
        self._transactions = 0

    def invite(self, headers: tuple[tuple[str, str], ...], body: bytes, content_type: str) -> bytes:
        """The INVITE: `headers` after the dialog's own, then the body."""
        self.cseq += 1
        self.invite_cseq = self.cseq
        self._invite_via = f"{self.via};branch={self._branch()};rport"
        own = self._headers("INVITE", self._invite_via, self.remote_uri, self.cseq)
        contact = (("Contact", f"<{self.contact}>;+sip.src"),)  # RFC 7866: a recording client's
        return sip.request_bytes("INVITE", self.remote_target, own + contact + headers, body, content_type)

    def answered(self, response: Response) -> bytes:
        """The ACK of the INVITE's 2xx, which establishes the dialog: the server's tag, its
        Contact as the target of what follows, its Record-Route as the route set. The same ACK
        answers the 2xx sent again (`ack`)."""
        self.remote_tag = sip.param(response.headers.get("To") or "", "tag")
        contact = response.headers.get("Contact")
        if contact:
            self.remote_target = sip.uri_of(contact)
        self.route_set = tuple(reversed(response.headers.all("Record-Route")))
        via = f"{self.via};branch={self._branch()};rport"
        own = self._headers("ACK", via, self._remote(), self.invite_cseq)
        self._ack = sip.request_bytes("ACK", self.remote_target, own + self._routes())
        return self._ack

    @property
    def ack(self) -> bytes | None:
        """The ACK sent for the 2xx, for each time the server sends that 2xx again."""
        return self._ack

    def refused(self, response: Response) -> bytes:
        """The ACK of a final refusal (3xx-6xx): in the INVITE's transaction, by its Via."""
        own = self._headers("ACK", self._invite_via, response.headers.get("To") or "", self.invite_cseq)
        return sip.request_bytes("ACK", sip.uri_of(self.remote_uri), own)

    def bye(self) -> bytes:
        """The BYE that ends the session."""
        self.cseq += 1
        via = f"{self.via};branch={self._branch()};rport"
        own = self._headers("BYE", via, self._remote(), self.cseq)
        return sip.request_bytes("BYE", self.remote_target, own + self._routes())

    def respond(
        self, request: Request, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> bytes:
        """An answer to a request the server sent (its BYE, an OPTIONS)."""
        return sip.response(request, status, reason, to_tag=self.local_tag, headers=headers)

    def _remote(self) -> str:
        return self.remote_uri if self.remote_tag is None else f"{self.remote_uri};tag={self.remote_tag}"

    def _routes(self) -> tuple[tuple[str, str], ...]:
        return tuple(("Route", route) for route in self.route_set)

    def _branch(self) -> str:
        """A new transaction's branch (the ACK of a 2xx is one of its own)."""
        self._transactions += 1
        return f"z9hG4bK-src-{self.local_tag}-{self._transactions}"

    def _headers(self, method: str, via: str, to: str, cseq: int) -> tuple[tuple[str, str], ...]:
        return (
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        )
