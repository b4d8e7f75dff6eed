#!/usr/bin/env bash
# Genesys's AudioHook reference client against a real worker, by hand: the same check as
# tests/integration/test_audiohook_reference.py (signed upgrade, open, pings, a pause and a
# resume, close; both channels' transcripts; the entities type-checked as the reference's).
#
#   scripts/audiohook-reference.sh [PATH_TO_AUDIOHOOK_REFERENCE_CHECKOUT]
#
# The checkout is github.com/purecloudlabs/audiohook-reference-implementation; it is copied,
# and its client's dependencies come from the npm registry. Needs node/npm, espeak-ng, script.
set -euo pipefail
cd "$(dirname "$0")/.."
export AUDIOHOOK_REFERENCE_DIR="${1:-${AUDIOHOOK_REFERENCE_DIR:-}}"
if [ -z "$AUDIOHOOK_REFERENCE_DIR" ]; then
    echo "usage: $0 PATH_TO_AUDIOHOOK_REFERENCE_CHECKOUT (or set AUDIOHOOK_REFERENCE_DIR)" >&2
    exit 2
fi
[ -x .venv/bin/pytest ] || scripts/install.sh test
exec .venv/bin/pytest tests/integration/test_audiohook_reference.py -q -rs -s "${@:2}"
