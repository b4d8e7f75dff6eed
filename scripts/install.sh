#!/usr/bin/env bash
# Install the worker into .venv with exactly the locked dependencies: `scripts/install.sh` the
# service's (requirements/service.txt), `scripts/install.sh examples` with the clients the
# examples/ need (requirements/examples.txt), `scripts/install.sh test` the tests' as well
# (requirements/test.txt). Every file is checked against its hash in the lock; scripts/lock.sh
# refreshes the lock from pyproject.toml's ranges.
#
# The package itself is then installed editable, its hot modules compiled with mypyc (setup.py)
# by the locked build tools, without build isolation. That takes about 20 s, so it is skipped
# when nothing it depends on (the lock, pyproject.toml, setup.py, the sources) changed since.
set -euo pipefail
cd "$(dirname "$0")/.."
set_name="${1:-service}"
lock="requirements/$set_name.txt"
[ -f "$lock" ] || { echo "install.sh: no lock file $lock (sets: service, examples, test)" >&2; exit 2; }
stamp=".venv/.installed-$set_name"

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ -e "$stamp" ] && [ -z "$(find "$lock" pyproject.toml setup.py src -newer "$stamp" \( -name '*.py' -o -name '*.toml' -o -name '*.txt' \) -print -quit)" ]; then
  exit 0
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
quiet() { grep -v '^WARNING: Location' || true; }  # this machine's pip.conf names local folders that may not exist
echo "installing the locked $set_name dependencies into .venv ..." >&2
"${pip[@]}" --require-hashes --no-deps -r "$lock" 2>&1 | quiet
echo "installing asr-worker into .venv (compiling its hot modules) ..." >&2
"${pip[@]}" --no-deps --no-build-isolation -e . 2>&1 | quiet
.venv/bin/python -c 'import asr_worker' # the install worked
# Moonshine's weights converted once into the user's cache (checked by hash at every start), so
# the first start does not spend half a minute on it; skipped in a moment when already there.
.venv/bin/python -m asr_worker.engine.moonshine_model >/dev/null
.venv/bin/python -m pip check -q >/dev/null || { .venv/bin/python -m pip check >&2; exit 1; }
touch "$stamp"
