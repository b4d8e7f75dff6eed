"""A SIPREC INVITE's body: `multipart/mixed` (RFC 7866 section 7.1.1) holding the SDP offer
and the recording metadata (`application/rs-metadata+xml`), or an SDP alone (a re-INVITE
that changes only the media). Pure: read by the recording server (`split`), written by a
recording client (`multipart`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .sip import Headers, SipError, canonical

SDP: Final = "application/sdp"
METADATA: Final = "application/rs-metadata+xml"
MAX_PARTS: Final = 8


@dataclass(frozen=True)
class Parts:
    sdp: bytes | None
    metadata: bytes | None


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """`type/subtype` in lower case and the parameters (`boundary`)."""
    kind, *params = content_type.split(";")
    found: dict[str, str] = {}
    for item in params:
        key, _, value = item.partition("=")
        found[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), found


def split(content_type: str | None, body: bytes) -> Parts:
    """The SDP and the metadata of a body; SipError 415 for a type a recording server does not
    take, 400 for a multipart body it cannot read."""
    if not body:
        return Parts(None, None)
    kind, params = media_type(content_type or "")
    if kind == SDP:
        return Parts(body, None)
    if kind == METADATA:
        return Parts(None, body)
    if kind != "multipart/mixed":
        raise SipError(415, "Unsupported Media Type", f"a body of type {kind[:60]!r}")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise SipError(400, "Bad Request", "a multipart body without a usable boundary")
    sdp: bytes | None = None
    metadata: bytes | None = None
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise SipError(400, "Bad Request", "a multipart body without parts")
    for chunk in chunks[1 : MAX_PARTS + 1]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        part = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        if not sep:
            raise SipError(400, "Bad Request", "a multipart part without headers")
        # the CRLF before the next delimiter belongs to the delimiter (RFC 2046)
        content = content.removesuffix(b"\r\n") if content.endswith(b"\r\n") else content.removesuffix(b"\n")
        part_type = _part_type(head)
        if part_type == SDP and sdp is None:
            sdp = content
        elif part_type == METADATA and metadata is None:
            metadata = content
    return Parts(sdp, metadata)


def _part_type(head: bytes) -> str:
    items = []
    for line in head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            items.append((canonical(name.strip()), value.strip()))
    return media_type(Headers(tuple(items)).get("Content-Type") or "")[0]


def multipart(sdp: bytes, metadata: bytes, boundary: str) -> tuple[str, bytes]:
    """A recording client's INVITE body and its Content-Type: the SDP offer, then the metadata
    as the recording session's (`Content-Disposition: recording-session`, RFC 7866 section 9.1)."""
    delimiter = f"--{boundary}".encode()
    body = b"\r\n".join(
        [
            delimiter,
            f"Content-Type: {SDP}".encode(),
            b"",
            sdp,
            delimiter,
            f"Content-Type: {METADATA}".encode(),
            b"Content-Disposition: recording-session",
            b"",
            metadata,
            delimiter + b"--",
            b"",
        ]
    )
    return f"multipart/mixed;boundary={boundary}", body
