"""Failover to the real local engine: the Deepgram provider points at a server that refuses
every handshake with 503, `ASR_FALLBACK_PROVIDER=local`, and a call of real speech (espeak-ng)
is transcribed end to end by the fallback, correctly. One short call: the engine is CPU heavy."""

from __future__ import annotations

import aiohttp
import pytest

from asr_worker.config import make_fallback, settings_with
from asr_worker.core.audio import Encoding
from asr_worker.dgserver import Faults
from tests.support.client import connect
from tests.support.dg_server import deepgram_worker, running_dg_server
from tests.support.speech import SENTENCES, Speech, word_error_rate
from tests.support.wait import until

pytestmark = pytest.mark.timeout(180)


async def test_a_call_is_transcribed_by_the_local_fallback_while_deepgram_refuses_every_handshake(
    http: aiohttp.ClientSession, speech: Speech
) -> None:
    spoken = speech.call(SENTENCES[0:2], 16000, Encoding.LINEAR16)
    fallback = make_fallback(settings_with(provider="deepgram", fallback_provider="local"))
    assert fallback is not None and fallback.name == "local"
    async with (
        running_dg_server(faults=Faults(reject_status=503)) as server,
        deepgram_worker(server, fallback=fallback, fallback_provider="local") as worker,
    ):
        await until(lambda: fallback.health().ready, timeout_s=120)  # the first run assembles the model
        call = await connect(http, worker, "outage-local", "encoding=linear16&sample_rate=16000&channels=1")
        step = spoken.fmt.bytes_for(0.02)
        await call.send_frames([spoken.data[i : i + step] for i in range(0, len(spoken.data), step)], 0.005)
        await call.end()
        await call.collect(timeout_s=60)
    assert server.handshakes and all(h.status == 503 for h in server.handshakes) and not server.connections
    (changed,) = call.of("provider_changed")
    assert (changed["from"], changed["to"]) == ("deepgram", "local") and changed["at"] == 0.0
    finals = [e for e in call.of("transcript") if e["is_final"] and e["text"]]
    hypothesis = " ".join(str(e["text"]) for e in finals)
    assert word_error_rate(spoken.text, hypothesis) <= 0.10, hypothesis
    assert {e["provider"] for e in call.of("transcript")} == {"local"}
    assert call.of("session_ended")[0]["provider"] == "local" and not call.of("error")
