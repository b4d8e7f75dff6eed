#!/usr/bin/env bash
# Refresh the lock files in requirements/ from pyproject.toml's ranges: every dependency of the
# service (service.txt), of the service with the examples' clients (examples.txt) and of the
# tests (test.txt), direct and transitive, plus what builds the package (pyproject's
# [build-system] requires), pinned with the hashes of every file PyPI serves for it. scripts/install.sh installs exactly these with `pip --require-hashes`.
#
# Made with uv's `pip compile`: its output is an ordinary requirements file that plain pip
# installs, so neither a user's machine nor the container image needs uv; only this command does.
# Review the diff, run scripts/test.sh, commit. Extra arguments go to uv (e.g. --upgrade-package redis).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tool=.venv-lock
if [ ! -x "$tool/bin/uv" ] || [ "$("$tool/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$tool"
  "$tool/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" 2>&1 | grep -v '^WARNING: Location' || true
fi
uv="$tool/bin/uv"

# What builds the package (setuptools, mypyc's mypy, ...) is installed from the lock too, and the
# package is then built without isolation: the same compiler every time.
build_in=$(mktemp --suffix=.in)
trap 'rm -f "$build_in"' EXIT
"$tool/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' > "$build_in"

common=(--quiet --generate-hashes --python-version 3.11 --universal --no-header --no-strip-extras
        "$@")
header="# Locked by scripts/lock.sh from pyproject.toml; do not edit by hand."
{ echo "$header"; "$uv" pip compile "${common[@]}" pyproject.toml --extra test "$build_in"; } > requirements/test.txt
{ echo "$header"; "$uv" pip compile "${common[@]}" pyproject.toml "$build_in" -c requirements/test.txt; } > requirements/service.txt
{ echo "$header"; "$uv" pip compile "${common[@]}" pyproject.toml --extra examples "$build_in" -c requirements/test.txt; } > requirements/examples.txt
# The voice-agent frameworks the tests run as dg-server's clients, in a virtualenv of their own
# (scripts/install-clients.sh): their pins conflict with the tests', so they are locked apart.
{ echo "# Locked by scripts/lock.sh from requirements/clients.in; do not edit by hand."; "$uv" pip compile "${common[@]}" requirements/clients.in; } > requirements/clients.txt
# uv notes where each pin came from; name the build requirements' file as what it is, not as
# its temporary path, so that a refresh with nothing new changes nothing.
sed -i "s|$build_in|pyproject.toml [build-system]|" requirements/test.txt requirements/service.txt requirements/examples.txt
for set in service examples test clients; do
  echo "requirements/$set.txt: $(grep -c '^[a-z0-9]' "requirements/$set.txt") packages"
done
