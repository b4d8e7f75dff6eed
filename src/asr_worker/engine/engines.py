"""The speech engines the local provider can run, by name (`ASR_LOCAL_ENGINE`), and which of them
decodes a call's language.

Each is one module with a decoder (`decoding.Decoder`) and one line here: how to load it, the
languages it knows, whether it can detect a language, and how many utterances it decodes in one
batch. `auto` (the default) runs every engine here, each call's utterances on the first that
knows its language: Moonshine for English, being about ten times cheaper per second of audio
with the same accuracy on people's speech at 8 kHz (docs/local-engine.md), and Whisper for every
other language and for detection (`multi`), or for everything when ASR_LOCAL_MODEL names a
Whisper model. A named engine runs alone, and a call in a language it does not know is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .decoding import Decoder, DecoderSettings
from .languages import WHISPER_LANGUAGES
from .model import ModelChoice

AUTO: Final = "auto"


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    load: Callable[[DecoderSettings], Decoder]  # blocking: from a thread, at start
    describe: Callable[[DecoderSettings], str]  # the model, for the start log line
    languages: Callable[[ModelChoice], frozenset[str]]  # the engine's codes, for its model
    detects: bool  # it can say which language an utterance is in
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
    )
    return WhisperDecoder.load(options, settings.detect_among)


def _whisper_languages(model: ModelChoice) -> frozenset[str]:
    """An English-only Whisper (`base.en`, `small.en`...) knows English; the others, all."""
    if model.size is not None and model.size.endswith(".en"):
        return frozenset({"en"})
    return WHISPER_LANGUAGES


ENGLISH: Final = frozenset({"en"})

ENGINES: Final = {
    "moonshine": Engine(
        "moonshine",
        _load_moonshine,
        lambda _s: "moonshine-base-en (packaged)",
        lambda _m: ENGLISH,
        detects=False,
        max_batch=1,
        prompted=False,
    ),
    "whisper": Engine(
        "whisper",
        _load_whisper,
        lambda s: s.model.describe(),
        _whisper_languages,
        detects=True,
        max_batch=4,
        prompted=True,
    ),
}


@dataclass(frozen=True, slots=True)
class EngineSet:
    """The engines a provider runs (in order of preference) and the Whisper model it was given."""

    engines: tuple[Engine, ...]
    model: ModelChoice

    @classmethod
    def configured(cls, name: str, model: ModelChoice) -> EngineSet:
        """What `ASR_LOCAL_ENGINE` (and `ASR_LOCAL_MODEL`: naming one is asking for Whisper) allow."""
        if name == AUTO:
            if model != ModelChoice():
                return cls((ENGINES["whisper"],), model)
            return cls(tuple(ENGINES.values()), model)
        return cls((ENGINES[name],), model)

    def for_code(self, code: str) -> Engine | None:
        """The engine that decodes this language (an engine code, `languages.engine_code`)."""
        return next((e for e in self.engines if code in e.languages(self.model)), None)

    @property
    def detector(self) -> Engine | None:
        """The engine that detects languages, if one runs (an English-only Whisper model, such
        as `base.en`, has only English to choose: it detects none)."""
        return next((e for e in self.engines if e.detects and len(e.languages(self.model)) > 1), None)

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language code some engine here decodes, sorted."""
        return tuple(sorted(set().union(*(e.languages(self.model) for e in self.engines))))

    def describe(self) -> str:
        return " and ".join(e.name for e in self.engines)
