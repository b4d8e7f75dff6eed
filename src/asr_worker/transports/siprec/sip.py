"""SIP messages (RFC 3261) as data: a strict, bounded parser and the responses a recording
server sends. Pure: bytes in, typed values out; no sockets.

A recording server needs a small part of SIP: it receives requests (INVITE, ACK, BYE,
CANCEL, OPTIONS, UPDATE, INFO), answers them, and sends a BYE of its own. So this parser
takes one message (a UDP datagram, or one message cut from a TCP stream by `StreamFramer`)
and refuses what it cannot read with a `SipError` carrying the status to answer (400, 413,
505), never more: its limits bound every message, header and line. Header names are folded
to their canonical form, compact ones expanded (`i` is `Call-ID`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_MESSAGE_BYTES: Final = 65_536
MAX_HEADERS: Final = 128
MAX_LINE_CHARS: Final = 4096

COMPACT: Final = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "x": "session-expires",
    "o": "event",
    "r": "refer-to",
}
_CANONICAL: Final = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "min-se": "Min-SE",
    "session-id": "Session-ID",
    "mime-version": "MIME-Version",
}
_TOKEN: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_REQUIRED: Final = ("via", "from", "to", "call-id", "cseq")


class SipError(Exception):
    """A message that cannot be taken: the status and reason to answer it with."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def canonical(name: str) -> str:
    lower = name.lower()
    lower = COMPACT.get(lower, lower)
    return _CANONICAL.get(lower) or "-".join(part.capitalize() for part in lower.split("-"))


@dataclass(frozen=True)
class Headers:
    """Header fields in order, names canonical; a name may repeat (Via, Record-Route)."""

    items: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        key = canonical(name)
        return next((value for n, value in self.items if n == key), None)

    def all(self, name: str) -> list[str]:
        """Every value of `name`, comma-separated lists split (outside quotes and <>)."""
        key = canonical(name)
        out: list[str] = []
        for n, value in self.items:
            if n == key:
                out += split_list(value)
        return out


def split_list(value: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str


@dataclass(frozen=True)
class Request:
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def branch(self) -> str:
        via = self.headers.all("Via")
        return (param(via[0], "branch") or "") if via else ""

    @property
    def from_tag(self) -> str | None:
        return param(self.headers.get("From") or "", "tag")

    @property
    def to_tag(self) -> str | None:
        return param(self.headers.get("To") or "", "tag")


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.headers.get("CSeq") or "")


Message = Request | Response


def parse_cseq(value: str) -> CSeq:
    number, _, method = value.strip().partition(" ")
    if not number.isdigit() or len(number) > 10 or not _TOKEN.fullmatch(method.strip()):
        raise SipError(400, "Bad CSeq", f"CSeq {value[:40]!r} is not a number and a method")
    return CSeq(int(number), method.strip())


def param(value: str, name: str) -> str | None:
    """A `;name=value` parameter of a header field (outside its <uri>), or None; a flag
    parameter without a value is ""."""
    end = value.rfind(">")
    tail = value[end + 1 :] if end >= 0 else value
    for part in tail.split(";")[1:]:
        key, sep, found = part.partition("=")
        if key.strip().lower() == name.lower():
            return found.strip().strip('"') if sep else ""
    return None


def uri_of(value: str) -> str:
    """The URI of a name-addr (`"Bob" <sip:bob@x>;tag=1`) or addr-spec (`sip:bob@x;tag=1`)."""
    start, end = value.find("<"), value.find(">")
    if 0 <= start < end:
        return value[start + 1 : end].strip()
    return value.split(";", 1)[0].strip()


