"""The build's compiled hot path: that it is what runs, that it is never stale, and that
ASR_INTERPRETED=1 runs the same modules from their sources."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from asr_worker import compiled

ROOT = Path(__file__).resolve().parents[1]


def _compiled_by_setup() -> list[str]:
    """The module names setup.py's COMPILED lists, read from the file (not imported: it builds)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def _can_compile() -> bool:
    return (
        shutil.which("cc") is not None
        and os.environ.get("ASR_WORKER_COMPILE", "1") != "0"
        and os.environ.get("ASR_INTERPRETED") != "1"
    )


@pytest.mark.skipif(not _can_compile(), reason="no C compiler here, or the compiled build is switched off")
def test_the_hot_modules_run_compiled_where_this_machine_can_compile_them() -> None:
    """The build falls back to interpreted modules quietly when it cannot compile (setup.py):
    on a machine that can, that fallback is a fault, and a fifth of the CPU."""
    names = _compiled_by_setup()
    assert len(names) >= 6
    for name in names:
        module = importlib.import_module(name)
        assert compiled.is_extension(module.__file__), f"{name} runs interpreted: {module.__file__}"
    assert set(names) <= set(compiled.compiled_modules())
    assert compiled.describe().startswith(f"{len(compiled.compiled_modules())} modules compiled with mypyc")


def _source(name: str) -> Path | None:
    base = ROOT / "src" / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _imports(name: str) -> tuple[set[str], set[str]]:
    """The package's modules and the other top-level packages that module `name` imports."""
    source = _source(name)
    assert source is not None, name
    package = name if source.name == "__init__.py" else name.rpartition(".")[0]
    internal, external = set(), set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            internal.add(target)
            internal.update(
                f"{target}.{alias.name}" for alias in node.names if _source(f"{target}.{alias.name}")
            )
        elif isinstance(node, ast.ImportFrom):
            external.add(str(node.module).split(".")[0])
        elif isinstance(node, ast.Import):
            external.update(alias.name.split(".")[0] for alias in node.names)
    return internal, external


def test_the_compiled_modules_need_only_the_standard_library_orjson_and_websockets() -> None:
    """mypyc follows their imports, and the build's isolated environment has only what
    pyproject.toml's build requirements name: anything else would make it fall back."""
    seen: set[str] = set()
    todo = list(_compiled_by_setup())
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        internal, external = _imports(name)
        todo.extend(internal)
        for top in external - {"__future__", "_typeshed"}:  # _typeshed: stubs only, for TYPE_CHECKING
            assert top in sys.stdlib_module_names or top in {"orjson", "websockets"}, (
                f"{name}, which a compiled module imports, imports {top}"
            )
    assert "asr_worker.jsonwire" in seen  # through deepgram.protocol: the walk follows imports


def test_a_source_changed_after_it_was_compiled_is_stale(tmp_path: Path) -> None:
    suffix = EXTENSION_SUFFIXES[0]
    (tmp_path / "core").mkdir()
    fresh_source, fresh_ext = tmp_path / "core" / "fresh.py", tmp_path / "core" / f"fresh{suffix}"
    edited_source, edited_ext = tmp_path / "core" / "edited.py", tmp_path / "core" / f"edited{suffix}"
    for path in (fresh_source, edited_source, fresh_ext, edited_ext):
        path.write_bytes(b"")
    os.utime(fresh_source, (1_000, 1_000))
    os.utime(fresh_ext, (2_000, 2_000))
    os.utime(edited_ext, (2_000, 2_000))
    os.utime(edited_source, (3_000, 3_000))  # edited after the build
    (tmp_path / f"orphan{suffix}").write_bytes(b"")  # compiled, no source: nothing to compare
    assert compiled.stale_modules(tmp_path) == [edited_source]
    installed = tmp_path / "lib" / "site-packages" / "asr_worker"
    shutil.copytree(tmp_path / "core", installed / "core")  # with their times: edited.py is newer
    assert compiled.stale_modules(installed) == [], "a wheel's files are as old as the install"


def _module_files(env: dict[str, str]) -> list[str]:
    code = (
        "import asr_worker.core.session as s, asr_worker.wsframes as w, asr_worker.compiled as c;"
        "print(s.__file__); print(w.__file__); print(c.describe())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def test_asr_interpreted_runs_the_sources_of_the_compiled_modules() -> None:
    session, wsframes, described = _module_files({"ASR_INTERPRETED": "1"})
    assert session.endswith("core/session.py") and wsframes.endswith("wsframes.py")
    assert described == "interpreted: no compiled modules"
    session, _, described = _module_files({"ASR_INTERPRETED": "0"})
    if compiled.stale_modules() == [] and any(
        p.name.startswith("session.") and p.suffix == ".so" for p in (ROOT / "src/asr_worker/core").iterdir()
    ):
        assert compiled.is_extension(session) and "core.session" in described


def test_the_core_modules_a_compiled_module_imports_are_compiled_too() -> None:
    """A module of core/ that a compiled one imports, but COMPILED does not list, still works:
    interpreted, and every call into it from the compiled core goes through Python. The
    session core's parts (its replay buffer, rate limit, forwarding) run for every frame."""
    names = set(_compiled_by_setup())
    for name in sorted(names):
        internal, _ = _imports(name)
        core = {m for m in internal if m.startswith("asr_worker.core.") and _source(m) is not None}
        assert core <= names, f"{name} imports {sorted(core - names)}, which setup.py does not compile"


def test_the_interpreted_run_names_tests_that_exist() -> None:
    """scripts/checks.sh runs the compiled modules' tests again from their sources, by path: a
    renamed test file must not make that run (the last step of CI) stop with "not found"."""
    script = (ROOT / "scripts" / "checks.sh").read_text()
    paths = [word for word in script.split() if word.startswith("tests/")]
    assert paths, "scripts/checks.sh names no tests to run interpreted"
    assert [p for p in paths if not (ROOT / p).exists()] == []
