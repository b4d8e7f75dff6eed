"""dg-server's `/v2/listen` (Flux) over real sockets, on the mock engine: to a raw WebSocket client
message by message, and to the official deepgram-sdk's `listen.v2` client. The real engine's
conversations, through the SDK, Pipecat and LiveKit, are in tests/integration/test_flux_clients.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import cast

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from asr_worker.deepgram import flux, protocol
from asr_worker.dgserver import Faults
from asr_worker.providers.mock import MockProvider, expected_words
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.dg_server import running_dg_server

QUERY = "?model=flux-general-en&encoding=linear16&sample_rate=8000"
TURN_1 = speechlike(0.6)
TURN_2 = speechlike(0.8, seed=2)
# Two turns: each speech is followed by more silence than the default end of turn needs (0.47 s
# after its last word, on the audio's clock). Each part is whole mock word windows (0.2 s), so
# the words each turn must have are its own audio's.
CONVERSATION = silence(0.4) + TURN_1 + silence(1.0) + TURN_2 + silence(1.0)


def _obj(value: object) -> dict[str, object]:
    assert isinstance(value, dict)
    return cast(dict[str, object], value)


async def _receive_all(ws: ClientConnection) -> list[dict[str, object]]:
    """Every message until the server closes, however it closes."""
    out = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10):
            async for message in ws:
                assert isinstance(message, str), "a Flux server sends only JSON text frames"
                flux.parse_server_message(message)  # valid protocol, every one
                out.append(_obj(json.loads(message)))
    return out


async def _until(ws: ClientConnection, kind: str, event: str | None = None) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            message = _obj(json.loads(await ws.recv()))
            if message["type"] == kind and (event is None or message.get("event") == event):
                return message


def _turns(messages: list[dict[str, object]]) -> list[dict[str, object]]:
    return [m for m in messages if m["type"] == "TurnInfo" and m["event"] != flux.UPDATE]


def _words(message: dict[str, object]) -> list[str]:
    words = message["words"]
    assert isinstance(words, list)
    return [str(_obj(w)["word"]) for w in words]


async def test_a_conversation_gets_connected_then_each_turns_start_updates_and_end_then_close_1000() -> None:
    async with (
        running_dg_server() as server,
        connect(server.flux_url + QUERY, additional_headers={"Authorization": "Token k"}) as ws,
    ):
        assert ws.response is not None and ws.response.headers["dg-request-id"]
        for chunk in frames(CONVERSATION, ms=80):
            await ws.send(chunk)
        await ws.send('{"type": "CloseStream"}')
        messages = await _receive_all(ws)
        assert ws.close_code == 1000
    assert messages[0]["type"] == "Connected"
    assert [m["sequence_id"] for m in messages] == list(range(len(messages)))
    assert {m["request_id"] for m in messages} == {ws.response.headers["dg-request-id"]}
    turns = _turns(messages)
    assert [(t["event"], t["turn_index"]) for t in turns] == [
        ("StartOfTurn", 0),
        ("EndOfTurn", 0),
        ("StartOfTurn", 1),
        ("EndOfTurn", 1),
    ]
    assert _words(turns[1]) == expected_words(TURN_1, PCM8K)
    assert _words(turns[3]) == expected_words(TURN_2, PCM8K)
    assert turns[1]["transcript"] == " ".join(_words(turns[1]))
    assert all(t["trigger"] == "model" and _num(t["end_of_turn_confidence"]) >= 0.7 for t in turns[1::2])
    updates = [m for m in messages if m.get("event") == flux.UPDATE]
    assert len(updates) >= 8  # about every 0.25 s of the 3.8 s, in and between turns
    ends = [_num(m["audio_window_end"]) for m in messages if m["type"] == "TurnInfo"]
    assert ends == sorted(ends) and ends[-1] <= 3.8 + 1e-6
    record = server.flux_connections[0]
    assert record.turn_events() == ["StartOfTurn", "EndOfTurn", "StartOfTurn", "EndOfTurn"]
    assert bytes(record.audio) == CONVERSATION and record.closed_by == "server"


def _num(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


async def test_force_end_turn_ends_the_turn_at_once_without_any_silence() -> None:
    async with (
        running_dg_server() as server,
        connect(server.flux_url + QUERY + "&eot_threshold=1.0") as ws,
    ):
        for chunk in frames(TURN_1, ms=100):
            await ws.send(chunk)
        start = await _until(ws, "TurnInfo", flux.START_OF_TURN)
        await ws.send('{"type": "ForceEndTurn"}')
        end = await _until(ws, "TurnInfo", flux.END_OF_TURN)  # no more audio sent meanwhile
        assert (end["trigger"], end["turn_index"]) == ("manual", start["turn_index"])
        assert _words(end) == expected_words(TURN_1, PCM8K)
        await ws.send('{"type": "ForceEndTurn"}')  # no turn under way: nothing to end
        for chunk in frames(TURN_2 + silence(1.0), ms=100):
            await ws.send(chunk)
        await ws.send('{"type": "CloseStream"}')
        rest = await _receive_all(ws)
    # eot_threshold=1.0: no confidence ends the second turn; the stream's close does.
    assert [(t["event"], t["turn_index"], t.get("trigger")) for t in _turns(rest)] == [
        ("StartOfTurn", 1, None),
        ("EndOfTurn", 1, "close_stream"),
    ]
    provider = server.provider
    assert isinstance(provider, MockProvider) and provider.streams[0].controls[0] == "Finalize"


async def test_configure_answers_success_with_every_value_in_force_or_failure_and_the_stream_goes_on() -> (
    None
):
    async with (
        running_dg_server() as server,
        connect(server.flux_url + QUERY + "&keyterm=Barton") as ws,
    ):
        await _until(ws, "Connected")
        await ws.send(
            json.dumps({"type": "Configure", "thresholds": {"eot_threshold": 0.9}, "keyterms": ["Norland"]})
        )
        ok = await _until(ws, "ConfigureSuccess")
        assert ok["thresholds"] == {"eot_threshold": 0.9, "eot_timeout_ms": 5000}
        assert ok["keyterms"] == ["Norland"]
        await ws.send(json.dumps({"type": "Configure", "thresholds": {"eager_eot_threshold": 0.95}}))
        refused = await _until(ws, "ConfigureFailure")
        assert refused["code"] == "INVALID_CONFIGURE" and "eager_eot_threshold" in str(refused["description"])
        await ws.send(json.dumps({"type": "Configure", "language_hints": ["de"]}))
        unsupported = await _until(ws, "ConfigureFailure")
        assert unsupported["code"] == "UNSUPPORTED_SETTING"
        await ws.send(json.dumps({"type": "Configure", "endpointing": 300}))
        assert (await _until(ws, "ConfigureFailure"))["code"] == "INVALID_CONFIGURE"
        await ws.send("not json")
        warning = await _until(ws, "Warning")
        assert warning["code"] == "UNPARSABLE_CLIENT_MESSAGE"
        await ws.send('{"type": "Finalize"}')
        assert "unknown message type 'Finalize'" in str((await _until(ws, "Warning"))["description"])
        for chunk in frames(TURN_1 + silence(2.0), ms=100):  # the stream goes on: 0.9 needs 1.8 s
            await ws.send(chunk)
        end = await _until(ws, "TurnInfo", flux.END_OF_TURN)
        assert _num(end["end_of_turn_confidence"]) >= 0.9
    provider = server.provider
    assert isinstance(provider, MockProvider)
    stream = provider.streams[0]
    assert stream.request.options.keyterms == ("Barton",) and stream.keyterms == ("Norland",)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?encoding=linear16&sample_rate=8000", "model is required"),
        ("?model=nova-3&encoding=linear16&sample_rate=8000", "model must be flux-general-en"),
        (QUERY + "&eager_eot_threshold=0.8&eot_threshold=0.7", "must not be above eot_threshold"),
        (QUERY + "&endpointing=300", "'endpointing' is not a /v2/listen parameter"),
        (QUERY + "&redact=numbers", "redact is not honoured"),
    ],
)
async def test_what_is_not_honoured_is_refused_400_with_deepgrams_body_and_the_reason(
    query: str, reason: str
) -> None:
    async with running_dg_server(api_key="the-key") as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.flux_url + query, additional_headers={"Authorization": "Token the-key"})
        response = refused.value.response
        assert response.status_code == 400 and reason in response.headers["dg-error"]
        body = json.loads(bytes(response.body or b""))
        assert body["err_code"] == "Bad Request" and reason in body["err_msg"]
        assert body["request_id"] == response.headers["dg-request-id"]
        with pytest.raises(InvalidStatus) as unauthorized:
            await connect(server.flux_url + QUERY, additional_headers={"Authorization": "Token nope"})
        assert unauthorized.value.response.status_code == 401


async def test_the_faults_strike_flux_connections_too() -> None:
    async with running_dg_server(faults=Faults(reject_status=503, reject_count=1)) as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.flux_url + QUERY)
        assert refused.value.response.status_code == 503
        server.faults.close_1011_after_ms = 300
        async with connect(server.flux_url + QUERY) as ws:
            with contextlib.suppress(ConnectionClosed):
                for chunk in frames(TURN_1, ms=100):
                    await ws.send(chunk)
                async for _ in ws:
                    pass
            assert ws.close_code == 1011
        assert server.injected == {"reject_503": 1, "close_1011": 1}


async def test_an_idle_flux_stream_is_closed_1011_with_deepgrams_net0001_reason() -> None:
    async with running_dg_server(idle_timeout_s=0.3) as server, connect(server.flux_url + QUERY) as ws:
        messages = await _receive_all(ws)
        assert ws.close_code == 1011 and ws.close_reason == protocol.NET0001_REASON
    assert [m["type"] for m in messages] == ["Connected"]


async def test_an_engine_failure_is_a_fatal_error_then_close_1011() -> None:
    async with running_dg_server(drop_after_ms=300) as server, connect(server.flux_url + QUERY) as ws:
        with contextlib.suppress(ConnectionClosed):
            for chunk in frames(TURN_1, ms=100):
                await ws.send(chunk)
        messages = await _receive_all(ws)
        assert ws.close_code == 1011
    assert messages[-1]["type"] == "Error" and messages[-1]["code"] == "INTERNAL_SERVER_ERROR"
    assert [m["sequence_id"] for m in messages] == list(range(len(messages)))


# --- the official SDK's listen.v2 client -----------------------------------------------------------


# deepgram-sdk 7.x uses websockets' legacy client, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_official_sdks_listen_v2_client_gets_typed_turns_configure_and_force_end_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment
    from deepgram.listen.v2.types import ListenV2Configure, ListenV2ConfigureThresholds

    caplog.set_level(logging.INFO, logger="asr_worker.dgserver")
    async with running_dg_server(api_key="sdk-key") as server:
        base = f"127.0.0.1:{server.port}"
        client = AsyncDeepgramClient(
            api_key="sdk-key",
            environment=DeepgramClientEnvironment(
                base=f"http://{base}",
                production=f"ws://{base}",
                agent=f"ws://{base}",
                agent_rest=f"http://{base}",
            ),
        )
        received: list[object] = []
        async with client.listen.v2.connect(
            model="flux-general-en",
            encoding="linear16",
            sample_rate=8000,
            eot_threshold="0.7",
            tag="sdk-test",
        ) as connection:
            connection.on(EventType.MESSAGE, received.append)
            async with asyncio.TaskGroup() as tg:
                listening = tg.create_task(connection.start_listening())
                await connection.send_configure(
                    ListenV2Configure(thresholds=ListenV2ConfigureThresholds(eager_eot_threshold=0.5))
                )
                for chunk in frames(CONVERSATION + TURN_1, ms=100):
                    await connection.send_media(chunk)
                    await asyncio.sleep(0.01)  # a client streams at about real time (here 10x)
                await connection.send_force_end_turn()
                await connection.send_close_stream()
                await asyncio.wait_for(listening, 30)
    names = [type(m).__name__ for m in received]
    assert names[0] == "ListenV2Connected" and "ListenV2ConfigureSuccess" in names
    turns = [
        m for m in received if type(m).__name__ == "ListenV2TurnInfo" and getattr(m, "event", "") != "Update"
    ]
    events = [(getattr(t, "event", ""), getattr(t, "turn_index", -1)) for t in turns]
    assert events[:4] == [("StartOfTurn", 0), ("EagerEndOfTurn", 0), ("EndOfTurn", 0), ("StartOfTurn", 1)]
    assert events[4:] == [("EagerEndOfTurn", 1), ("EndOfTurn", 1), ("StartOfTurn", 2), ("EndOfTurn", 2)]
    ends = [t for t in turns if getattr(t, "event", "") == "EndOfTurn"]
    assert [getattr(t, "trigger", None) for t in ends] == ["model", "model", "manual"]
    assert [w.word for w in getattr(ends[0], "words", [])] == expected_words(TURN_1, PCM8K)
    assert server.flux_connections[0].params.tags == ("sdk-test",)
    ended = [r for r in caplog.records if r.getMessage() == "flux stream ended"]
    assert [(getattr(r, "tags", None), getattr(r, "turns", None)) for r in ended] == [(["sdk-test"], 3)]
    for a, b in itertools.pairwise(received):
        assert getattr(b, "sequence_id", 0) == getattr(a, "sequence_id", 0) + 1
