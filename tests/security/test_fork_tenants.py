"""Tenants on the media-fork routes, over real sockets: a key of another tenant that names a
call's id on any fork route opens a call of its own tenant, never joins the other's, and a claim
of the other tenant is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest

from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider
from asr_worker.tenancy import ApiKeys
from asr_worker.transports.forks import (
    asterisk_messages,
    plivo_messages,
    signalwire_messages,
    telnyx_messages,
    vonage_messages,
)
from tests.conftest import running_worker
from tests.support.audio import PCM8K, speechlike
from tests.support.telephony import ws_url

VICTIM_KEY = "victim-key-5b1e0c"
ATTACKER_KEY = "attacker-key-9d2f41"
KEYS = ApiKeys.parse(f"{VICTIM_KEY}:victim:stream+watch,{ATTACKER_KEY}:attacker:stream+watch")
CALL = "call-1"
FRAME = speechlike(0.02, PCM8K)

# route -> (the URL's query for the call and a tenant claim, subprotocols, what it sends first,
# then whether the audio goes as a binary frame or in the platform's JSON)
Opening = tuple[str, list[str], Callable[[str | None], str], Callable[[bytes], str | bytes]]
ROUTES: dict[str, Opening] = {
    "/v1/freeswitch": (
        "interaction_id",
        ["audio.drachtio.org"],
        lambda t: json.dumps({"uuid": CALL, **_t(t)}),
        bytes,
    ),
    "/v1/jambonz": (
        "",
        ["audio.jambonz.org"],
        lambda t: json.dumps({"callSid": CALL, "sampleRate": 8000, "mixType": "mono", **_t(t)}),
        bytes,
    ),
    "/v1/jambonz/transcribe": (
        "",
        [],
        lambda t: json.dumps({"type": "start", "sampleRateHz": 8000, "options": {"callSid": CALL, **_t(t)}}),
        bytes,
    ),
    "/v1/vonage": ("interaction_id", [], lambda t: vonage_messages.connected(8000, _t(t)), bytes),
    "/v1/asterisk": (
        "interaction_id",
        ["media"],
        lambda t: asterisk_messages.media_start(CALL, "slin"),
        bytes,
    ),
    "/v1/telnyx": (
        "",
        [],
        lambda t: telnyx_messages.start(call_control_id=CALL, params=_t(t) or None),
        lambda f: telnyx_messages.media("inbound", 1, 0, f[:160]),
    ),
    "/v1/plivo": (
        "",
        [],
        lambda t: plivo_messages.start(
            call_id=CALL, tracks=("inbound",), extra_headers=f"tenantId={t}" if t else ""
        ),
        lambda f: plivo_messages.media("inbound", 1, 0, f[:160]),
    ),
    "/v1/signalwire": (
        "",
        [],
        lambda t: signalwire_messages.start(call_sid=CALL, tracks=("inbound",), params=_t(t)),
        lambda f: signalwire_messages.media("inbound", 1, 0, f[:160]),
    ),
}


def _t(tenant: str | None) -> dict[str, str]:
    return {"tenant_id": tenant} if tenant else {}


@pytest.mark.parametrize("path", list(ROUTES))
async def test_another_tenants_key_naming_the_call_gets_a_call_of_its_own_and_no_claim(
    http: aiohttp.ClientSession, path: str
) -> None:
    query_name, protocols, first, audio = ROUTES[path]
    provider = MockProvider()
    async with running_worker(provider, api_keys=KEYS) as worker:
        auth = {"Authorization": f"Bearer {VICTIM_KEY}"}
        victim = await http.ws_connect(
            ws_url(worker, f"/v1/audio/{CALL}?encoding=linear16&sample_rate=8000"), headers=auth
        )
        await victim.send_bytes(speechlike(0.2, PCM8K))
        query = f"?{query_name}={CALL}" if query_name else ""
        attacker = {"Authorization": f"Bearer {ATTACKER_KEY}"}
        ws = await http.ws_connect(ws_url(worker, path + query), protocols=protocols, headers=attacker)
        await ws.send_str(first(None))
        sent = audio(FRAME)
        await (ws.send_bytes(sent) if isinstance(sent, bytes) else ws.send_str(sent))
        for _ in range(500):
            if CallKey("attacker", CALL) in {r.key for r in worker.manager.sessions}:
                break
            await asyncio.sleep(0.01)
        keys = {runner.key for runner in worker.manager.sessions}
        assert keys == {CallKey("victim", CALL), CallKey("attacker", CALL)}
        victims = next(r for r in worker.manager.sessions if r.key.tenant == "victim")
        assert victims.core.source_count == 1  # the attacker's socket did not join it
        await ws.close()

        if path == "/v1/asterisk":
            claimed = path + f"?interaction_id={CALL}-2&tenant_id=victim"
        else:
            claimed = path + (f"?{query_name}={CALL}-2" if query_name else "")
        claim = await http.ws_connect(ws_url(worker, claimed), protocols=protocols, headers=attacker)
        await claim.send_str(first("victim"))
        msg = await asyncio.wait_for(claim.receive(), 10)
        if msg.type is aiohttp.WSMsgType.TEXT:  # jambonz's speech-vendor API is told in its own words first
            assert json.loads(msg.data)["type"] == "error"
            msg = await asyncio.wait_for(claim.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008, msg
        assert "another tenant" in str(msg.extra)
        await victim.close()
