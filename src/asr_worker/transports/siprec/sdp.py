"""SDP offer and answer (RFC 4566, RFC 3264) for a recording server: the offer's audio streams
read, a codec chosen for each, and the answer written; and a recording client's offer (what
`asr-worker stream --protocol siprec` sends), read back by the same parser. Pure.

A SIPREC offer has one `m=audio` per recorded stream, `a=sendonly`, labelled (`a=label:`) so
that the metadata can name it. The answer keeps every m-line in its place: a stream the server
records gets a port and `a=recvonly` (`a=inactive` while the offer holds it), one it cannot
(no G.711, not audio, port 0 in the offer) gets port 0. All streams of a call are answered
with one G.711 law where the offer allows it, since the call is one two-channel stream; a
stream that offers only the other law is translated. G.722 is not taken: decoding it well
needs a codec library the worker does not carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ...core.audio import Encoding

MAX_SDP_BYTES: Final = 16_384
MAX_MEDIA: Final = 16
STATIC: Final = {
    0: ("PCMU", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}
G711: Final = {"PCMU": Encoding.MULAW, "PCMA": Encoding.ALAW}
STATIC_PT: Final = {Encoding.MULAW: 0, Encoding.ALAW: 8}
DIRECTIONS: Final = ("sendonly", "recvonly", "sendrecv", "inactive")


class SdpError(ValueError):
    """An SDP that cannot be read (the request is answered 400) or taken (488)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Codec:
    payload_type: int
    name: str  # upper case: PCMU, PCMA, TELEPHONE-EVENT, CN
    rate: int


@dataclass(frozen=True)
class Media:
    index: int  # the m-line's place in the offer (the answer keeps it)
    kind: str  # audio, video, ...
    port: int
    proto: str
    formats: tuple[str, ...]
    codecs: tuple[Codec, ...]
    label: str | None
    direction: str
    address: str | None  # the media's c= address, else the session's

    def codec(self, name: str) -> Codec | None:
        return next((c for c in self.codecs if c.name == name and c.rate == 8000), None)


@dataclass(frozen=True)
class Offer:
    media: tuple[Media, ...]


@dataclass(frozen=True)
class Plan:
    """How one offered stream is answered: recorded (`codec` set) or refused (port 0)."""

    media: Media
    codec: Codec | None
    telephone_event: int | None
    comfort_noise: int | None

    @property
    def recorded(self) -> bool:
        return self.codec is not None

    @property
    def encoding(self) -> Encoding | None:
        return None if self.codec is None else G711[self.codec.name]

    @property
    def sending(self) -> bool:
        """The offerer sends on it (not held: `a=inactive` or `a=recvonly` hold a stream)."""
        return self.media.direction in ("sendonly", "sendrecv")


