#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh machine (Debian
# packages for the real servers and tools the tests drive, a virtualenv with exactly the locked
# dependencies, requirements/test.txt, and another with the voice-agent frameworks dg-server is
# proven with, requirements/clients.txt), then runs the linters, the type checker and the whole
# suite (scripts/checks.sh), then builds the container image and proves it from its own
# filesystem (scripts/test-image.sh). Extra arguments go to pytest alone, e.g.
# scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/install.sh test
scripts/node-clients.sh
scripts/install-clients.sh  # Pipecat's and LiveKit's Deepgram clients, in .venv-clients
scripts/checks.sh "$@"
if [ $# -eq 0 ]; then
  # 3 to 5 minutes on a new machine, half a minute when nothing changed (docs/deploy.md).
  scripts/test-image.sh
fi
