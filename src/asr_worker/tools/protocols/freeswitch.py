"""`--protocol freeswitch`: FreeSWITCH's mod_audio_fork on `/v1/freeswitch`, as

    uuid_audio_fork ${uuid} start
        wss://HOST/v1/freeswitch?interaction_id=${uuid}&sample_rate=16000&mix=stereo stereo 16k

(one line) forks a call: the subprotocol `audio.drachtio.org`, the call's id, sample rate and mix on the
URL (the module sends them in no frame of its own, and no metadata frame here), 16-bit PCM at
the file's rate (8 to 48 kHz), `mono` for a mono file and `stereo` for a two-channel one (the
caller on channel 0, the callee on 1), 20 ms binary frames, and the socket's close at the
hangup. The key goes as the channel variables `MOD_AUDIO_BASIC_AUTH_USERNAME` and
`_PASSWORD` send it: HTTP Basic, the key as the password."""

from __future__ import annotations

from typing import ClassVar, Final

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import freeswitch_messages as messages
from .base import CallSpec, basic_authorization, highest_rate
from .forks import Fork

_USER: Final = "freeswitch"  # MOD_AUDIO_BASIC_AUTH_USERNAME; the worker reads the password
MIX: Final = {1: "mono", 2: "stereo"}  # by the file's channels


class FreeSwitch(Fork):
    name: ClassVar[str] = "freeswitch"
    path: ClassVar[str] = "/v1/freeswitch"
    subprotocol: ClassVar[str | None] = messages.SUBPROTOCOLS[0]

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(
            Encoding.LINEAR16, highest_rate(fmt.sample_rate, messages.SAMPLE_RATES), min(fmt.channels, 2)
        )

    def query(self, call: CallSpec) -> dict[str, str]:
        query = {
            "interaction_id": call.interaction_id,
            "sample_rate": str(call.fmt.sample_rate),
            "mix": MIX[call.fmt.channels],
        }
        if call.tenant_id:
            query["tenant_id"] = call.tenant_id
        return query

    def headers(self, call: CallSpec) -> dict[str, str]:
        return basic_authorization(_USER, call.keys.api_key)

    def first_frame(self, call: CallSpec) -> None:
        return None


PROTOCOL: Final = FreeSwitch()
