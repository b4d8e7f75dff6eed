"""A call's language as the local engine takes it: Deepgram's codes to the engines' own, which
engine decodes which language, what detection chooses among, and what is refused."""

from __future__ import annotations

import pytest

from asr_worker.engine.engines import EngineSet
from asr_worker.engine.languages import Mode, call_language, engine_code, tidy
from asr_worker.engine.model import ModelChoice
from asr_worker.engine.whisper import choose_language


@pytest.mark.parametrize(
    ("named", "code"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("es-419", "es"),
        ("pt-BR", "pt"),
        ("zh-Hant", "zh"),
        ("nb", "no"),  # Deepgram's Norwegian Bokmål is Whisper's `no`
        ("jv", "jw"),
        ("yue", "yue"),
        ("HAW", "haw"),
        ("tlh", None),  # no engine here speaks Klingon
        ("xx-YY", None),
    ],
)
def test_a_language_as_a_call_names_it_is_the_engines_by_its_primary_subtag(
    named: str, code: str | None
) -> None:
    assert engine_code(named) == code


def test_a_calls_language_is_its_own_else_the_workers_default() -> None:
    assert call_language("es-419", "en") == call_language("es-419", "detect")
    fixed = call_language("es-419", "en")
    assert (fixed.mode, fixed.code, fixed.named) == (Mode.FIXED, "es", "es-419")
    assert call_language(None, "de").named == "de"
    assert call_language("multi", "en").mode is Mode.PER_UTTERANCE
    assert call_language(None, "multi").mode is Mode.PER_UTTERANCE
    assert call_language(None, "detect").mode is Mode.DETECT_ONCE
    assert call_language(None, "detect").detects and not fixed.detects
    with pytest.raises(ValueError, match="does not transcribe 'tlh'"):
        call_language("tlh", "en")


def test_tidy_writes_a_code_in_bcp47s_usual_case() -> None:
    assert [tidy(c) for c in ("EN-us", "es-419", "ZH-hant", "Yue")] == ["en-US", "es-419", "zh-Hant", "yue"]


def test_auto_decodes_english_on_moonshine_and_the_rest_on_whisper_which_alone_detects() -> None:
    auto = EngineSet.configured("auto", ModelChoice())
    engines = [auto.for_code(c) for c in ("en", "es", "de")]
    assert [e.name if e else None for e in engines] == ["moonshine", "whisper", "whisper"]
    assert auto.detector is not None and auto.detector.name == "whisper"
    assert "es" in auto.languages and "en" in auto.languages and len(auto.languages) == 100
    moonshine = EngineSet.configured("moonshine", ModelChoice())
    assert moonshine.for_code("es") is None and moonshine.detector is None and moonshine.languages == ("en",)
    english_whisper = EngineSet.configured(
        "auto", ModelChoice(size="base.en")
    )  # naming a model asks for Whisper
    assert [e.name for e in english_whisper.engines] == ["whisper"]
    assert english_whisper.for_code("en") is not None and english_whisper.for_code("fr") is None
    assert english_whisper.detector is None, "an English-only model has no language to choose"


def test_detection_on_an_english_only_model_is_refused_at_start_and_per_call() -> None:
    from asr_worker.config import load_settings
    from asr_worker.errors import ConfigError
    from asr_worker.providers.local import LocalOptions, LocalProvider

    env = {"ASR_PROVIDER": "local", "ASR_LOCAL_MODEL": "base.en", "ASR_LOCAL_LANGUAGE": "multi"}
    with pytest.raises(ConfigError, match=r"^ASR_LOCAL_ENGINE=whisper \(or auto\) is required"):
        load_settings(env)
    provider = LocalProvider(LocalOptions(model=ModelChoice(size="base.en")))
    assert provider.languages() == ("en",)
    assert provider.language_refusal("en-US") is None
    assert "detects no language" in (provider.language_refusal("multi") or "")


def test_a_detection_chooses_among_the_languages_allowed_and_says_how_sure_among_them() -> None:
    ranked = [("<|ja|>", 0.5), ("<|fr|>", 0.3), ("<|en|>", 0.1), ("<|de|>", 0.1)]
    assert choose_language(ranked, frozenset()) == ("ja", 0.5)
    code, sure = choose_language(ranked, frozenset({"en", "fr", "de"}))
    assert code == "fr" and sure == pytest.approx(0.6)
    assert choose_language(ranked, frozenset({"ko"}))[0] == "ja", "none allowed ranked: Whisper's own choice"
