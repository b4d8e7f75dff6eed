"""`--protocol jambonz`: jambonz's `listen` verb on `/v1/jambonz`, as

    {"verb": "listen", "url": "wss://HOST/v1/jambonz", "sampleRate": 16000, "mixType": "stereo",
     "wsAuth": {"username": "jambonz", "password": "KEY"}, "metadata": {"interaction_id": "ID"}}

streams a call: the subprotocol `audio.jambonz.org`, the key as `wsAuth` sends it (HTTP Basic,
the key as the password), one metadata frame (the call's attributes with a fresh `callSid`,
`sampleRate`, `mixType`, and the verb's `metadata`, which names the call), then 16-bit PCM in
20 ms binary frames: `mono` for a mono file, `stereo` for a two-channel one (the caller on
channel 0); at the file's rate where jambonz has it (8, 16, 24 or 48 kHz). The verb's end, the
hangup, closes the socket."""

from __future__ import annotations

import uuid
from typing import ClassVar, Final

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import jambonz_messages as messages
from .base import CallSpec, basic_authorization, highest_rate
from .forks import Fork
from .media_stream import custom_parameters

_USER: Final = "jambonz"  # wsAuth's username; the worker reads the password
MIX_TYPE: Final = {1: "mono", 2: "stereo"}  # by the file's channels


class Jambonz(Fork):
    name: ClassVar[str] = "jambonz"
    path: ClassVar[str] = "/v1/jambonz"
    subprotocol: ClassVar[str | None] = messages.SUBPROTOCOLS[0]

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(
            Encoding.LINEAR16, highest_rate(fmt.sample_rate, messages.SAMPLE_RATES), min(fmt.channels, 2)
        )

    def query(self, call: CallSpec) -> dict[str, str]:
        return {}

    def headers(self, call: CallSpec) -> dict[str, str]:
        return basic_authorization(_USER, call.keys.api_key)

    def first_frame(self, call: CallSpec) -> str:
        return messages.listen_metadata(
            str(uuid.uuid4()), call.fmt.sample_rate, MIX_TYPE[call.fmt.channels], custom_parameters(call)
        )


PROTOCOL: Final = Jambonz()
