"""FreeSWITCH's media forks, `mod_audio_fork` and `mod_audio_stream`, as data.

    uuid_audio_fork <uuid> start <wss-url> <mono|mixed|stereo> <8k|16k|...> [metadata]
    uuid_audio_stream <uuid> start <wss-url> <mono|mixed|stereo> <8k|16k> [metadata]

Both send the command's `metadata` (any text the application writes, usually JSON) as one text
frame once connected, then 16-bit little-endian PCM in binary frames: mono (the caller),
mixed (both parties in one channel) or stereo (caller and callee interleaved, one channel
each). The sample rate and the mix type travel only in the command, so the socket's URL (or a
JSON metadata frame) says them: `?sample_rate=16000&mix=stereo`. Without metadata the modules
send no text frame at all: the URL must then name the call (`?interaction_id=`).
`uuid_audio_fork ... send_text` frames after the metadata are the application's own: counted,
and read only for a DTMF digit (`{"event": "dtmf", "dtmf": "5"}`, as jambonz sends them); a
zero-length binary frame is mod_audio_fork's graceful shutdown: the call is over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ...errors import ProtocolError
from .messages import (
    ONE_LEG,
    ForkControl,
    ForkStart,
    Notice,
    call_options,
    first_text,
    json_object,
    keypress,
    linear16,
    mix_legs,
    sample_rate,
)

# mod_audio_fork offers `audio.drachtio.org` (MOD_AUDIO_FORK_SUBPROTOCOL_NAME changes it; older
# builds and jambonz's own build say the other two); mod_audio_stream offers none.
SUBPROTOCOLS: Final = ("audio.drachtio.org", "audiostream.drachtio.org", "audio.jambonz.org")
# mod_audio_fork resamples to any multiple of 8 kHz; the worker takes them up to 48 kHz.
SAMPLE_RATES: Final = (8000, 16000, 24000, 32000, 48000)
# Where a JSON metadata frame may name the call: ours, then the names applications use for
# FreeSWITCH's channel UUID (jambonz's metadata says callSid).
CALL_ID_FIELDS: Final = ("uuid", "callSid", "call_sid", "callId", "call_id")


def parse_start(metadata: str | None, query: Mapping[str, str]) -> ForkStart:
    """The call from the metadata frame (None: audio came first) and the URL's query."""
    fields: dict[str, object] = {}
    if metadata is not None and metadata.lstrip().startswith("{"):
        fields = json_object(metadata, "the metadata frame")
    interaction_id = (
        first_text(fields, "interaction_id")
        or query.get("interaction_id")
        or first_text(fields, *CALL_ID_FIELDS)
    )
    if not interaction_id:
        why = "no metadata frame came first" if metadata is None else "the metadata frame names no call"
        raise ProtocolError(
            "bad_message",
            f"{why}: name the call with ?interaction_id= on the fork's URL, or an interaction_id "
            "(or uuid) field in a JSON metadata frame",
        )
    rate = sample_rate(
        first_text(fields, "sampleRate", "sample_rate", "sampling")
        or query.get("sample_rate")
        or query.get("sampling")
        or "8000",
        "sample_rate",
        SAMPLE_RATES,
    )
    mix = first_text(fields, "mixType", "mix_type", "mix") or query.get("mix") or query.get("mix_type")
    legs = mix_legs(mix, "mix") if mix else ONE_LEG
    return ForkStart(
        interaction_id=interaction_id,
        fmt=linear16(rate, len(legs), "the fork's audio"),
        tenant_id=first_text(fields, "tenant_id") or query.get("tenant_id"),
        options=call_options(fields, query, "metadata"),
        call_ref=first_text(fields, *CALL_ID_FIELDS),
        legs=legs,
    )


def parse_control(text: str) -> ForkControl:
    """A text frame after the metadata: the application's own (`send_text`, `stop`'s text)."""
    if not text.lstrip().startswith("{"):
        return Notice("text")
    fields = json_object(text, "a text frame")
    kind = first_text(fields, "event", "type")
    if kind is not None and kind.lower() == "dtmf":
        return keypress(fields, "dtmf", "dtmf", "digit")
    return Notice("text")
