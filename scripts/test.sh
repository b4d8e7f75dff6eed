#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh machine (Debian
# packages for the real servers and tools the tests drive, a virtualenv with the package and
# its test dependencies), then runs the linters, the type checker and the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real parts (servers, speech synthesis, a browser), and a C
# compiler with Python's headers for the compiled hot modules (setup.py; without them they run
# interpreted).
DEBIAN_PACKAGES=(chromium espeak-ng redis-server gcc python3-dev)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/install.sh test

.venv/bin/ruff check src tests bench setup.py
.venv/bin/ruff format --check src tests bench setup.py
.venv/bin/mypy
.venv/bin/pytest "$@"

if [ $# -eq 0 ]; then
  # The suite above ran the compiled hot modules (setup.py). Their own tests once more from
  # their .py sources: what runs on a machine that cannot compile them.
  echo "the compiled modules' tests, interpreted (ASR_INTERPRETED=1):"
  ASR_INTERPRETED=1 .venv/bin/pytest -q tests/core tests/test_wsframes.py tests/runtime \
    tests/providers/test_deepgram.py tests/providers/test_deepgram_protocol.py \
    tests/providers/test_deepgram_push.py tests/fuzz/test_session_machine.py \
    tests/fuzz/test_deepgram_fuzz.py tests/test_compiled.py
  # The container image, built and proven from its own filesystem (docs/deploy.md): 3 to 5
  # minutes on a new machine, half a minute when nothing changed.
  scripts/test-image.sh
fi
