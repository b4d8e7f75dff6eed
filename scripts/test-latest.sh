#!/usr/bin/env bash
# The drift check: the suite on the newest releases that pyproject.toml's ranges allow, not on the
# lock. It warns early that a dependency's new release breaks the worker (a changed API, a new
# warning) without touching main, whose installs stay on requirements/*.txt. A scheduled CI job
# runs it (.github/workflows/ci.yml); when it fails, fix the code or narrow the range, then
# refresh the lock with scripts/lock.sh.
#
# It uses its own virtualenv (.venv-latest), rebuilt each run so nothing old lingers, and the same
# Debian packages and checks as scripts/test.sh. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/node-clients.sh
rm -rf .venv-latest
python3 -m venv .venv-latest
pip=(.venv-latest/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade pip 2>&1 | { grep -v '^WARNING: Location' || true; }
# Not editable: the compiled modules go to .venv-latest, not beside the sources .venv uses.
"${pip[@]}" --upgrade --upgrade-strategy eager ".[test]" 2>&1 | { grep -v '^WARNING: Location' || true; }
echo "newest versions allowed by pyproject.toml:"
.venv-latest/bin/python -m pip list --format=freeze 2>/dev/null | grep -iE '^(aiohttp|websockets|numpy|redis|orjson|faster-whisper|ctranslate2|onnxruntime|av|prometheus-client|pytest|mypy)=' | sed 's/^/  /'
VENV=.venv-latest scripts/checks.sh "$@"
