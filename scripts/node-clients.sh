#!/usr/bin/env bash
# The Node clients the tests drive (tests/node/: the `ws` package, as FreeSWITCH's and jambonz's
# users test their media-fork servers with), installed from the npm registry exactly as
# tests/node/package-lock.json locks them (integrity hashes checked by npm). Skipped when the
# lock has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../tests/node"
stamp="node_modules/.installed"
if [ -e "$stamp" ] && [ "$stamp" -nt package-lock.json ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "node-clients.sh: npm is missing (scripts/system-packages.sh installs it)" >&2; exit 1; }
echo "installing the tests' Node clients (tests/node) ..." >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
