"""Model assembly: joined once, atomically, verified by sha256, refused when it does not match."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from asr_worker.engine.model import (
    MODEL_FILE,
    PACKAGED_MODEL_SHA256,
    SMALL_FILES,
    ModelChoice,
    ensure_packaged_model,
    packaged_part_dirs,
    resolve_model,
    sha256_of,
)
from asr_worker.errors import ModelError

PART1 = b"weights-first-half-" * 1000
PART2 = b"weights-second-half" * 1000
SHA = hashlib.sha256(PART1 + PART2).hexdigest()


def fake_packages(tmp_path: Path, part2: bytes = PART2) -> list[Path]:
    one, two = tmp_path / "part1" / "data", tmp_path / "part2" / "data"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    for name in SMALL_FILES:
        (one / name).write_text(f"{name} contents")
    (one / f"{MODEL_FILE}.part1").write_bytes(PART1)
    (two / f"{MODEL_FILE}.part2").write_bytes(part2)
    return [one, two]


def test_assembles_the_parts_once_into_the_cache(tmp_path: Path) -> None:
    parts = fake_packages(tmp_path)
    cache = tmp_path / "cache"
    target = ensure_packaged_model(cache, parts, SHA)
    assert (target / MODEL_FILE).read_bytes() == PART1 + PART2
    assert all((target / name).read_text() == f"{name} contents" for name in SMALL_FILES)
    left = sorted(p.name for p in target.iterdir())
    assert left == sorted([MODEL_FILE, *SMALL_FILES]), "no temp files left"
    mtime = (target / MODEL_FILE).stat().st_mtime_ns
    # Second time: verified in place, not rebuilt (the packages could even be gone).
    assert ensure_packaged_model(cache, [tmp_path / "gone", tmp_path / "gone"], SHA) == target
    assert (target / MODEL_FILE).stat().st_mtime_ns == mtime


def test_refuses_parts_whose_joined_hash_is_wrong(tmp_path: Path) -> None:
    parts = fake_packages(tmp_path, part2=PART2[:-1] + b"X")
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match=r"refusing the packaged Whisper model.*sha256"):
        ensure_packaged_model(cache, parts, SHA)
    target = next(cache.iterdir())
    assert not (target / MODEL_FILE).exists(), "a model that failed its check is never put in place"
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_cached_model_is_rebuilt_from_the_packages(tmp_path: Path) -> None:
    parts = fake_packages(tmp_path)
    cache = tmp_path / "cache"
    target = ensure_packaged_model(cache, parts, SHA)
    (target / MODEL_FILE).write_bytes(b"tampered")
    assert ensure_packaged_model(cache, parts, SHA) == target
    assert sha256_of(target / MODEL_FILE) == SHA


def test_missing_parts_say_what_to_install(tmp_path: Path) -> None:
    parts = fake_packages(tmp_path)
    (parts[1] / f"{MODEL_FILE}.part2").unlink()
    with pytest.raises(ModelError, match=r"incomplete.*reinstall"):
        ensure_packaged_model(tmp_path / "cache", parts, SHA)


def test_the_installed_packages_are_found_and_hold_the_expected_model() -> None:
    one, two = packaged_part_dirs()
    assert (one / "config.json").is_file() and (two / f"{MODEL_FILE}.part2").is_file()
    digest = hashlib.sha256()
    for part in (one / f"{MODEL_FILE}.part1", two / f"{MODEL_FILE}.part2"):
        digest.update(part.read_bytes())
    assert digest.hexdigest() == PACKAGED_MODEL_SHA256


def test_model_choice_parses_the_setting(tmp_path: Path) -> None:
    assert ModelChoice.parse("") == ModelChoice()
    assert ModelChoice.parse(" small.en ") == ModelChoice(size="small.en")
    (tmp_path / MODEL_FILE).write_bytes(b"x")
    assert ModelChoice.parse(str(tmp_path)) == ModelChoice(directory=tmp_path)
    assert resolve_model(ModelChoice(directory=tmp_path)) == str(tmp_path)
    assert resolve_model(ModelChoice(size="tiny")) == "tiny"
    with pytest.raises(ValueError, match="model directory"):
        ModelChoice.parse(str(tmp_path / "nowhere"))
    (tmp_path / MODEL_FILE).unlink()
    with pytest.raises(ValueError, match=f"with {MODEL_FILE}"):
        ModelChoice.parse(str(tmp_path))
