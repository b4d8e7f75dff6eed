#!/usr/bin/env bash
# The voice-agent frameworks the tests prove dg-server with (Pipecat's and LiveKit Agents'
# Deepgram plugins, requirements/clients.in), in a virtualenv of their own, .venv-clients: their
# pins conflict with the test lock. Installs exactly requirements/clients.txt with hashes;
# skipped when the lock has not changed since. About 770 MB and a minute on a new machine.
# scripts/test.sh runs it; the tests that need it run it too (tests/support/clients.py).
set -euo pipefail
cd "$(dirname "$0")/.."
lock=requirements/clients.txt
venv=.venv-clients
stamp="$venv/.installed"
if [ -e "$stamp" ] && [ -z "$(find "$lock" -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
echo "installing the locked voice-agent clients into $venv ..." >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$lock" 2>&1 \
  | { grep -v '^WARNING: Location' || true; }  # this machine's pip.conf names local folders that may not exist
"$venv/bin/python" -m pip check -q >/dev/null || { "$venv/bin/python" -m pip check >&2; exit 1; }
touch "$stamp"
