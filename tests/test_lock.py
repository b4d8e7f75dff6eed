"""The locked install: requirements/*.txt pin what pyproject.toml asks for, every pin carries
hashes, the service's set agrees with the tests', and CI runs the README's test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.cli import assert_clean_stderr

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^]]*\])?==([^ ;\\]+)(?: ; ([^\\]+?))?\s*\\?$")


def pins(lock: str) -> dict[str, Version]:
    """name -> version of each pin in a lock file that applies to this interpreter, and a check
    that every pin has at least one hash (pip's --require-hashes refuses the file otherwise)."""
    lines = (ROOT / "requirements" / lock).read_text().splitlines()
    found: dict[str, Version] = {}
    for i, line in enumerate(lines):
        match = _PIN.match(line)
        if match is None:
            continue
        assert i + 1 < len(lines) and "--hash=sha256:" in lines[i + 1], f"{lock}: {line} has no hash"
        name, version, marker = match.groups()
        if marker is None or Requirement(f"x; {marker}").marker.evaluate():  # type: ignore[union-attr]
            found[canonicalize_name(name)] = Version(version)
    return found


def wanted(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    names = list(project["dependencies"]) + list(PYPROJECT["build-system"]["requires"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [r for r in map(Requirement, names) if r.marker is None or r.marker.evaluate()]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("service.txt", ()), ("examples.txt", ("examples",)), ("test.txt", ("test", "examples"))],
)
def test_the_lock_pins_what_pyproject_asks_for(lock: str, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    for requirement in wanted(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements/{lock}: run scripts/lock.sh"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={locked[name]}, outside {requirement}: run scripts/lock.sh"
        )


@pytest.mark.parametrize("lock", ["service.txt", "examples.txt"])
def test_the_service_and_the_examples_run_the_versions_the_tests_ran(lock: str) -> None:
    locked, test = pins(lock), pins("test.txt")
    assert {name: test.get(name) for name in locked} == locked


def test_the_clients_lock_pins_what_clients_in_asks_for() -> None:
    """The voice-agent frameworks' own lock (requirements/clients.txt, for .venv-clients)."""
    locked = pins("clients.txt")
    lines = (ROOT / "requirements" / "clients.in").read_text().splitlines()
    for requirement in (Requirement(line) for line in lines if line.strip() and not line.startswith("#")):
        name = canonicalize_name(requirement.name)
        assert name in locked and requirement.specifier.contains(locked[name]), (
            f"requirements/clients.txt does not pin {requirement}: run scripts/lock.sh"
        )


def test_ci_runs_the_readme_test_command() -> None:
    """One source of truth: the GitHub workflow runs .ci/run, which runs scripts/test.sh."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert ".ci/run" in runs
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()
    assert "./scripts/test.sh" in (ROOT / "README.md").read_text()
    drift = [step.get("run", "") for step in workflow["jobs"]["drift"]["steps"]]
    assert "scripts/test-latest.sh" in drift


def test_a_python_warning_on_a_commands_stderr_fails_its_test() -> None:
    """The check the CLI tests apply to every command's stderr catches what redis-py printed."""
    warned = (
        ".venv/lib/python3.11/site-packages/redis/asyncio/connection.py:3126: UserWarning: A synchronous "
        "redis.retry.Retry was passed to an asyncio client\n  warnings.warn(\n"
        "asr-worker publish: cannot use Redis"
    )
    with pytest.raises(AssertionError, match="warning or traceback"):
        assert_clean_stderr(warned)
    with pytest.raises(AssertionError):
        assert_clean_stderr("Traceback (most recent call last):\n  File ...\nOSError: [Errno 98]")
    assert_clean_stderr('{"level":"info","msg":"listening","port":3001}\nasr-worker: PORT must be a number')
