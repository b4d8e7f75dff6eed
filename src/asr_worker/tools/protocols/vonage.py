"""`--protocol vonage`: Vonage Voice API WebSockets on `/v1/vonage`, as an NCCO `connect` to a
`websocket` endpoint streams a call:

    {"type": "websocket", "uri": "wss://HOST/v1/vonage?interaction_id=ID",
     "content-type": "audio/l16;rate=16000", "authorization": {"type": "vonage"}}

the call's id on the URI, `websocket:connected` first (the endpoint's `headers` at its top
level: `tenant_id`, where given), then 16-bit PCM in 20 ms binary frames at 8, 16 or 24 kHz,
mono (a mix of the conversation: a two-channel file is mixed); the hangup closes the socket.
With `--vonage-signature-secret` the upgrade carries the JWT Vonage signs its requests with
(`authorization` type `vonage`: HS256 with the account's signature secret, fresh `iat` and
`jti`), which the worker checks against its ASR_VONAGE_SIGNATURE_SECRETS; else a key goes as
`authorization` type `custom` sends one, `Authorization: Bearer KEY`."""

from __future__ import annotations

import time
import uuid
from typing import ClassVar, Final

import jwt

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import vonage_messages as messages
from .base import CallSpec, bearer_authorization, highest_rate
from .forks import Fork

# The account and application a signed upgrade names (made up; the worker reads neither).
API_KEY: Final = "a1b2c3d4"
APPLICATION_ID: Final = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


def signed_token(secret: str, now_s: float) -> str:
    """The JWT Vonage puts on a request it signs: HS256 with the account's signature secret,
    issued now, with an id of its own (the worker refuses one it has seen)."""
    claims = {
        "iat": int(now_s),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": API_KEY,
        "application_id": APPLICATION_ID,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class Vonage(Fork):
    name: ClassVar[str] = "vonage"
    path: ClassVar[str] = "/v1/vonage"
    key_hint: ClassVar[str] = (
        "a key with stream scope (--api-key, or ASR_WORKER_TOKEN), or --vonage-signature-secret "
        "with one of the worker's ASR_VONAGE_SIGNATURE_SECRETS"
    )

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, messages.SAMPLE_RATES), 1)

    def query(self, call: CallSpec) -> dict[str, str]:
        return {"interaction_id": call.interaction_id}

    def headers(self, call: CallSpec) -> dict[str, str]:
        secret = call.keys.vonage_signature_secret
        if secret:
            return {"Authorization": f"Bearer {signed_token(secret, time.time())}"}
        return bearer_authorization(call.keys.api_key)

    def first_frame(self, call: CallSpec) -> str:
        headers = {"tenant_id": call.tenant_id} if call.tenant_id else {}
        return messages.connected(call.fmt.sample_rate, headers)


PROTOCOL: Final = Vonage()
