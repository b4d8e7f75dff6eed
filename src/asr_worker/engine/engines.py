"""The speech engines the local provider can run, by name (`ASR_LOCAL_ENGINE`).

Each is one module with a decoder (`decoding.Decoder`) and one line here: how to load it, the
languages it knows, and how many utterances it decodes in one batch. `auto` (the default) is
the first engine here that knows the language asked for: Moonshine for English, being about
ten times cheaper per second of audio with the same accuracy on people's speech at 8 kHz
(docs/local-engine.md), and Whisper for every other language, or when ASR_LOCAL_MODEL names a
Whisper model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .decoding import Decoder, DecoderSettings

AUTO: Final = "auto"


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    load: Callable[[DecoderSettings], Decoder]  # blocking: from a thread, at start
    describe: Callable[[DecoderSettings], str]  # the model, for the start log line
    languages: frozenset[str] | None  # None: every language Whisper knows
    max_batch: int  # utterances decoded together (1: each alone)
    prompted: bool  # whether keyterms and context reach it


def _load_moonshine(settings: DecoderSettings) -> Decoder:
    from .moonshine import MoonshineDecoder, MoonshineOptions
    from .moonshine_model import ensure_model

    return MoonshineDecoder.load(MoonshineOptions(ensure_model(), max(1, settings.cpu_threads)))


def _load_whisper(settings: DecoderSettings) -> Decoder:
    from .model import resolve_model
    from .whisper import WhisperDecoder, WhisperOptions

    options = WhisperOptions(
        resolve_model(settings.model),
        settings.compute_type,
        settings.cpu_threads,
        settings.workers,
        settings.language,
    )
    return WhisperDecoder.load(options)


ENGINES: Final = {
    "moonshine": Engine(
        "moonshine", _load_moonshine, lambda _s: "moonshine-base-en (packaged)", frozenset({"en"}), 1, False
    ),
    "whisper": Engine("whisper", _load_whisper, lambda s: s.model.describe(), None, 4, True),
}


def engine_for(name: str, language: str, whisper_model_named: bool = False) -> Engine:
    """The engine `ASR_LOCAL_ENGINE` names, `auto` resolved for the language (and Whisper when
    `ASR_LOCAL_MODEL` names a Whisper model: that is asking for Whisper); ValueError if the
    named engine does not know the language."""
    if name == AUTO:
        if whisper_model_named:
            return ENGINES["whisper"]
        return next(e for e in ENGINES.values() if e.languages is None or language in e.languages)
    engine = ENGINES[name]
    if engine.languages is not None and language not in engine.languages:
        known = ", ".join(sorted(engine.languages))
        raise ValueError(f"the {name} engine knows {known} only, not {language}: use whisper or auto")
    return engine
