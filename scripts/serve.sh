#!/usr/bin/env bash
# The README's first command: installs the worker into .venv and runs it on its embedded
# defaults (127.0.0.1:3001, the local speech engine, the in-memory bus). Arguments and
# environment variables configure it as `asr-worker serve --help` describes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/asr-worker serve "$@"