def parse(data: bytes) -> Message:
    """One whole message; SipError says why it cannot be taken."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipError(513, "Message Too Large", f"a message of {len(data)} bytes")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipError(400, "Bad Request", "the message has no end of its header")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError(400, "Bad Request", "the header is not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0]
    if len(start) > MAX_LINE_CHARS:
        raise SipError(414, "Request-URI Too Long", "the start line is too long")
    headers = _headers(lines[1:])
    body = _body(headers, body)
    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if version != "SIP/2.0":
            raise SipError(505, "Version Not Supported", f"{version[:20]!r}")
        if not (len(code) == 3 and code.isdigit() and 100 <= int(code) <= 699):
            raise SipError(400, "Bad Request", f"a status of {code[:10]!r}")
        return Response(int(code), reason, headers, body)
    parts = start.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise SipError(400, "Bad Request", f"the request line {start[:60]!r}")
    if parts[2] != "SIP/2.0":
        raise SipError(505, "Version Not Supported", f"{parts[2][:20]!r}")
    for name in _REQUIRED:
        if headers.get(name) is None:
            raise SipError(400, f"Missing {canonical(name)}", f"the request has no {canonical(name)}")
    request = Request(parts[0], parts[1], headers, body)
    if request.cseq.method != request.method and request.method not in ("ACK", "CANCEL"):
        raise SipError(400, "Bad CSeq", "the CSeq method is not the request's")
    return request


def _headers(lines: list[str]) -> Headers:
    items: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            raise SipError(400, "Header Too Long", f"a header line of {len(line)} characters")
        if line[0] in " \t":  # folded onto the previous line
            if not items:
                raise SipError(400, "Bad Request", "a continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name.strip()):
            raise SipError(400, "Bad Header", f"the header line {line[:40]!r}")
        items.append((canonical(name.strip()), value.strip()))
        if len(items) > MAX_HEADERS:
            raise SipError(400, "Too Many Headers", f"more than {MAX_HEADERS} header fields")
    return Headers(tuple(items))


def _body(headers: Headers, body: bytes) -> bytes:
    length = headers.get("Content-Length")
    if length is None:
        return body
    if not length.isdigit() or len(length) > 7:
        raise SipError(400, "Bad Content-Length", f"Content-Length {length[:20]!r}")
    n = int(length)
    if n > len(body):
        raise SipError(400, "Bad Content-Length", f"Content-Length {n} but {len(body)} body bytes")
    return body[:n]


def response(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """The response to `request`: its Via, From, To (with our tag), Call-ID and CSeq copied."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for name, value in request.headers.items:
        if name == "Via":
            lines.append(f"Via: {value}")
    to = request.headers.get("To") or ""
    if to_tag is not None and param(to, "tag") is None and status != 100:
        to = f"{to};tag={to_tag}"
    lines += [
        f"From: {request.headers.get('From') or ''}",
        f"To: {to}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.headers.get('CSeq') or ''}",
    ]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def request_bytes(
    method: str,
    uri: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """A request of our own (the BYE a recording server sends when it ends a call)."""
    lines = [f"{method} {uri} SIP/2.0", *(f"{name}: {value}" for name, value in headers)]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class StreamFramer:
    """Whole messages cut from a stream transport (TCP, TLS) by their Content-Length; the
    CRLF keep-alives between messages (RFC 5626) are counted, not messages."""

    max_bytes: int = MAX_MESSAGE_BYTES
    keepalives: int = 0
    _buffer: bytearray = field(default_factory=bytearray)

    def push(self, data: bytes) -> list[bytes]:
        """The messages now whole; SipError when the stream cannot be read on (a message too
        large, or without a Content-Length, which a stream transport requires)."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            stripped = len(self._buffer) - len(self._buffer.lstrip(b"\r\n"))
            if stripped:
                self.keepalives += 1
                del self._buffer[:stripped]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_bytes:
                    raise SipError(513, "Message Too Large", "a header larger than a message may be")
                return out
            head = bytes(self._buffer[:end]).decode("utf-8", "replace")
            length = _stream_length(head)
            total = end + 4 + length
            if total > self.max_bytes:
                raise SipError(513, "Message Too Large", f"a message of {total} bytes")
            if len(self._buffer) < total:
                return out
            out.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


def _stream_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and canonical(name.strip()) == "Content-Length":
            text = value.strip()
            if not text.isdigit() or len(text) > 7:
                raise SipError(400, "Bad Content-Length", f"Content-Length {text[:20]!r}")
            return int(text)
    raise SipError(400, "Missing Content-Length", "a message on a stream transport needs Content-Length")
