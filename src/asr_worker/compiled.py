"""Which of the package's modules this process runs compiled, and whether any is stale.

The build compiles the hot path with mypyc (see setup.py) into extension modules next to the
sources, and Python imports an extension in preference to its .py file. Two things follow that an
operator and a developer must be able to see: whether the fast build is the one running (one log
line at start, `asr_build_info` on /metrics), and whether a source changed after it was compiled,
in which case the old code would run (`stale_modules`; the test suite refuses to run on one).

`ASR_INTERPRETED=1` in the environment makes the package import its .py sources even where
compiled modules exist (installed by `asr_worker/__init__.py` before any other import): for a
debugger, a line-level profiler, or to compare the two.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The package's modules imported so far that are compiled extensions."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("asr_worker.") and is_extension(getattr(module, "__file__", None))
    )


def stale_modules(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Compiled modules on disk whose source has changed since they were built: Python would
    import the old compiled code, not the edited source. Only where sources are edited: in an
    installed wheel (site-packages) a file's time is when pip wrote it, in no set order."""
    if {"site-packages", "dist-packages"} & set(package_dir.parts):
        return []
    stale = []
    for suffix in EXTENSION_SUFFIXES:
        for extension in package_dir.rglob(f"*{suffix}"):
            source = extension.with_name(extension.name[: -len(suffix)] + ".py")
            if source.exists() and source.stat().st_mtime > extension.stat().st_mtime:
                stale.append(source)
    return sorted(stale)


def describe() -> str:
    """One line for the start-up log."""
    names = [name.removeprefix("asr_worker.") for name in compiled_modules()]
    if not names:
        return "interpreted: no compiled modules"
    return f"{len(names)} modules compiled with mypyc: {', '.join(names)}"


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the package's modules as the normal path finder does, but takes a module's .py
    source where the finder would take its compiled extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith("asr_worker."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not is_extension(spec.origin):
            return spec
        source = Path(str(spec.origin)).with_name(fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, source) if source.exists() else spec


def prefer_sources() -> None:
    """From now on, import the package's modules from their .py sources (ASR_INTERPRETED=1)."""
    if not any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())


def is_extension(file: object) -> bool:
    """Whether a module file is a compiled extension (not a .py source)."""
    return isinstance(file, str) and file.endswith(tuple(EXTENSION_SUFFIXES))
