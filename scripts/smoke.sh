#!/usr/bin/env bash
# Smoke-test a deployed worker: scripts/smoke.sh [BASE_URL] (default http://127.0.0.1:3001),
# with the worker's token in ASR_WORKER_TOKEN when it has one. Plays a short recorded call into
# the worker at real time and checks /health, /ready, the call's transcripts and /metrics; one
# line per check, exit status 1 naming what failed (docs/deploy.md). Needs only the installed
# package: this checkout's .venv when there is one, else whichever python3 has asr-worker.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="python3"
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
exec "$python" -m asr_worker.tools.smoke "$@"
