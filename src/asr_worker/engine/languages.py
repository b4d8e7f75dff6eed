"""A call's language, as the local engine hears it: which code the engine decodes in, and how.

A call names its language in Deepgram's codes (`en`, `en-US`, `es-419`, `pt-BR`, `zh-CN`, or
`multi`); the engine's models know ISO 639-1 codes (Whisper's hundred, Moonshine's `en`). A
code is the engine's by its primary subtag (`es-419` is `es`), with the few that Whisper spells
otherwise mapped (`nb` is Whisper's `no`, `jv` its `jw`, `fil` its `tl`, `iw` its `he`).

How a channel's language is decided (`Mode`):

* `FIXED`: the call named a language (or the worker's default is one): every utterance is
  decoded in it, by the engine that speaks it.
* `PER_UTTERANCE`: `multi`, as Deepgram's code-switching: Whisper detects the language of every
  utterance (and of every interim) and transcribes it in the language it heard; a caller who
  changes language mid-call is followed at the next utterance.
* `DETECT_ONCE`: a call that names none where the worker's default is `detect`: Whisper detects
  the language of each channel's first utterance and the channel keeps it (a leg rarely changes
  language): the next utterances are decoded in it, by the engine that speaks it, so an
  English leg moves to Moonshine after its first utterance. A first utterance too short to be
  sure of (its language under `SURE_PROBABILITY`) does not fix it; the next one is detected
  again.

Pure: no model in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ..core.call_options import MULTI

DETECT: Final = "detect"  # ASR_LOCAL_LANGUAGE: detect each channel's language on its first utterance
SURE_PROBABILITY: Final = 0.5  # a detection at least this sure fixes a DETECT_ONCE channel's language

# Whisper's languages (faster-whisper's `_LANGUAGE_CODES`, which its tokenizer checks), so that
# what a call may ask is known without loading the model.
_WHISPER_CODES: Final = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw "
    "he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my "
    "ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt "
    "uk ur uz vi yi yo zh yue"
)
WHISPER_LANGUAGES: Final = frozenset(_WHISPER_CODES.split())
# Deepgram's (BCP 47) codes that Whisper spells otherwise.
_ALIASES: Final = {"nb": "no", "jv": "jw", "fil": "tl", "iw": "he", "in": "id", "ji": "yi", "mo": "ro"}


class Mode(StrEnum):
    FIXED = "fixed"
    PER_UTTERANCE = "multi"
    DETECT_ONCE = "detect"


@dataclass(frozen=True, slots=True)
class CallLanguage:
    """What a call asks of the engine: a mode, and for `FIXED` the engine's code of its language
    (`code`) and the code the call named (`named`, what its transcripts report: `en-US`)."""

    mode: Mode
    code: str | None = None
    named: str | None = None

    @property
    def detects(self) -> bool:
        return self.mode is not Mode.FIXED


def tidy(code: str) -> str:
    """A language code in BCP 47's usual case: `es-419`, `en-US`, `zh-Hant`, `yue`."""
    first, *rest = code.strip().split("-")
    parts = [first.lower()]
    parts += [p.upper() if len(p) == 2 else p.title() if len(p) == 4 else p.lower() for p in rest]
    return "-".join(parts)


def engine_code(language: str) -> str | None:
    """The engine's code for a language as a call names it (`es-419` is `es`); None for one no
    engine here knows."""
    lowered = language.strip().lower()
    if lowered in WHISPER_LANGUAGES:
        return lowered  # `haw`, `yue` whole
    primary = lowered.split("-", 1)[0]
    primary = _ALIASES.get(primary, primary)
    return primary if primary in WHISPER_LANGUAGES else None


def call_language(named: str | None, default: str) -> CallLanguage:
    """A call's language from what it named (None: nothing) and the worker's default
    (ASR_LOCAL_LANGUAGE: a code, `multi` or `detect`). ValueError saying why for a language no
    engine here knows."""
    chosen = named if named is not None else default
    if chosen.lower() == MULTI:
        return CallLanguage(Mode.PER_UTTERANCE)
    if chosen.lower() == DETECT:
        return CallLanguage(Mode.DETECT_ONCE)
    code = engine_code(chosen)
    if code is None:
        raise ValueError(
            f"the local engine does not transcribe {chosen[:40]!r}: it knows Whisper's languages "
            "(en, es, fr, de, pt, zh, ... as ISO 639-1 codes, with a region or not) and multi"
        )
    return CallLanguage(Mode.FIXED, code, chosen)
