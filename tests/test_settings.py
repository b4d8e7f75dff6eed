"""The settings machinery and the sections every part declares: one default per option (the
part's dataclass), one flag and one variable per setting, and each command's sections."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asr_worker import cli
from asr_worker.config import ENGINE_SECTIONS, WORKER_SECTIONS, load_settings, rows_by_name, settings_with
from asr_worker.core import session_types
from asr_worker.dgserver import settings as dg_server
from asr_worker.errors import ConfigError
from asr_worker.http import options as http
from asr_worker.settings import Section, Setting, int_range, seconds, show

if TYPE_CHECKING:
    from asr_worker.settings import Options

SRC = Path(__file__).resolve().parents[1] / "src" / "asr_worker"
EVERY_SECTION = (*WORKER_SECTIONS, *dg_server.SECTIONS)


@pytest.mark.parametrize("section", EVERY_SECTION, ids=lambda s: s.name)
def test_every_default_shown_in_help_reads_back_as_the_default(section: Section[Options]) -> None:
    """What --help and the configuration page show as a default is the dataclass's own value:
    written as the variable, it parses back to it (no second default hides in a row)."""
    defaults = section.options()
    for row in section.rows:
        shown = section.shown_default(row)
        text = "" if shown == "none" else shown
        if row.field:
            assert row.parse(text) == section.default(row), (row.env, shown)
        else:
            assert row.parse(text) == defaults, row.env


def test_a_model_or_url_default_is_written_once_in_the_source() -> None:
    """The defaults most likely to be copied (model names, URLs) have one home in the code."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in SRC.rglob("*.py"))
    checked = 0
    for section in EVERY_SECTION:
        for row in section.rows:
            value = section.default(row)
            language_tag = re.fullmatch(r"[a-z]{2,3}-[A-Z]{2}", str(value)) is not None  # shared by parts
            if isinstance(value, str) and ("://" in value or "-" in value) and not language_tag:
                checked += 1
                assert source.count(f'"{value}"') == 1, (row.env, value)
    assert checked >= 4  # DEEPGRAM_URL, DEEPGRAM_MODEL, OPENAI_TRANSCRIBE_MODEL, REDIS_URL


def test_flags_and_variables_are_unique_within_each_command() -> None:
    for sections in (cli.SERVE, cli.TRANSCRIBE, cli.DG_SERVER):
        flags = [section.flag(row) for section in sections for row in section.rows]
        variables = [row.env for section in sections for row in section.rows]
        assert len(flags) == len(set(flags)) and len(variables) == len(set(variables))
    assert set(ENGINE_SECTIONS) <= set(WORKER_SECTIONS)


def test_a_flag_is_its_variable_without_the_sections_prefix() -> None:
    listener = http.SETTINGS
    assert [listener.flag(row) for row in listener.rows][:3] == ["--host", "--port", "--worker-token"]
    assert dg_server.SETTINGS.flag(dg_server.SETTINGS.rows[1]) == "--port"  # DG_SERVER_PORT
    assert set(rows_by_name()) >= {"max_sessions", "session_grace_s", "local_endpointing_ms", "mock"}


def test_flags_win_over_the_environment_which_wins_over_the_default() -> None:
    parser = argparse.ArgumentParser()
    session_types.SETTINGS.add_arguments(parser)
    flags = parser.parse_args(["--max-buffer-ms", "250"])
    env = {"ASR_MAX_BUFFER_MS": "120", "ASR_KEEPALIVE_S": "2.5"}
    loaded = session_types.SETTINGS.load(env, flags)
    assert (loaded.max_buffer_ms, loaded.keepalive_s, loaded.grace_s) == (250, 2.5, 10.0)


def test_a_bad_value_names_its_variable_or_flag_and_hides_a_secret() -> None:
    with pytest.raises(
        ConfigError, match=r"^ASR_MAX_BUFFER_MS must be a whole number from 1 to 10000, not 'x'$"
    ):
        session_types.SETTINGS.load({"ASR_MAX_BUFFER_MS": "x"})
    parser = argparse.ArgumentParser()
    session_types.SETTINGS.add_arguments(parser)
    with pytest.raises(ConfigError, match=r"^--keepalive-s must be a number of seconds"):
        session_types.SETTINGS.load({}, parser.parse_args(["--keepalive-s", "99"]))


@dataclass(frozen=True)
class _Inner:
    depth_ms: int = 5


@dataclass(frozen=True)
class _Outer:
    size: int = 1
    inner: _Inner = field(default_factory=_Inner)


def test_a_row_may_reach_into_a_nested_dataclass_and_must_name_a_real_field() -> None:
    section = Section(
        "demo",
        "demo",
        _Outer,
        (
            Setting("size", "ASR_DEMO_SIZE", "a size", int_range(0, 9)),
            Setting("inner.depth_ms", "ASR_DEMO_DEPTH_MS", "a depth", int_range(0, 99)),
        ),
    )
    assert section.load({"ASR_DEMO_DEPTH_MS": "42"}) == _Outer(1, _Inner(42))
    assert section.shown_default(section.rows[1]) == "5"
    with pytest.raises(TypeError, match=r"no option 'inner\.width'"):
        Section("bad", "bad", _Outer, (Setting("inner.width", "ASR_DEMO_WIDTH", "", seconds(0, 1)),))


def test_settings_in_code_take_flag_names_and_typed_values() -> None:
    made = settings_with(max_sessions=2, session_grace_s=0.5, local_endpointing_ms=300)
    assert made == load_settings(
        {"ASR_MAX_SESSIONS": "2", "ASR_SESSION_GRACE_S": "0.5", "ASR_LOCAL_ENDPOINTING_MS": "300"}
    )
    with pytest.raises(TypeError, match="no setting is called max_session"):
        settings_with(max_session=2)


def test_defaults_show_as_a_user_writes_them() -> None:
    assert [show(v) for v in (None, "", (), True, 3.0, ("a", "b"), (("k", "v"),))] == [
        "none",
        "none",
        "none",
        "true",
        "3",
        "a,b",
        "k=v",
    ]


def test_no_command_keeps_a_hand_written_list_of_flags() -> None:
    text = (SRC / "cli.py").read_text(encoding="utf-8")
    assert not re.search(r"frozenset\(\s*\{\s*\"", text)