def parse(data: bytes) -> Offer:
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(400, f"an SDP of {len(data)} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError(400, "the SDP is not UTF-8") from None
    session_address: str | None = None
    session_direction = "sendrecv"
    blocks: list[dict[str, object]] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(400, f"the SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if len(blocks) >= MAX_MEDIA:
                raise SdpError(400, f"more than {MAX_MEDIA} media lines")
            blocks.append({"m": value, "a": []})
        elif kind == "c":
            address = _connection(value)
            if blocks:
                blocks[-1]["c"] = address
            else:
                session_address = address
        elif kind == "a":
            if blocks:
                attributes = blocks[-1]["a"]
                assert isinstance(attributes, list)
                attributes.append(value)
            elif value in DIRECTIONS:
                session_direction = value
    if not blocks:
        raise SdpError(400, "the SDP has no media line")
    media = tuple(_media(i, block, session_address, session_direction) for i, block in enumerate(blocks))
    return Offer(media)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(400, f"the connection line {value[:40]!r}")
    return parts[2].split("/", 1)[0]


def _media(
    index: int, block: dict[str, object], session_address: str | None, session_direction: str
) -> Media:
    m = str(block["m"]).split()
    if len(m) < 4 or not m[1].split("/", 1)[0].isdigit():
        raise SdpError(400, f"the media line {str(block['m'])[:40]!r}")
    port = int(m[1].split("/", 1)[0])
    if port > 65535:
        raise SdpError(400, f"the media port {port}")
    formats = tuple(m[3:])
    rtpmap: dict[int, tuple[str, int]] = {}
    label: str | None = None
    direction = session_direction
    attributes = block["a"]
    assert isinstance(attributes, list)
    for attribute in attributes:
        name, _, value = str(attribute).partition(":")
        if name == "rtpmap":
            pt, _, encoding = value.partition(" ")
            codec_name, _, rest = encoding.partition("/")
            rate = rest.split("/", 1)[0]
            if pt.isdigit() and rate.isdigit():
                rtpmap[int(pt)] = (codec_name.upper(), int(rate))
        elif name == "label":
            label = value.strip()[:64] or None
        elif name in DIRECTIONS:
            direction = name
    codecs: list[Codec] = []
    for fmt in formats:
        if not fmt.isdigit() or int(fmt) > 127:
            continue
        number = int(fmt)
        found = rtpmap.get(number) or STATIC.get(number)
        if found is not None:
            codecs.append(Codec(number, found[0], found[1]))
    address = block.get("c")
    return Media(
        index=index,
        kind=m[0].lower(),
        port=port,
        proto=m[2],
        formats=formats,
        codecs=tuple(codecs),
        label=label,
        direction=direction,
        address=str(address) if address is not None else session_address,
    )


def plan(offer: Offer, keep: Encoding | None = None) -> list[Plan]:
    """A plan for every offered m-line, in order. One law for the whole call: `keep` (the law
    the call already has), else the first G.711 codec the first recordable stream offers."""
    law = keep
    for media in offer.media:
        if law is None and _recordable(media):
            law = next(G711[c.name] for c in media.codecs if c.name in G711 and c.rate == 8000)
    plans: list[Plan] = []
    for media in offer.media:
        codec: Codec | None = None
        if _recordable(media):
            preferred = "PCMU" if law is Encoding.MULAW else "PCMA"
            other = "PCMA" if preferred == "PCMU" else "PCMU"
            codec = media.codec(preferred) or media.codec(other)
        te = media.codec("TELEPHONE-EVENT")
        cn = media.codec("CN")
        plans.append(Plan(media, codec, te.payload_type if te else None, cn.payload_type if cn else None))
    return plans


def _recordable(media: Media) -> bool:
    return (
        media.kind == "audio"
        and media.port != 0
        and media.proto.upper() in ("RTP/AVP", "RTP/AVPF")
        and any(c.name in G711 and c.rate == 8000 for c in media.codecs)
    )


def call_law(plans: list[Plan]) -> Encoding | None:
    """The law the call's audio is in: the first recorded stream's."""
    return next((p.encoding for p in plans if p.encoding is not None), None)


def answer(plans: list[Plan], ports: dict[int, int], address: str, session_id: int, version: int) -> bytes:
    """The answer: every m-line in the offer's order, recorded ones on their `ports`."""
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=asr-worker {session_id} {version} IN {family} {address}",
        "s=asr-worker recording",
        f"c=IN {family} {address}",
        "t=0 0",
    ]
    for p in plans:
        media = p.media
        port = ports.get(media.index, 0) if p.codec is not None else 0
        if p.codec is None or port == 0:
            lines.append(f"m={media.kind} 0 {media.proto} {' '.join(media.formats) or '0'}")
            if media.label:
                lines.append(f"a=label:{media.label}")
            continue
        formats = [p.codec.payload_type] + [
            pt for pt in (p.telephone_event, p.comfort_noise) if pt is not None
        ]
        lines.append(f"m=audio {port} {media.proto} {' '.join(str(pt) for pt in formats)}")
        lines.append(f"a=rtpmap:{p.codec.payload_type} {p.codec.name}/8000")
        if p.telephone_event is not None:
            lines.append(f"a=rtpmap:{p.telephone_event} telephone-event/8000")
            lines.append(f"a=fmtp:{p.telephone_event} 0-16")
        if p.comfort_noise is not None:
            lines.append(f"a=rtpmap:{p.comfort_noise} CN/8000")
        if media.label:
            lines.append(f"a=label:{media.label}")
        lines.append("a=recvonly" if p.sending else "a=inactive")
    return ("\r\n".join(lines) + "\r\n").encode()


def offer(address: str, streams: Sequence[tuple[int, str]], session_id: int, version: int = 1) -> bytes:
    """A recording client's offer (RFC 7866 section 7.1.1): one PCMU stream at 20 ms per
    (port, label), `a=sendonly`, labelled so that the metadata can say whose it is."""
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=asr-worker-src {session_id} {version} IN {family} {address}",
        "s=asr-worker stream",
        f"c=IN {family} {address}",
        "t=0 0",
    ]
    pt = STATIC_PT[Encoding.MULAW]
    for port, label in streams:
        lines += [
            f"m=audio {port} RTP/AVP {pt}",
            f"a=rtpmap:{pt} PCMU/8000",
            "a=ptime:20",
            f"a=label:{label}",
            "a=sendonly",
        ]
    return ("\r\n".join(lines) + "\r\n").encode()
