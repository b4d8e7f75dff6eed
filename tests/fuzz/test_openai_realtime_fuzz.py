"""Fuzzing both ends of OpenAI's Realtime protocol (transcription mode): what the server
parses from a client (session updates in both schemas, appends, commits, clears, garbage)
and what the provider parses from a server. Each is a typed value or the module's own error
with a short message. The items a session makes from any run of results keep the protocol's
promises: one `completed` per item, deltas that only append and add up to it. And a live
server answers hostile input with `error` events and goes on."""

from __future__ import annotations

import base64
import json

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from asr_worker.core.events import Transcript
from asr_worker.errors import ProtocolError, ProtocolViolation
from asr_worker.openai_realtime import protocol
from asr_worker.openai_realtime.protocol import (
    G711_ALAW,
    G711_ULAW,
    PCM16,
    SessionConfig,
    SessionUpdate,
    Transcription,
    TurnDetection,
)
from asr_worker.transports.openai_items import ItemTracker
from tests.conftest import running_worker
from tests.support.fuzz import HOSTILE, SENDABLE_STRINGS, bounded, examples, near_valid

CONFIG = SessionConfig(G711_ULAW, Transcription("whisper-1", "en", "names"), None, "far_field", ("x",))
CLIENT_EVENTS: list[dict[str, object]] = [
    protocol.session_update_event(CONFIG, "ga"),
    protocol.session_update_event(CONFIG, "beta"),
    protocol.append_event(b"\x00\x01" * 50),
    protocol.commit_event(),
    protocol.clear_event(),
]
SERVER_EVENTS: list[dict[str, object]] = [
    protocol.session_event("created", "ga", CONFIG, "sess_1", "ev_1"),
    protocol.session_event("updated", "beta", CONFIG, "sess_1", "ev_2"),
    protocol.speech_started_event("item_1", 120, "ev_3"),
    protocol.speech_stopped_event("item_1", 900, "ev_4"),
    protocol.committed_event("item_1", None, "ev_5"),
    protocol.item_event("ga", "item_1", None, "ev_6"),
    protocol.delta_event("item_1", " hello", "ev_7"),
    protocol.completed_event("item_1", "hello there", 0.78, "ev_8"),
    protocol.failed_event("item_1", "boom", "went wrong", "ev_9"),
    protocol.error_event(ProtocolError("invalid_json", "bad", param="p", event_id="e"), "ev_10"),
]


@given(st.sampled_from(CLIENT_EVENTS).flatmap(near_valid))
@examples(300)
def test_client_events_parse_or_fail_with_a_short_error(text: str) -> None:
    try:
        event = protocol.parse_client_event(text, 4096)
    except ProtocolError as exc:
        bounded(exc.message)
        assert exc.event_id is None or len(exc.event_id) <= 128
        json.dumps(protocol.error_event(exc, "ev"))
        return
    if isinstance(event, SessionUpdate):
        config = event.patch.apply(SessionConfig())
        for schema in ("ga", "beta"):
            json.dumps(config.wire(schema, "sess"))


@given(HOSTILE)
@examples(200)
def test_hostile_json_is_refused_cleanly(value: object) -> None:
    for text in (json.dumps(value), json.dumps({"type": "session.update", "session": value})):
        try:
            protocol.parse_client_event(text, 4096)
        except ProtocolError as exc:
            bounded(exc.message)


@given(st.sampled_from(SERVER_EVENTS).flatmap(near_valid))
@examples(300)
def test_server_events_parse_or_fail_with_a_short_error(text: str) -> None:
    try:
        protocol.parse_server_event(text)
    except ProtocolViolation as exc:
        bounded(exc.detail)


configs = st.builds(
    SessionConfig,
    st.sampled_from([PCM16, G711_ULAW, G711_ALAW]),
    st.builds(
        Transcription,
        st.text(min_size=1, max_size=30),
        st.none() | st.text(max_size=10),
        st.none() | st.text(max_size=50),
    ),
    st.none()
    | st.builds(
        TurnDetection,
        st.just("server_vad"),
        st.floats(0, 1),
        st.integers(0, 2000),
        st.integers(0, 2000),
    ),
    st.none() | st.sampled_from(["near_field", "far_field"]),
    st.lists(st.text(max_size=20), max_size=3).map(tuple),
)


