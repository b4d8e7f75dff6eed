#!/usr/bin/env bash
# The checks both test entry points run, in the virtualenv $VENV (default .venv): the linters
# (ruff; actionlint on the CI workflow), the type checker, and the suite. scripts/test.sh runs
# them on the locked install, scripts/test-latest.sh on the newest releases. Extra arguments go
# to pytest, e.g. scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VENV:-.venv}/bin"

"$bin/ruff" check src tests bench examples setup.py
"$bin/ruff" format --check src tests bench examples setup.py
"$bin/mypy"
"$bin/lint-imports"
"$bin/actionlint" -shellcheck= -pyflakes= .github/workflows/*.yml
"$bin/pytest" "$@"

if [ $# -eq 0 ]; then
  # The suite above ran the compiled hot modules (setup.py). Their own tests once more from
  # their .py sources: what runs on a machine that cannot compile them.
  echo "the compiled modules' tests, interpreted (ASR_INTERPRETED=1):"
  ASR_INTERPRETED=1 "$bin/pytest" -q tests/core tests/test_wsframes.py tests/runtime \
    tests/providers/test_deepgram.py tests/providers/test_deepgram_protocol.py \
    tests/providers/test_ws_push.py tests/deepgram tests/fuzz/test_session_machine.py \
    tests/fuzz/test_deepgram_fuzz.py tests/test_compiled.py
fi
