"""Recording metadata (RFC 7865, `application/rs-metadata+xml`): who the participants are,
which stream each sends, and so which stream is the customer's and which the agent's. Pure.

The XML comes from outside, so it is read defused: no DOCTYPE (so no entities, internal or
external), a bounded size and a bounded number of elements. A re-INVITE or UPDATE may carry a
new document (a transfer brings a new participant, `<participantstreamassoc>` moves a stream
to them); `Metadata.update` merges it into what the call knows, and the channels follow.

Roles: each `ASR_SIPREC_ROLES` rule (`agent=aor:sip:*@agents.example.com`, `customer=label:1`,
`agent=name:Agent*`) is tried on the participant sending a stream (its name or AoR) or on the
stream's label, in order; the first match gives the stream its role. Streams no rule places
take the channels left, in the offer's order: the first stream is the customer's (channel 0),
which is how SBCs order an inbound call's legs (caller first).

A recording client (`asr-worker stream --protocol siprec`) writes its document with
`document`, which this module's reader reads back.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from .options import ROLE_CHANNELS, RoleRule

NAMESPACE: Final = "urn:ietf:params:xml:ns:recording:1"
MAX_METADATA_BYTES: Final = 65_536
MAX_ELEMENTS: Final = 2000
_FORBIDDEN: Final = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ID_CHARS: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class MetadataError(ValueError):
    """Metadata that cannot be read: the request is answered 400 with this."""


@dataclass(frozen=True)
class Participant:
    participant_id: str
    name: str | None
    aor: str | None


@dataclass
class Metadata:
    session_id: str | None = None
    participants: dict[str, Participant] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # stream_id -> SDP label
    sends: dict[str, tuple[str, ...]] = field(default_factory=dict)  # participant_id -> stream_ids

    def update(self, document: bytes) -> None:
        """Merge one document (complete or partial) into what the call knows."""
        root = _root(document)
        for element in root.iter():
            tag = _local(element.tag)
            if tag == "session" and self.session_id is None:
                self.session_id = element.get("session_id") or element.get("id")
            elif tag == "participant":
                pid = element.get("participant_id") or element.get("id")
                if pid:
                    self.participants[pid] = _participant(pid, element)
            elif tag == "stream":
                sid = element.get("stream_id") or element.get("id")
                label = _child_text(element, "label")
                if sid and label:
                    self.labels[sid] = label
            elif tag == "participantstreamassoc":
                pid = element.get("participant_id") or element.get("id")
                if pid:
                    sends = tuple(
                        (child.text or "").strip() for child in element if _local(child.tag) == "send"
                    )
                    self.sends[pid] = tuple(s for s in sends if s)

    def sender_of(self, label: str | None) -> Participant | None:
        """The participant who sends the stream with this SDP label."""
        if label is None:
            return None
        streams = {sid for sid, found in self.labels.items() if found == label}
        for pid, sends in self.sends.items():
            if streams.intersection(sends):
                return self.participants.get(pid) or Participant(pid, None, None)
        return None

    def interaction_id(self) -> str | None:
        """The recording session's id as an interaction id: RFC 7865 writes a UUID in base64,
        which becomes its usual text form; an id of the usual characters stays as it is."""
        return interaction_id_of(self.session_id)


def interaction_id_of(session_id: str | None) -> str | None:
    if not session_id:
        return None
    value = session_id.strip()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 16:
        return str(uuid.UUID(bytes=raw))
    if _ID_CHARS.fullmatch(value):
        return value
    if raw:
        return raw.hex()[:128]
    return None


def session_id_of(interaction_id: str) -> str:
    """What a client writes as `<session session_id>` for a call to get `interaction_id` on the
    worker (`interaction_id_of`'s inverse): a UUID in base64, as RFC 7865 writes one; any
    other id as it is."""
    try:
        as_uuid = uuid.UUID(interaction_id)
    except ValueError:
        return interaction_id
    return encoded_id(as_uuid) if str(as_uuid) == interaction_id else interaction_id


def encoded_id(value: uuid.UUID) -> str:
    """An RFC 7865 id (of a session, participant or stream): a UUID's 16 bytes in base64."""
    return base64.b64encode(value.bytes).decode("ascii")


@dataclass(frozen=True)
class SentStream:
    """One stream a recording client sends, and the participant whose audio it carries."""

    stream_id: str
    label: str  # its SDP `a=label`
    sender: Participant


def document(session_id: str, streams: Sequence[SentStream]) -> bytes:
    """A recording client's complete metadata (RFC 7865): the session, each stream's sender
    by name and AoR, the stream each participant sends (and receives: the others)."""
    root = ET.Element("recording", {"xmlns": NAMESPACE})
    ET.SubElement(root, "datamode").text = "complete"
    ET.SubElement(root, "session", {"session_id": session_id})
    for sent in streams:
        participant = ET.SubElement(root, "participant", {"participant_id": sent.sender.participant_id})
        name_id = ET.SubElement(participant, "nameID", {"aor": sent.sender.aor or ""})
        if sent.sender.name:
            ET.SubElement(name_id, "name", {"xml:lang": "en"}).text = sent.sender.name
    for sent in streams:
        stream = ET.SubElement(root, "stream", {"stream_id": sent.stream_id, "session_id": session_id})
        ET.SubElement(stream, "label").text = sent.label
    for sent in streams:
        ids = {"participant_id": sent.sender.participant_id, "session_id": session_id}
        ET.SubElement(root, "participantsessionassoc", ids)
    for sent in streams:
        assoc = ET.SubElement(root, "participantstreamassoc", {"participant_id": sent.sender.participant_id})
        ET.SubElement(assoc, "send").text = sent.stream_id
        for other in streams:
            if other is not sent:
                ET.SubElement(assoc, "recv").text = other.stream_id
    ET.indent(root)
    written: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return written + b"\n"


def _root(document: bytes) -> ET.Element:
    if len(document) > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata of {len(document)} bytes (at most {MAX_METADATA_BYTES})")
    if _FORBIDDEN.search(document):
        raise MetadataError("metadata with a DOCTYPE or an entity declaration is refused")
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise MetadataError(f"metadata is not well-formed XML: {str(exc)[:80]}") from None
    if _local(root.tag) != "recording":
        raise MetadataError(f"metadata's root is <{_local(root.tag)[:30]}>, not <recording>")
    if sum(1 for _ in root.iter()) > MAX_ELEMENTS:
        raise MetadataError(f"metadata with more than {MAX_ELEMENTS} elements")
    return root


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element.iter():
        if _local(child.tag) == name and child.text and child.text.strip():
            return child.text.strip()[:256]
    return None


def _participant(pid: str, element: ET.Element) -> Participant:
    aor: str | None = None
    for child in element.iter():
        tag = _local(child.tag)
        if tag == "nameID" and child.get("aor"):
            aor = child.get("aor")
            break
        if tag == "aor" and child.text:  # the drafts before RFC 7865
            aor = child.text.strip()
            break
    return Participant(pid, _child_text(element, "name"), aor[:256] if aor else None)


def channels(
    labels: list[str | None], metadata: Metadata | None, rules: tuple[RoleRule, ...]
) -> list[int | None]:
    """The channel of each recorded stream (by its label, in the offer's order): 0 the
    customer's, 1 the agent's, None for a stream beyond the two (not recorded)."""
    found: list[int | None] = [None] * len(labels)
    for i, label in enumerate(labels):
        sender = metadata.sender_of(label) if metadata is not None else None
        for rule in rules:
            if (
                rule.matches("label", label)
                or (sender is not None and rule.matches("name", sender.name))
                or (sender is not None and rule.matches("aor", sender.aor))
            ):
                channel = ROLE_CHANNELS[rule.role]
                if channel not in found:
                    found[i] = channel
                break
    free = [c for c in (0, 1) if c not in found]
    for i in range(len(labels)):
        if found[i] is None and free:
            found[i] = free.pop(0)
    return found


def role_of(channel: int) -> str:
    return next(role for role, c in ROLE_CHANNELS.items() if c == channel)
