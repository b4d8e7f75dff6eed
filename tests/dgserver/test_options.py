"""Every `/v1/listen` streaming parameter the official `deepgram-sdk` client takes, sent by that
client to dg-server one by one and in combinations: each is honoured (its effect is in the
results) or refused with a 400 that says why, none silently ignored (docs/deepgram.md's table).

The engine behind dg-server here is a scripted one, which says the same punctuated sentence for
every message of audio (numbers, a filler, spoken punctuation, a unit, a swear word, a misheard
name), so that what each formatting option does to it shows; the real engine's turn, where
speech is the point (endpointing, numerals, search), is in test_options_local.py. `Configure`
mid-stream is here too."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import pytest

from asr_worker.core.provider_events import ProviderEvent, TranscriptResult, UtteranceEnd, Word
from asr_worker.dgserver import DeepgramServer
from asr_worker.providers.base import ProviderHealth, ResultQueue, StreamRequest

# What the scripted engine says for every message of audio, as an engine writes it.
SAID = (
    "Um, hello. I'm calling about order nine two eight, for twenty three dollars. "
    "It weighs 500 grams comma and ships to Zorblacks period Oh shit."
)
WORD_S = 0.1  # each word's length, back to back


def script_result(start: float, channel: int, channels: int) -> TranscriptResult:
    words = tuple(
        Word(
            token.lower().strip(".,"),
            round(start + i * WORD_S, 3),
            round(start + (i + 1) * WORD_S, 3),
            0.9,
            token,
        )
        for i, token in enumerate(SAID.split())
    )
    duration = round(len(words) * WORD_S, 3)
    return TranscriptResult(channel, True, True, SAID, 0.9, start, duration, words, channels=channels)


class _ScriptedStream:
    def __init__(self, request: StreamRequest, takes_keyterms: bool) -> None:
        self.request = request
        self.keyterms = request.options.keyterms
        self._takes_keyterms = takes_keyterms
        self._results = ResultQueue(100)
        self._said = 0

    async def send_audio(self, data: bytes) -> None:
        channels = self.request.fmt.channels
        start = self._said * len(SAID.split()) * WORD_S
        for channel in range(channels):
            result = script_result(start, channel, channels)
            self._results.put(result)
            self._results.put(UtteranceEnd(channel, result.words[-1].end))
        self._said += 1

    async def keepalive(self) -> None:
        pass

    async def finalize(self) -> None:
        pass

    async def close_stream(self) -> None:
        self._results.finish()

    async def abort(self) -> None:
        self._results.finish()

    def events(self) -> AsyncIterator[ProviderEvent]:
        return self._results.events()

    def update_keyterms(self, keyterms: tuple[str, ...]) -> bool:
        if self._takes_keyterms:
            self.keyterms = keyterms
        return self._takes_keyterms


class ScriptedEngine:
    name = "scripted"

    def __init__(self, *, takes_keyterms: bool = True) -> None:
        self.takes_keyterms = takes_keyterms
        self.streams: list[_ScriptedStream] = []

    async def open(self, request: StreamRequest) -> _ScriptedStream:
        stream = _ScriptedStream(request, self.takes_keyterms)
        self.streams.append(stream)
        return stream

    def transcribes(self) -> str:
        return "en"  # as the local engine, loaded for one language

    def health(self) -> ProviderHealth:
        return ProviderHealth(ok=True)

    async def aclose(self) -> None:
        pass


def _client(port: int) -> Any:
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    here = f"127.0.0.1:{port}"
    environment = DeepgramClientEnvironment(
        base=f"http://{here}", production=f"ws://{here}", agent=f"ws://{here}", agent_rest=f"http://{here}"
    )
    return AsyncDeepgramClient(api_key="sdk-key", environment=environment)


def _dump(message: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = message.model_dump(exclude_none=True)
    return dumped


async def sdk_stream(port: int, query: Mapping[str, object], channels: int = 1) -> list[dict[str, Any]]:
    """What the official SDK's listen.v1 client receives for two messages of audio with these
    parameters, then CloseStream: every message, as dicts."""
    params: dict[str, Any] = {"model": "nova-3", "encoding": "linear16", "sample_rate": 8000}
    beyond = {k: v for k, v in query.items() if k in BEYOND_SDK}  # the SDK's way to send those
    params.update({k: v for k, v in query.items() if k not in BEYOND_SDK})
    if beyond:
        params["request_options"] = {"additional_query_parameters": beyond}
    if channels == 2:
        params.update(channels=2, multichannel="true")
    received: list[dict[str, Any]] = []
    async with _client(port).listen.v1.connect(**params) as connection:
        for _ in range(2):
            await connection.send_media(b"\x00\x00" * 800 * channels)
        await connection.send_close_stream()
        async with asyncio.timeout(10):
            async for message in connection:
                received.append(_dump(message))
    return received


async def refusal(port: int, query: Mapping[str, str]) -> tuple[int, str]:
    """The status and `dg-error` of a handshake dg-server refuses (read from the refusal itself:
    the SDK's ApiError carries only the status)."""
    url = f"ws://127.0.0.1:{port}/v1/listen"
    params = {"model": "nova-3", "encoding": "linear16", "sample_rate": "8000", **query}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, params=params, headers={"Authorization": "Token k"})
    headers: Mapping[str, str] = refused.value.headers or {}
    return refused.value.status, str(headers.get("dg-error", ""))


def finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "Results" and m.get("is_final")]


def transcript(messages: list[dict[str, Any]]) -> str:
    return str(finals(messages)[0]["channel"]["alternatives"][0]["transcript"])


# --- what each parameter does ------------------------------------------------------------------

Check = Callable[[list[dict[str, Any]], ScriptedEngine], None]


def says(*parts: str) -> Check:
    def check(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
        text = transcript(messages)
        for part in parts:
            assert part in text, (part, text)

    return check


def lacks(*parts: str) -> Check:
    def check(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
        text = transcript(messages)
        for part in parts:
            assert part not in text, (part, text)

    return check


def asked(check: Callable[[StreamRequest], bool]) -> Check:
    """The engine's stream was asked for it (what the engine itself honours)."""

    def run(_messages: list[dict[str, Any]], engine: ScriptedEngine) -> None:
        assert check(engine.streams[0].request), engine.streams[0].request.options

    return run


def search_hits(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    [found] = finals(messages)[0]["channel"]["search"]
    assert found["query"] == "zorblax"
    [hit] = found["hits"]
    assert hit["snippet"] == "zorblacks" and 0.5 < hit["confidence"] < 0.9
    assert hit["end"] - hit["start"] == pytest.approx(WORD_S)


def extra_echoed(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    for result in (m for m in messages if m["type"] == "Results"):
        assert result["metadata"]["extra"] == {"team": "support", "case": "42"}


def speakers_are_sides(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    for result in finals(messages):
        channel = result["channel_index"][0]
        assert {w["speaker"] for w in result["channel"]["alternatives"][0]["words"]} == {channel}


def model_named(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    assert finals(messages)[0]["metadata"]["model_info"]["name"] == "nova-2-phonecall"


def utterance_ends(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    assert [m["type"] for m in messages].count("UtteranceEnd") == 2


def no_utterance_end(messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    assert "UtteranceEnd" not in [m["type"] for m in messages]


def accepted(_messages: list[dict[str, Any]], _engine: ScriptedEngine) -> None:
    pass


# Deepgram's documented parameters the SDK's connect does not list (sent as its additional query
# parameters).
BEYOND_SDK = frozenset({"filler_words", "measurements", "detect_language", "no_delay"})

# Each parameter of the SDK's listen.v1 connect, and those: queries it honours (with what shows it), or
# refuses (with words of the reason), or takes as Deepgram's semantics leave nothing to do here.
HONOURED: dict[str, list[tuple[dict[str, object], Check]]] = {
    "punctuate": [
        ({"punctuate": "true"}, says("Hello. I'm")),
        ({"punctuate": "false"}, says("hello i'm calling")),
    ],
    "smart_format": [({"smart_format": "true"}, says("order 9 2 8, for 23 dollars.", "It weighs 500 grams"))],
    "numerals": [
        ({"numerals": "true"}, says("9 2 8", " 23 ")),
        ({"numerals": "false"}, says("five hundred")),
    ],
    "profanity_filter": [({"profanity_filter": "true"}, says("oh ****")), ({}, says("oh shit"))],
    "dictation": [
        ({"dictation": "true", "punctuate": "true"}, says("five hundred grams, and ships to Zorblacks. Oh"))
    ],
    "measurements": [({"measurements": "true", "numerals": "true"}, says("500 g comma"))],
    "filler_words": [
        ({"filler_words": "true", "punctuate": "true"}, says("Um, hello.")),
        ({"filler_words": "false", "punctuate": "true"}, lacks("Um")),
    ],
    "search": [({"search": "zorblax"}, search_hits)],
    "replace": [({"replace": "zorblacks:Zorblax", "punctuate": "true"}, says("ships to Zorblax period"))],
    "tag": [({"tag": ["prod", "support"]}, accepted)],  # logged with the request: see below
    "extra": [({"extra": ["team:support", "case:41", "case:42"]}, extra_echoed)],
    "endpointing": [
        ({"endpointing": 250}, asked(lambda r: r.options.endpointing_ms == 250)),
        ({"endpointing": "false"}, asked(lambda r: r.options.endpointing_ms == -1)),
        ({}, asked(lambda r: r.options.endpointing_ms is None)),  # the engine's own, not Deepgram's 10
    ],
    "utterance_end_ms": [
        ({"utterance_end_ms": 1500, "interim_results": "true"}, utterance_ends),
        ({"utterance_end_ms": 1500}, no_utterance_end),  # Deepgram's rule: it needs interim results
    ],
    "interim_results": [({"interim_results": "true"}, accepted)],
    "vad_events": [({"vad_events": "true"}, accepted)],
    "keyterm": [
        (
            {"keyterm": ["Zorblax", "Acme Cloud"]},
            asked(lambda r: r.options.keyterms == ("Zorblax", "Acme Cloud")),
        )
    ],
    "keywords": [({"keywords": "Zorblax:2"}, asked(lambda r: r.options.keyterms == ("Zorblax",)))],
    "redact": [({"redact": "numbers"}, says("[REDACTED]"))],
    "diarize": [({"diarize": "true", "channels": 2, "multichannel": "true"}, speakers_are_sides)],
    "diarize_model": [
        ({"diarize_model": "latest", "channels": 2, "multichannel": "true"}, speakers_are_sides)
    ],
    "encoding": [({"encoding": "mulaw"}, accepted)],
    "sample_rate": [({"sample_rate": 16000}, accepted)],
    "channels": [({"channels": 2, "multichannel": "true"}, accepted)],
    "multichannel": [({"channels": 2, "multichannel": "true"}, accepted)],
    "model": [({"model": "nova-2-phonecall"}, model_named)],
    # Deepgram's semantics leave nothing to change here (docs/deepgram.md says why):
    "version": [({"version": "latest"}, accepted)],
    "mip_opt_out": [({"mip_opt_out": "true"}, accepted)],
    # LiveKit Agents' Deepgram plugin sends no_delay=true by default: results are never held
    # back for formatting here, which is what it asks.
    "no_delay": [({"no_delay": "true"}, accepted)],
    "detect_entities": [({"detect_entities": "false"}, accepted)],
    # The engine's own language, as a client in the field names it (LiveKit's `en-US`).
    # (the mock engine takes any language; the local engine's refusals are test_language_callback's)
    "language": [
        ({"language": "en-US"}, accepted),
        ({"language": "en"}, accepted),
        ({"language": "es"}, accepted),
        ({"language": "multi"}, accepted),
    ],
    "language_hint": [({"language_hint": "en"}, accepted)],
}
REFUSED: dict[str, list[tuple[dict[str, str], str]]] = {
    "detect_entities": [({"detect_entities": "true"}, "needs an entity model")],
    "diarize": [({"diarize": "true"}, "two-channel streams only")],
    "diarize_model": [({"diarize_model": "v2"}, "diarize_model must be one of v1, latest")],
    "encoding": [({"encoding": "opus"}, "encoding must be one of linear16, mulaw, alaw")],
    "sample_rate": [({"sample_rate": "4000"}, "sample_rate must be from 8000 to 48000")],
    "channels": [({"channels": "2"}, "multichannel=true")],
    "endpointing": [({"endpointing": "soon"}, "endpointing must be a number of milliseconds")],
    "utterance_end_ms": [({"utterance_end_ms": "200"}, "utterance_end_ms must be from 1000 to 5000")],
    "numerals": [({"numerals": "maybe"}, "numerals must be true or false")],
    "replace": [({"replace": "no-colon"}, "replace must be find:replacement")],
    "extra": [({"extra": "no-colon"}, "extra must be key:value")],
    "redact": [({"redact": "pii"}, "need an entity model")],
    "tag": [({"tag": "x" * 129}, "a tag is at most 128 characters")],
    "language": [({"language": "klingon!"}, "must be a language code")],
    "language_hint": [({"language_hint": "fr"}, "language_hint=fr is not offered here")],
    "detect_language": [({"detect_language": "true"}, "for recorded audio, not streams")],
    # (this server has no ASR_WEBHOOK_SECRET; a signed callback is test_language_callback's)
    "callback": [({"callback": "https://crm.example/hook"}, "callback needs ASR_WEBHOOK_SECRET")],
    "callback_method": [({"callback_method": "PUT"}, "callbacks are POSTed")],
}
COMBINATIONS: list[tuple[dict[str, object], list[Check]]] = [
    (  # LiveKit Agents' Deepgram plugin's defaults (its STT with no arguments)
        {
            "language": "en-US",
            "interim_results": "true",
            "punctuate": "true",
            "smart_format": "true",
            "no_delay": "true",
            "vad_events": "true",
            "endpointing": 25,
            "filler_words": "false",
            "profanity_filter": "false",
        },
        [says("Hello. I'm calling about order 9 2 8", "Oh shit."), lacks("Um")],
    ),
    (  # Pipecat's DeepgramSTTService's defaults
        {
            "language": "en",
            "interim_results": "true",
            "punctuate": "true",
            "smart_format": "true",
            "profanity_filter": "true",
            "vad_events": "false",
        },
        [says("order 9 2 8", "Oh ****.")],
    ),
    (
        {
            "smart_format": "true",
            "profanity_filter": "true",
            "search": "zorblax",
            "extra": ["team:support", "case:42"],
        },
        [says("9 2 8", "Oh ****."), search_hits, extra_echoed],
    ),
    (
        {
            "numerals": "true",
            "measurements": "true",
            "dictation": "true",
            "punctuate": "true",
            "replace": "oh:Ah",
        },
        [says("500 g, and ships to Zorblacks. Ah shit.")],
    ),
    (
        {
            "diarize": "true",
            "channels": 2,
            "multichannel": "true",
            "interim_results": "true",
            "utterance_end_ms": 1000,
            "filler_words": "true",
        },
        [speakers_are_sides, says("um hello"), lacks("Um,")],
    ),
]


def sdk_parameters() -> set[str]:
    from deepgram.listen.v1.client import AsyncV1Client

    taken = inspect.signature(AsyncV1Client.connect).parameters
    return set(taken) - {"self", "authorization", "request_options"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_parameter_of_the_sdk_is_decided() -> None:
    """A parameter a new SDK adds fails here until the table (and docs/deepgram.md) decides it."""
    assert sdk_parameters() | BEYOND_SDK == set(HONOURED) | set(REFUSED)
    assert not BEYOND_SDK & sdk_parameters()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK uses websockets' legacy client
async def test_each_parameter_alone_and_in_combinations_is_honoured_or_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = ScriptedEngine()
    server = DeepgramServer(engine)
    cases = [(q, [c]) for cases in HONOURED.values() for q, c in cases]
    caplog.set_level(logging.INFO, logger="asr_worker.dgserver")
    async with server.running():
        for query, checks in [*cases, *COMBINATIONS]:
            engine.streams.clear()
            channels = int(str(query.get("channels", 1)))
            rest = {k: v for k, v in query.items() if k not in ("channels", "multichannel")}
            messages = await sdk_stream(server.port, rest, channels)
            assert messages and messages[-1]["type"] == "Metadata", query
            for check in checks:
                check(messages, engine)
        for name, refusals in REFUSED.items():
            for refused, reason in refusals:
                status, said = await refusal(server.port, refused)
                assert status == 400 and reason in said, (name, status, said)
    tagged = [r for r in caplog.records if r.getMessage() == "dg-server stream tagged"]
    assert [getattr(r, "tags", None) for r in tagged][:1] == [["prod", "support"]]


async def configure_round(
    port: int, steps: list[dict[str, Any] | str], query: Mapping[str, object] | None = None
) -> list[dict[str, Any]]:
    """Each step, in turn, on one stream: a Configure message (as the SDK's send_configure sends
    its model; a str as a raw text frame) answered before the next, or audio (the string
    "audio") answered with the engine's result."""
    from deepgram.listen.v1.types.listen_v1configure import ListenV1Configure

    params: dict[str, Any] = {"model": "nova-3", "encoding": "linear16", "sample_rate": 8000, **(query or {})}
    answers: list[dict[str, Any]] = []
    async with _client(port).listen.v1.connect(**params) as connection:
        for step in steps:
            if step == "audio":
                await connection.send_media(b"\x00\x00" * 800)
            elif isinstance(step, str):
                await connection._websocket.send(step)  # the SDK sends only well-formed ones
            else:
                await connection.send_configure(ListenV1Configure(**step))
            async with asyncio.timeout(10):
                answer = _dump(await connection.recv())
                while answer["type"] in ("UtteranceEnd", "SpeechStarted"):
                    answer = _dump(await connection.recv())
            answers.append(answer)
        await connection.send_close_stream()
    return answers


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_configure_changes_keyterms_and_features_mid_stream_and_answers_as_deepgram() -> None:
    engine = ScriptedEngine()
    server = DeepgramServer(engine)
    async with server.running():
        answers = await configure_round(
            server.port,
            [
                "audio",
                {"features": {"numerals": True, "profanity_filter": True}},
                "audio",
                {"keyterms": ["Zorblax", "Acme Cloud"], "features": {"numerals": False}},
                "audio",
                {"keyterms": ["x" * 101]},  # over the limit: refused, nothing changes
                '{"type": "Configure", "features": {"teleport": true}}',  # not Deepgram's: an Error
                "{not json",
                "audio",
            ],
            {"keyterm": "Acme", "punctuate": "true"},
        )
    kinds = [a["type"] for a in answers]
    assert kinds == [
        "Results",
        "ConfigureSuccess",
        "Results",
        "ConfigureSuccess",
        "Results",
        "ConfigureFailure",
        "Error",
        "Error",
        "Results",
    ]
    text = [str(a["channel"]["alternatives"][0]["transcript"]) for a in answers if a["type"] == "Results"]
    assert "nine two eight" in text[0] and "Oh shit." in text[0]
    assert "9 2 8" in text[1] and "Oh ****." in text[1]  # the features, from the next result on
    assert "nine two eight" in text[2] and "Oh ****." in text[2] and text[3] == text[2]
    [request_id] = {a["request_id"] for a in answers if a["type"].startswith("Configure")}
    assert request_id == server.connections[0].request_id
    assert "keyterms" not in answers[1] and answers[3]["keyterms"] == ["Zorblax", "Acme Cloud"]
    assert answers[5]["code"] == "CONFIGURE_KEYTERM_LIMIT_EXCEEDED"
    assert answers[6]["variant"] == "SchemaError" and "teleport" in answers[6]["description"]
    assert engine.streams[0].keyterms == ("Zorblax", "Acme Cloud")  # the refused update changed nothing


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_configure_keyterms_on_an_engine_that_takes_none_fails_and_changes_nothing() -> None:
    engine = ScriptedEngine(takes_keyterms=False)  # as the local engine's Moonshine
    server = DeepgramServer(engine)
    async with server.running():
        answers = await configure_round(
            server.port, [{"keyterms": ["Zorblax"], "features": {"numerals": True}}, "audio"]
        )
    assert (
        answers[0]["type"] == "ConfigureFailure" and answers[0]["code"] == "CONFIGURE_KEYTERMS_NOT_SUPPORTED"
    )
    assert "nine two eight" in answers[1]["channel"]["alternatives"][0]["transcript"]  # numerals not applied