@given(configs, st.sampled_from(["ga", "beta"]))
@examples(200)
def test_a_whole_config_survives_either_schema(config: SessionConfig, schema: str) -> None:
    text = json.dumps(protocol.session_update_event(config, schema))  # type: ignore[arg-type]
    event = protocol.parse_client_event(text, 4096)
    assert isinstance(event, SessionUpdate)
    assert event.patch.apply(SessionConfig()) == config


# A result: (is_final, from_finalize, words); `commit` between results in manual mode.
WORDS = st.lists(st.sampled_from(["alpha", "bravo", "charlie", "delta", "echo,", "Foxtrot."]), max_size=6)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.booleans(), st.booleans(), WORDS),
        st.just("commit"),
        st.just("clear"),
    ),
    max_size=40,
)


@given(STEPS, st.booleans(), st.booleans())
@examples(400)
def test_items_complete_once_and_their_deltas_add_up(steps: list[object], vad: bool, ok: bool) -> None:
    out: list[dict[str, object]] = []
    tracker = ItemTracker(out.append, lambda: "ga", prefix="item")
    t = 0.0
    for step in steps:
        if step == "commit":
            tracker.commit(vad, t)
            continue
        if step == "clear":
            tracker.clear(t)
            continue
        assert isinstance(step, tuple)
        is_final, from_finalize, words = step
        end = t + 0.5
        tracker.transcript(
            Transcript(
                "c",
                None,
                1,
                0,
                is_final or from_finalize,
                False,
                from_finalize,
                " ".join(words),
                0.9,
                t,
                end,
                (),
                "mock",
                0,
                0,
            ),
            vad,
        )
        if is_final or from_finalize:
            t = end
    tracker.ended(ok, "x", "y")
    deltas: dict[str, str] = {}
    completed: dict[str, str] = {}
    failed: set[str] = set()
    committed: list[str] = []
    for event in out:
        kind, item = event["type"], str(event.get("item_id", ""))
        if kind == "input_audio_buffer.committed":
            assert item not in committed
            committed.append(item)
        elif kind == "conversation.item.input_audio_transcription.delta":
            assert item not in completed and item not in failed
            deltas[item] = deltas.get(item, "") + str(event["delta"])
        elif kind == "conversation.item.input_audio_transcription.completed":
            assert item not in completed and item not in failed
            completed[item] = str(event["transcript"])
        elif kind == "conversation.item.input_audio_transcription.failed":
            assert item not in completed and item not in failed
            failed.add(item)
    assert set(committed) == set(completed) | failed
    for item, text in completed.items():
        assert deltas.get(item, "") == text


async def test_a_live_session_survives_hostile_input(http: aiohttp.ClientSession) -> None:
    """Hostile messages on a real socket: each gets an `error` event (or is taken), and a
    valid update afterwards is still answered."""
    hostile = [
        "",
        "\x00\xff",
        "[" * 5000,
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01").decode()}),
        json.dumps({"type": "session.update", "session": {"type": "realtime"}}),
        json.dumps(
            {"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "x"}}}}}
        ),
        json.dumps({"type": "input_audio_buffer.commit", "event_id": "e" * 1000}),
        *[json.dumps({"type": s}) for s in ("", "session.update", "conversation.item.create", "💥" * 100)],
    ]
    async with (
        running_worker() as worker,
        http.ws_connect(f"ws://127.0.0.1:{worker.port}/v1/realtime?intent=transcription") as ws,
    ):
        assert json.loads(await ws.receive_str())["type"] == "session.created"
        for text in hostile:
            await ws.send_str(text)
            event = json.loads(await ws.receive_str())
            assert event["type"] == "error", (text[:40], event)
            bounded(event["error"]["message"])
        await ws.send_str(json.dumps(protocol.session_update_event(CONFIG, "ga")))
        assert json.loads(await ws.receive_str())["type"] == "session.updated"


@given(SENDABLE_STRINGS)
@examples(50)
def test_ids_and_models_are_bounded(text: str) -> None:
    update = {
        "type": "session.update",
        "event_id": text * 50,
        "session": {"type": "transcription", "audio": {"input": {"transcription": {"model": text * 50}}}},
    }
    try:
        protocol.parse_client_event(json.dumps(update), 4096)
    except ProtocolError as exc:
        bounded(exc.message)
        assert exc.event_id is None or len(exc.event_id) <= 128
