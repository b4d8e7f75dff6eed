"""The documentation stands alone and stays true: the README is short, every relative link in
it and in docs/ leads somewhere, nothing cites documents outside the repository, and the
configuration page is what its generator makes from the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest

from asr_worker import cli
from asr_worker.tools import config_doc

ROOT: Final = Path(__file__).resolve().parents[1]
README: Final = ROOT / "README.md"
DOCS: Final = ROOT / "docs"
CONFIGURATION: Final = DOCS / "configuration.md"
README_MAX_BYTES: Final = 10 * 1024
# Pages being written on another branch: links to them may come before they do.
COMING: Final = frozenset({DOCS / "deploy.md"})
# Citations of documents a clone does not have, and notebook language about history.
FORBIDDEN: Final = ("../shared", "CONTRACT.md", "NOTES.md", "this stop", "last stop")

_LINK: Final = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE: Final = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_HEADING: Final = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(path: Path) -> str:
    """A page without its fenced code blocks (where `[x](y)` is code, not a link)."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for heading in _HEADING.findall(_prose(path)):
        slug, n = _slug(heading), 1
        while slug in anchors:
            slug = f"{_slug(heading)}-{n}"
            n += 1
        anchors.add(slug)
    return anchors


def _relative_links(path: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(path))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: ...
    ]


def test_the_readme_is_under_10_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; keep it under {README_MAX_BYTES}"


def test_there_are_pages_to_check() -> None:
    names = {page.name for page in DOCS.glob("*.md")}
    assert {"ingest-and-events.md", "configuration.md", "architecture.md"} <= names


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if dest in COMING:
            continue
        if not dest.is_relative_to(ROOT) or not dest.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def _tracked_text_files() -> list[Path]:
    """Every source, script, page and configuration file a clone has (not this file, which
    names the phrases, nor the lock files and the changelog's history)."""
    suffixes = {".py", ".md", ".sh", ".toml", ".yml", ".yaml", ".cfg", ".txt", ".html", ".js", ".css"}
    skip = {Path(__file__).resolve(), ROOT / "CHANGELOG.md"}
    found = []
    for folder in ("src", "tests", "bench", "examples", "scripts", "docs", ".github", ".ci"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and (path.suffix in suffixes or path.parent.name == ".ci") and path not in skip:
                found.append(path)
    return [README, ROOT / "pyproject.toml", ROOT / "setup.py", *found]


def test_nothing_cites_what_a_clone_does_not_have() -> None:
    cited = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace").lower()
        found = [phrase for phrase in (*FORBIDDEN, "contract section") if phrase.lower() in text]
        if found:
            cited.append(f"{path.relative_to(ROOT)} mentions {found}")
    assert len(_tracked_text_files()) > 100
    assert not cited, "; ".join(cited)


def test_the_configuration_page_is_what_the_generator_makes() -> None:
    assert CONFIGURATION.read_text(encoding="utf-8") == config_doc.render(), (
        "docs/configuration.md is stale: regenerate it with "
        "`.venv/bin/python -m asr_worker.tools.config_doc > docs/configuration.md`"
    )


def test_the_generator_check_mode_says_whether_the_page_is_current(tmp_path: Path) -> None:
    assert config_doc.main(["--check", str(CONFIGURATION)]) == 0
    stale = tmp_path / "configuration.md"
    stale.write_text(config_doc.render().replace("`3001`", "`3002`"), encoding="utf-8")
    assert config_doc.main(["--check", str(stale)]) == 1
    assert config_doc.main(["--check", str(tmp_path / "missing.md")]) == 1


def test_every_option_of_serve_help_is_on_the_configuration_page(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--help"])
    assert exited.value.code == 0
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out)) - {"--help"}
    assert len(flags) > 10
    page = CONFIGURATION.read_text(encoding="utf-8")
    missing = sorted(flag for flag in flags if f"`{flag}`" not in page)
    assert not missing, f"asr-worker serve --help shows {missing}, docs/configuration.md does not"


def test_the_configuration_page_marks_secrets_and_shows_defaults() -> None:
    page = CONFIGURATION.read_text(encoding="utf-8")
    assert "| `DEEPGRAM_API_KEY` | `--deepgram-api-key` | `none` | secret |" in page
    assert "| `ASR_WORKER_TOKEN` | `--worker-token` | `none` | secret |" in page
    assert "| `PORT` | `--port` | `3001` |  |" in page
    assert "| `ASR_KEEPALIVE_S` | `--keepalive-s` | `3` |  |" in page
    assert "| `ASR_ALLOW_UNAUTHENTICATED` | `--allow-unauthenticated` | `false` |  |" in page
    assert "| `DG_SERVER_PORT` | `--port` | `3002` |  |" in page
