"""compose.yaml and the Containerfile as the deployment tests read them: typed views of the
parsed YAML, and the few Containerfile instructions the compose file must agree with."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
CONTAINERFILE = ROOT / "Containerfile"


def mapping(value: object, what: str) -> dict[str, object]:
    assert isinstance(value, dict) and all(isinstance(k, str) for k in value), f"{what} must be a mapping"
    return value


def strings(value: object, what: str) -> list[str]:
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"{what} must be a list of strings"
    )
    return value


@dataclass(frozen=True)
class Service:
    name: str
    spec: dict[str, object]

    def get(self, key: str) -> dict[str, object]:
        return mapping(self.spec.get(key), f"services.{self.name}.{key}")

    @property
    def environment(self) -> dict[str, str]:
        env = self.get("environment")
        assert all(isinstance(v, str) for v in env.values()), f"{self.name}: environment values are strings"
        return {k: str(v) for k, v in env.items()}

    @property
    def healthcheck_test(self) -> list[str]:
        return strings(self.get("healthcheck").get("test"), f"services.{self.name}.healthcheck.test")


def load_compose(path: Path = COMPOSE) -> dict[str, Service]:
    """The services of the compose file, its YAML anchors and merge keys resolved."""
    document = mapping(yaml.safe_load(path.read_text()), str(path))
    services = mapping(document.get("services"), "services")
    return {name: Service(name, mapping(spec, f"services.{name}")) for name, spec in services.items()}


def workers(services: dict[str, Service]) -> list[Service]:
    """The services built from the Containerfile: the workers."""
    return [s for s in services.values() if "build" in s.spec]


def containerfile_instruction(name: str) -> str:
    """The argument of the runtime stage's (the last) `NAME` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    found = [line.split(None, 1)[1].strip() for line in text.splitlines() if line.startswith(f"{name} ")]
    assert found, f"the Containerfile has no {name}"
    return found[-1]


def containerfile_exec_form(name: str) -> list[str]:
    """A JSON-array (exec form) instruction such as CMD [...] or HEALTHCHECK ... CMD [...]."""
    argument = containerfile_instruction(name)
    array = argument[argument.index("[") :] if "[" in argument else ""
    value = json.loads(array) if array else None
    return strings(value, f"the Containerfile's {name} (exec form, a JSON array)")
