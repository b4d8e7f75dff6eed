#!/usr/bin/env bash
# The Debian packages the tests use for real parts (a Redis server, speech synthesis, a browser for
# the live page, sipp for SIPREC's SIP dialogues and ffmpeg as an RTP sender, Node and npm for
# the third-party WebSocket clients in tests/node) and a C compiler with Python's headers for the
# compiled hot modules (setup.py; without them the modules run interpreted). Installs only what
# is missing.
set -euo pipefail
DEBIAN_PACKAGES=(chromium espeak-ng redis-server gcc python3-dev sip-tester ffmpeg nodejs npm)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  # A Node installed another way (NodeSource's nodejs carries its own npm) serves as well.
  case "$pkg" in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
