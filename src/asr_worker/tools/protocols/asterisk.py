"""`--protocol asterisk`: Asterisk's WebSocket channel driver (chan_websocket) on
`/v1/asterisk`, as

    Dial(WebSocket/asr/c(slin16)v(interaction_id=ID))

dials a `websocket_client.conf` connection: the subprotocol `media`, the key as its
`username`/`password` send it (HTTP Basic, the key as the password), the dial string's `v(...)`
(the call's id) on the URI's query, `MEDIA_START` in plain text, then the channel's audio in
20 ms binary frames: signed linear at the file's rate where Asterisk has one (`slin` at 8 kHz,
`slin12` to `slin48`), mono (a two-channel file is mixed, as a channel carries one). The
channel's hangup closes the socket."""

from __future__ import annotations

import secrets
import time
from typing import ClassVar, Final

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import asterisk_messages as messages
from .base import CallSpec, basic_authorization, highest_rate
from .forks import Fork

_USER: Final = "asterisk"  # the connection's username; the worker reads the password
# Asterisk's signed-linear formats by rate.
SLIN: Final = {
    fmt.sample_rate: name for name, fmt in messages.FORMATS.items() if fmt.encoding is Encoding.LINEAR16
}


class Asterisk(Fork):
    name: ClassVar[str] = "asterisk"
    path: ClassVar[str] = "/v1/asterisk"
    subprotocol: ClassVar[str | None] = messages.SUBPROTOCOLS[0]

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, sorted(SLIN)), 1)

    def query(self, call: CallSpec) -> dict[str, str]:
        query = {"interaction_id": call.interaction_id}
        if call.tenant_id:
            query["tenant_id"] = call.tenant_id
        return query

    def headers(self, call: CallSpec) -> dict[str, str]:
        return basic_authorization(_USER, call.keys.api_key)

    def first_frame(self, call: CallSpec) -> str:
        unique_id = f"{int(time.time())}.{secrets.randbelow(1000)}"  # a channel's uniqueid: seconds.count
        return messages.media_start(unique_id, SLIN[call.fmt.sample_rate])


PROTOCOL: Final = Asterisk()
