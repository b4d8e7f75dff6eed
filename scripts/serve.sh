#!/usr/bin/env bash
# The README's first command: installs the worker into .venv and runs it on its embedded
# defaults (127.0.0.1:3001, the local speech engine, the in-memory bus). Arguments and
# environment variables configure it as `asr-worker serve --help` describes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
exec .venv/bin/asr-worker serve "$@"
