#!/usr/bin/env bash
# Install the worker into .venv (with the extras named, e.g. `scripts/install.sh test`), editable,
# its hot modules compiled with mypyc (setup.py). That build takes about 20 s, so it is skipped
# when nothing it depends on (pyproject.toml, setup.py, the sources) changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
spec="."
[ -z "$extras" ] || spec=".[$extras]"
stamp=".venv/.installed${extras:+-$extras}"

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ -e "$stamp" ] && [ -z "$(find pyproject.toml setup.py src -newer "$stamp" \( -name '*.py' -o -name '*.toml' \) -print -quit)" ]; then
  exit 0
fi
echo "installing asr-worker into .venv (compiling its hot modules) ..." >&2
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import asr_worker' # the install worked
touch "$stamp"
