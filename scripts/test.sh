#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh machine (Debian
# packages for the real servers and tools the tests drive, a virtualenv with exactly the locked
# dependencies, requirements/test.txt), then runs the linters, the type checker and the whole
# suite (scripts/checks.sh). Extra arguments go to pytest, e.g. scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/install.sh test
scripts/checks.sh "$@"
